"""Logging: the process's handler and levels, and filters on aiokafka's loggers.

aiokafka logs two things that this project must not pass on as they are:

- **Start-up noise at ERROR.** The first consumer group of a fresh cluster makes the broker
  create ``__consumer_offsets``; until that is done, aiokafka's coordinator lookup logs
  ``Group Coordinator Request failed: [Error 15] GroupCoordinatorNotAvailableError`` at ERROR
  and retries, and a healthy start looks broken. Such records are demoted to DEBUG as long as
  the condition clears within a grace period; if it persists, they keep their level.
- **Credentials at DEBUG.** ``aiokafka.conn`` logs every request and response, including the
  SASL exchange: the PLAIN password in clear, and SCRAM's proof (enough for an offline
  guess of the password). Those payloads are replaced by ``<redacted>``.

The filters sit on the loggers that emit the records, so they act before any handler (a
console, a test's log capture), whatever level a handler has.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from aiokafka.errors import GroupCoordinatorNotAvailableError, ProducerFenced

__all__ = ["RedactSaslPayloads", "TransientStartupNoise", "install_aiokafka_filters", "setup"]

_COORDINATOR_LOGGER = "aiokafka.consumer.group_coordinator"
_CONN_LOGGER = "aiokafka.conn"


class TransientStartupNoise(logging.Filter):
    """Demotes aiokafka's "coordinator not available yet" errors to DEBUG during a grace period.

    A burst of such records (no gap longer than ``grace_s``) is demoted for its first
    ``grace_s`` seconds; after that the coordinator is not merely starting, and the records
    pass at their own level. Other aiokafka errors are never touched.
    """

    def __init__(
        self, grace_s: float = 30.0, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self.grace_s = grace_s
        self._clock = clock
        self._lock = threading.Lock()
        self._burst_start: float | None = None
        self._last: float | None = None

    @staticmethod
    def is_known_transient(record: logging.LogRecord) -> bool:
        """True for the coordinator lookup failing because the coordinator is not there yet."""
        return (
            record.name == _COORDINATOR_LOGGER
            and record.levelno >= logging.WARNING
            and isinstance(record.args, tuple)
            and any(isinstance(arg, GroupCoordinatorNotAvailableError) for arg in record.args)
        )

    def filter(self, record: logging.LogRecord) -> bool:
        """Demote (and drop, unless the logger shows DEBUG) a record of a young burst."""
        if not self.is_known_transient(record):
            return True
        with self._lock:
            now = self._clock()
            if self._last is None or now - self._last > self.grace_s:
                self._burst_start = now
            self._last = now
            assert self._burst_start is not None
            young = now - self._burst_start <= self.grace_s
        if not young:
            return True
        record.levelno = logging.DEBUG
        record.levelname = logging.getLevelName(logging.DEBUG)
        # The record got past the logger's level as an ERROR; as a DEBUG record it may only go
        # on where DEBUG is wanted.
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


class RedactSaslPayloads(logging.Filter):
    """Replaces SASL authenticate requests and responses in ``aiokafka.conn`` debug records."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Pass every record, with SASL payloads redacted."""
        if isinstance(record.args, tuple) and any(_is_sasl(arg) for arg in record.args):
            record.args = tuple(_redacted(arg) if _is_sasl(arg) else arg for arg in record.args)
        return True


def _is_sasl(arg: Any) -> bool:
    return type(arg).__name__.startswith("SaslAuthenticate")


def _redacted(arg: Any) -> str:
    fields = [
        f"{name}={getattr(arg, name)!r}"
        for name in ("error_code", "error_message")
        if hasattr(arg, name)
    ]
    return f"{type(arg).__name__}({', '.join([*fields, 'sasl_auth_bytes=<redacted>'])})"


class FencedProducerNoise(logging.Filter):
    """asyncio's "Future exception was never retrieved" for a fenced transactional producer.

    When a partition moves during a rebalance, the previous producer of its transactional id
    is fenced by the new one; aiokafka's sender then leaves the `ProducerFenced` in an
    internal future nobody awaits, and asyncio reports it at ERROR. Fencing is how the
    hand-over is made safe (the code that owns the producer handles it), so this record is
    kept but at WARNING.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Pass every record; demote the one described above."""
        if record.levelno >= logging.ERROR and record.getMessage().startswith(
            "Future exception was never retrieved"
        ):
            exc = record.exc_info[1] if record.exc_info else None
            future = (record.args or {}).get("future") if isinstance(record.args, dict) else None
            if isinstance(exc, ProducerFenced) or "ProducerFenced" in repr(future or ""):
                record.levelno = logging.WARNING
                record.levelname = logging.getLevelName(logging.WARNING)
        return True


_installed = False
_install_lock = threading.Lock()


def install_aiokafka_filters() -> None:
    """Put the filters on aiokafka's loggers (once per process; later calls do nothing)."""
    global _installed
    with _install_lock:
        if _installed:
            return
        logging.getLogger(_COORDINATOR_LOGGER).addFilter(TransientStartupNoise())
        logging.getLogger(_CONN_LOGGER).addFilter(RedactSaslPayloads())
        logging.getLogger("asyncio").addFilter(FencedProducerNoise())
        _installed = True


def setup(level: str) -> None:
    """The process's logging: one stderr handler at ``level``, aiokafka at WARNING or above."""
    logging.basicConfig(
        level=getattr(logging, level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # aiokafka logs every reconnect attempt at ERROR while a broker is down; ours say more.
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, getattr(logging, level)))
    install_aiokafka_filters()
