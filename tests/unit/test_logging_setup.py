"""aiokafka's start-up noise is demoted, its real errors are not, and SASL payloads are redacted."""

from __future__ import annotations

import asyncio
import gc
import logging
import socket
import time

import pytest
from aiokafka.errors import GroupCoordinatorNotAvailableError, KafkaConnectionError, ProducerFenced
from aiokafka.protocol.admin import SaslAuthenticateRequest_v1, SaslAuthenticateResponse_v1

from adapters.app import Bridge, StartupError
from adapters.config import parse_config
from adapters.logging_setup import TransientStartupNoise, install_aiokafka_filters

COORDINATOR = "aiokafka.consumer.group_coordinator"
MESSAGE = "Group Coordinator Request failed: %s"  # as aiokafka 0.14 logs it


@pytest.fixture
def debug(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    install_aiokafka_filters()
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="aiokafka")
    return caplog


def test_coordinator_not_available_is_demoted_to_debug(debug: pytest.LogCaptureFixture) -> None:
    logging.getLogger(COORDINATOR).error(MESSAGE, GroupCoordinatorNotAvailableError())
    [record] = [r for r in debug.records if r.name == COORDINATOR]
    assert record.levelno == logging.DEBUG and record.levelname == "DEBUG"
    assert "GroupCoordinatorNotAvailable" in record.getMessage()


def test_other_coordinator_errors_keep_their_level(debug: pytest.LogCaptureFixture) -> None:
    logging.getLogger(COORDINATOR).error(MESSAGE, KafkaConnectionError("broken"))
    logging.getLogger("aiokafka").error('Unable connect to "%s:%s": %s', "h", 1, "refused")
    assert [r.levelno for r in debug.records] == [logging.ERROR, logging.ERROR]


def test_demoted_records_are_dropped_where_debug_is_not_wanted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    install_aiokafka_filters()
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.WARNING, logger="aiokafka")  # as the CLI sets it
    logging.getLogger(COORDINATOR).error(MESSAGE, GroupCoordinatorNotAvailableError())
    assert [r for r in caplog.records if r.name == COORDINATOR] == []


def _record(level: int = logging.ERROR) -> logging.LogRecord:
    return logging.LogRecord(
        COORDINATOR, level, __file__, 1, MESSAGE, (GroupCoordinatorNotAvailableError(),), None
    )


def test_a_coordinator_that_stays_away_is_an_error_again() -> None:
    now = [0.0]
    noise = TransientStartupNoise(grace_s=30, clock=lambda: now[0])
    levels = []
    for t in (0, 10, 29, 31, 60):  # one burst: no gap above 30 s
        now[0] = t
        record = _record()
        noise.filter(record)
        levels.append(record.levelno)
    assert levels == [logging.DEBUG] * 3 + [logging.ERROR] * 2
    now[0] = 200  # quiet for a while: a new start-up may again take a moment
    record = _record()
    noise.filter(record)
    assert record.levelno == logging.DEBUG


def test_sasl_payloads_are_redacted(debug: pytest.LogCaptureFixture) -> None:
    conn = logging.getLogger("aiokafka.conn")
    request = SaslAuthenticateRequest_v1(b"alice\x00alice\x00pw-in-the-clear")
    conn.debug("Request to %s:%d %d: %s", "127.0.0.1", 9093, 3, request)
    response = SaslAuthenticateResponse_v1(0, "", b"v=server-signature", 0)
    conn.debug("Response from %s:%d %d: %s", "127.0.0.1", 9093, 3, response)
    assert "pw-in-the-clear" not in debug.text and "server-signature" not in debug.text
    assert "SaslAuthenticateRequest_v1(sasl_auth_bytes=<redacted>)" in debug.text
    assert "SaslAuthenticateResponse_v1(error_code=0" in debug.text


async def test_a_broker_that_is_not_there_still_shows_as_a_problem(
    debug: pytest.LogCaptureFixture,
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again below: nothing listens there
    config = parse_config(
        {
            "kafka": {"bootstrap_servers": f"127.0.0.1:{port}"},
            "server": {"host": "127.0.0.1", "port": 0, "shutdown_delay_s": 0},
            "instances": [
                {
                    "vendor": "moco",
                    "base_url": "http://127.0.0.1:9/api/v1",
                    "api_key": "k",
                    "webhook_secret": "s",
                }
            ],
        }
    )
    bridge = Bridge(config, startup_timeout_s=0)
    started = time.monotonic()
    try:
        with pytest.raises(StartupError, match="not reachable"):
            await bridge.start()
    finally:
        await bridge.stop()
    assert time.monotonic() - started < 10
    loud = [r for r in debug.records if r.levelno >= logging.WARNING]
    assert any("Unable connect to" in r.getMessage() for r in loud), [
        (r.levelname, r.getMessage()) for r in debug.records
    ]


def test_an_unretrieved_producer_fenced_is_a_warning_and_other_errors_stay_errors(
    caplog: pytest.LogCaptureFixture,
) -> None:
    install_aiokafka_filters()

    async def leave_unretrieved() -> None:
        for exc in (ProducerFenced(), ValueError("a real bug")):
            future = asyncio.get_running_loop().create_future()
            future.set_exception(exc)
            del future
            gc.collect()

    caplog.set_level(logging.DEBUG)
    asyncio.run(leave_unretrieved())
    levels = [
        (r.levelno, "ProducerFenced" in r.getMessage() or "ProducerFenced" in str(r.exc_info))
        for r in caplog.records
        if r.name == "asyncio" and "never retrieved" in r.getMessage()
    ]
    assert sorted(levels) == [(logging.WARNING, True), (logging.ERROR, False)]
