"""Run a real single-node Apache Kafka 4.x broker (KRaft, broker+controller) locally.

No Docker needed: the broker's jars are fetched once from Maven Central with ``mvn`` (see the
packaged ``pom.xml``) into a cache folder, and the broker runs as a ``java`` subprocess on
loopback ports. Used by the test suite and by ``workbridge kafka-local`` /
``python -m adapters.localkafka``.

Typical use::

    with LocalKafka() as kafka:            # or: async with LocalKafka() as kafka:
        print(kafka.bootstrap_servers)     # "127.0.0.1:PORT"
        kafka.stop_broker()                # broker down, same port and data kept
        kafka.start_broker()               # back on the same port with the same data

Secured listeners come in addition to the PLAINTEXT one (which stays: the broker talks to
itself over it, and tests read through it)::

    secured = LocalKafka(
        listeners=[
            Listener("SASL_SSL", "SASL_SSL"),
            Listener("MTLS", "SSL", client_auth="required"),
        ],
        sasl_users={"alice": "alice-secret"},
    )
    secured.start()
    secured.listener_bootstrap("SASL_SSL")   # "127.0.0.1:PORT2"
    secured.tls.ca_file                      # PEM files generated for this broker
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import base64
import concurrent.futures
import contextlib
import ctypes
import fcntl
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import weakref
import xml.etree.ElementTree as ET
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Self

if TYPE_CHECKING:
    from adapters.localkafka.certs import TlsFiles

__all__ = [
    "KAFKA_VERSION",
    "SASL_MECHANISMS",
    "Listener",
    "LocalKafka",
    "LocalKafkaError",
    "ensure_jars",
    "jars_dir",
    "main",
    "pom_path",
]

_POM_NS = {"m": "http://maven.apache.org/POM/4.0.0"}
_COMPLETE_MARKER = ".complete"
_START_MARKER = "===== launcher: starting broker"
_MIN_JAVA = 17


class LocalKafkaError(RuntimeError):
    """The local broker could not be fetched, started or stopped."""


SASL_MECHANISMS: tuple[str, ...] = ("SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN")
"""The SASL mechanisms a local broker can offer (all three by default)."""

_SCRAM = ("SCRAM-SHA-256", "SCRAM-SHA-512")
_RESERVED_LISTENERS = ("PLAINTEXT", "CONTROLLER")
# Credentials go unquoted into `--add-scram` and quoted into a JAAS line: keep them simple
# rather than escape for two parsers.
_SAFE_CREDENTIAL = re.compile(r"[A-Za-z0-9._~+/@:-]+")


@dataclass(frozen=True)
class Listener:
    """A client listener of a :class:`LocalKafka` broker, in addition to PLAINTEXT.

    Args:
        name: the listener's name (``[A-Z][A-Z0-9_]*``, not PLAINTEXT or CONTROLLER).
        protocol: its security protocol.
        sasl_mechanisms: what a SASL listener offers (default: :data:`SASL_MECHANISMS`).
        client_auth: ``required`` makes a TLS listener accept only clients with a
            certificate signed by the broker's CA (mutual TLS).
        cert_hosts: the SANs of this listener's own certificate; default: the broker's
            certificate, valid for its host and ``localhost``. A name other than the host
            gives a listener whose certificate does not match (to test hostname checks).
        port: the listener's port; a free one is picked if ``None``.
    """

    name: str
    protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
    sasl_mechanisms: tuple[str, ...] = SASL_MECHANISMS
    client_auth: Literal["none", "requested", "required"] = "none"
    cert_hosts: tuple[str, ...] | None = None
    port: int | None = None

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Z][A-Z0-9_]*", self.name) or self.name in _RESERVED_LISTENERS:
            raise LocalKafkaError(
                f"listener name {self.name!r}: use [A-Z][A-Z0-9_]*, not PLAINTEXT or CONTROLLER"
            )
        unknown = set(self.sasl_mechanisms) - set(SASL_MECHANISMS)
        if self.sasl and (unknown or not self.sasl_mechanisms):
            raise LocalKafkaError(
                f"listener {self.name}: SASL mechanisms {sorted(unknown) or 'none'}; "
                f"choose from {', '.join(SASL_MECHANISMS)}"
            )

    @property
    def sasl(self) -> bool:
        """True if clients authenticate with SASL on this listener."""
        return self.protocol.startswith("SASL_")

    @property
    def tls(self) -> bool:
        """True if this listener speaks TLS."""
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def keystore_name(self) -> str:
        """Which broker key store this listener serves (its own if it has ``cert_hosts``)."""
        return self.name.lower() if self.cert_hosts is not None else "default"


def pom_path() -> Path:
    """Return the packaged Maven pom that lists the broker's jars."""
    return Path(__file__).with_name("pom.xml")


def _read_kafka_version() -> str:
    root = ET.parse(pom_path()).getroot()
    node = root.find("m:properties/m:kafka.version", _POM_NS)
    if node is None or not (node.text or "").strip():
        raise LocalKafkaError(f"{pom_path()} has no <kafka.version> property")
    return (node.text or "").strip()


KAFKA_VERSION: str = _read_kafka_version()
"""The Apache Kafka version that the packaged pom fetches (e.g. ``"4.1.1"``)."""


def jars_dir() -> Path:
    """Return the folder that holds (or will hold) the broker's jars.

    ``$WORKBRIDGE_KAFKA_CACHE`` if set, else ``~/.cache/workbridge/kafka-<version>``.
    """
    env = os.environ.get("WORKBRIDGE_KAFKA_CACHE")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "workbridge" / f"kafka-{KAFKA_VERSION}"


def _jars_complete(folder: Path) -> bool:
    marker = folder / _COMPLETE_MARKER
    try:
        return marker.read_text().strip() == KAFKA_VERSION and any(
            folder.glob(f"kafka_2.13-{KAFKA_VERSION}.jar")
        )
    except OSError:
        return False


def _which_or_fail(tool: str, what_to_do: str) -> str:
    found = shutil.which(tool)
    if found is None:
        raise LocalKafkaError(f"`{tool}` not found on PATH: {what_to_do}")
    return found


_JAVA_HINT = (
    f"install a Java {_MIN_JAVA}+ runtime (Debian/Ubuntu: `apt-get install "
    f"openjdk-{_MIN_JAVA}-jre-headless`) or set JAVA_HOME"
)
_MVN_HINT = (
    "install Maven (Debian/Ubuntu: `apt-get install maven`), or put the jars of "
    f"org.apache.kafka:kafka_2.13:{KAFKA_VERSION} and its runtime dependencies into "
    "$WORKBRIDGE_KAFKA_CACHE yourself and create a file `.complete` there containing "
    f"`{KAFKA_VERSION}`"
)


def _java_executable() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        candidate = Path(java_home) / "bin" / "java"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return _which_or_fail("java", _JAVA_HINT)


_java_checked: dict[str, int] = {}


def _check_java(java: str) -> None:
    if java in _java_checked:
        return
    try:
        out = subprocess.run(
            [java, "-version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LocalKafkaError(f"cannot run `{java} -version`: {exc}; {_JAVA_HINT}") from exc
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    major = 0
    if match:
        major = int(match.group(1))
        if major == 1 and match.group(2):  # "1.8.0_..." style
            major = int(match.group(2))
    if major < _MIN_JAVA:
        raise LocalKafkaError(
            f"Kafka {KAFKA_VERSION} needs Java {_MIN_JAVA}+, but `{java} -version` says: "
            f"{(out.stderr or out.stdout).strip().splitlines()[:1]}; {_JAVA_HINT}"
        )
    _java_checked[java] = major


def ensure_jars(progress: Callable[[str], None] = print) -> Path:
    """Make sure the broker's jars are in :func:`jars_dir`, fetching them with Maven if not.

    Safe to call from several processes at once (a file lock serialises the download).
    Returns the jars folder. Raises :class:`LocalKafkaError` with what to do when ``mvn`` is
    missing or the download fails.
    """
    folder = jars_dir()
    if _jars_complete(folder):
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    lock_path = folder.parent / f".{folder.name}.lock"
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if _jars_complete(folder):
                return folder
            _download_jars(folder, progress)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return folder


def _download_jars(folder: Path, progress: Callable[[str], None]) -> None:
    mvn = _which_or_fail("mvn", _MVN_HINT)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    progress(
        f"Fetching Apache Kafka {KAFKA_VERSION} (~45 MB of jars, once) with Maven into {folder} ..."
    )
    started = time.monotonic()
    cmd = [
        mvn,
        "-q",
        "-B",
        "-f",
        str(pom_path()),
        "dependency:copy-dependencies",
        "-DincludeScope=runtime",
        f"-DoutputDirectory={staging}",
    ]
    try:
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=staging
        )
        output: list[str] = []

        def _reader() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                output.append(line)

        reader = threading.Thread(target=_reader, daemon=True)
        reader.start()
        last_note = started
        while proc.poll() is None:
            time.sleep(0.5)
            if time.monotonic() - last_note >= 10:
                last_note = time.monotonic()
                progress(f"  ... still fetching ({last_note - started:.0f} s)")
        reader.join(timeout=5)
        if proc.returncode != 0:
            tail = "".join(output[-40:])
            raise LocalKafkaError(
                f"`{' '.join(cmd)}` failed with exit code {proc.returncode}. Check that Maven "
                f"Central is reachable (or your ~/.m2/settings.xml mirror). Output:\n{tail}"
            )
        if not (staging / f"kafka_2.13-{KAFKA_VERSION}.jar").is_file():
            raise LocalKafkaError(f"Maven ran but {staging} has no kafka_2.13 jar")
        (staging / _COMPLETE_MARKER).write_text(KAFKA_VERSION + "\n")
        if folder.exists():
            # An incomplete earlier attempt, or a user-made empty folder: replace its content.
            for old in folder.iterdir():
                if old.is_dir():
                    shutil.rmtree(old)
                else:
                    old.unlink()
            for new in staging.iterdir():
                new.rename(folder / new.name)
        else:
            staging.rename(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    progress(f"Fetched Kafka {KAFKA_VERSION} jars in {time.monotonic() - started:.1f} s")


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _port_free(host: str, port: int) -> bool:
    """True if ``port`` can be bound (as Kafka binds it: with SO_REUSEADDR)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def _port_accepts(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _cluster_id() -> str:
    """Return a random cluster id, like ``kafka-storage random-uuid`` (base64url, 16 bytes)."""
    while True:
        # A leading '-' would be read as an option by kafka-storage (Kafka's own
        # generator avoids it the same way).
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode("ascii")
        if not cluster_id.startswith("-"):
            return cluster_id


def _check_listeners(listeners: Sequence[Listener], users: Mapping[str, str]) -> None:
    names = [lst.name for lst in listeners]
    if len(set(names)) != len(names):
        raise LocalKafkaError(f"listener names must differ: {names}")
    if any(lst.sasl for lst in listeners) and not users:
        raise LocalKafkaError("a SASL listener needs sasl_users")
    for user, password in users.items():
        if not (_SAFE_CREDENTIAL.fullmatch(user) and _SAFE_CREDENTIAL.fullmatch(password)):
            # The value itself is a password: name the user only.
            raise LocalKafkaError(
                f"sasl_users[{user!r}]: use only letters, digits and ._~+/@:- in user names "
                "and passwords"
            )


def _previous_ports(properties: Path) -> dict[str, int]:
    """Listener name to port, from the ``listeners`` line of an earlier run's config."""
    try:
        text = properties.read_text()
    except OSError:
        return {}
    match = re.search(r"^listeners=(.*)$", text, re.MULTILINE)
    if match is None:
        return {}
    return {
        name: int(port)
        for name, port in re.findall(r"([A-Z][A-Z0-9_]*)://[^,:]*:(\d+)", match.group(1))
    }


class _DropThreadRecords(logging.Filter):
    """Drops log records made on one thread (the readiness probe's) and passes all others."""

    def __init__(self, thread_id: int) -> None:
        super().__init__()
        self.thread_id = thread_id

    def filter(self, record: logging.LogRecord) -> bool:
        return record.thread != self.thread_id


def _run_probe(factory: Callable[[], Coroutine[Any, Any, bool]]) -> bool:
    """Run a probe coroutine in a fresh event loop on a helper thread, silencing its logs.

    Keeps the synchronous API usable whether or not the calling thread runs an event loop.
    aiokafka logs failed connection attempts at ERROR; those of the probe are expected while
    the broker starts, so they are dropped (only those made on the probe's thread).
    """

    def run() -> bool:
        quiet = _DropThreadRecords(threading.get_ident())
        loggers = [logging.getLogger(name) for name in _AIOKAFKA_LOGGERS]
        for logger in loggers:
            logger.addFilter(quiet)
        try:
            return asyncio.run(factory())
        finally:
            for logger in loggers:
                logger.removeFilter(quiet)

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(run).result()


_AIOKAFKA_LOGGERS = ("aiokafka", "aiokafka.client", "aiokafka.conn", "aiokafka.cluster")


async def _metadata_ready(bootstrap: str, timeout_ms: int) -> bool:
    """True once the broker answers a Metadata request listing at least one broker."""
    from aiokafka.client import AIOKafkaClient

    client = AIOKafkaClient(
        bootstrap_servers=bootstrap,
        request_timeout_ms=timeout_ms,
        connections_max_idle_ms=timeout_ms * 4,
        metadata_max_age_ms=timeout_ms * 4,
    )
    try:
        await client.bootstrap()
        return bool(client.cluster.brokers())
    except Exception:
        return False
    finally:
        with contextlib.suppress(Exception):
            await client.close()


_LOG4J2_PROPERTIES = """\
# written by adapters.localkafka: everything to stdout, which the launcher sends to broker.log
status = warn
# Kafka logs its own shutdown; log4j's hook would close the appender half-way through it
shutdownHook = disable
appender.console.type = Console
appender.console.name = STDOUT
appender.console.target = SYSTEM_OUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = {level}
rootLogger.appenderRef.stdout.ref = STDOUT
logger.kafka.name = kafka
logger.kafka.level = {level}
logger.apache.name = org.apache.kafka
logger.apache.level = {level}
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.statechange.name = state.change.logger
logger.statechange.level = WARN
"""

_live: weakref.WeakSet[LocalKafka] = weakref.WeakSet()

# The broker JVM must not outlive the launcher, even if the launcher is killed (SIGKILL, a
# test runner's timeout): on Linux it asks for SIGTERM when its parent goes away. The kernel
# sends that when the *thread* that forked it ends, so brokers are always forked from this
# one long-lived thread, never from a caller's (possibly short-lived) thread.
_SPAWNER = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="localkafka")
_PR_SET_PDEATHSIG = 1
_LIBC: ctypes.CDLL | None = None
if sys.platform == "linux":
    with contextlib.suppress(OSError):
        _LIBC = ctypes.CDLL(None, use_errno=True)


def _die_with_launcher() -> None:
    """Runs in the forked child before exec: SIGTERM me when my parent thread exits."""
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


@atexit.register
def _stop_leftovers() -> None:
    for kafka in list(_live):
        with contextlib.suppress(Exception):
            kafka.stop()


class LocalKafka:
    """A real single-node Apache Kafka broker (KRaft, ``broker,controller``) on loopback.

    Use it as a sync or async context manager, or call :meth:`start` and :meth:`stop`.
    :meth:`stop_broker` / :meth:`start_broker` (async: :meth:`pause` / :meth:`resume`) stop and
    restart only the broker process, on the same port with the same data, to test outages.

    Args:
        port: client (PLAINTEXT) port; a free one is picked if ``None``.
        controller_port: KRaft controller port; a free one is picked if ``None``.
        host: address to listen on and advertise (loopback by default).
        advertised_port: port the broker advertises to clients (e.g. a fault proxy's port);
            defaults to ``port``.
        data_dir: folder for the configuration, the log and the data. Kept on :meth:`stop`,
            also when the broker died or failed to start, and reused next time: the storage
            is not formatted again (SCRAM users stay those of the first start), the TLS
            files are kept, and ports not given are those of the last run if still free.
            ``None``: a temporary folder removed on :meth:`stop`.
        heap: JVM max heap (``-Xmx``).
        startup_timeout: seconds to wait for the broker to serve metadata.
        progress: receives human-readable progress lines (``None``: silent).
        log_level: log4j level of the broker log.
        extra_properties: server.properties entries added to / overriding the defaults.
        listeners: secured (or more) client listeners besides PLAINTEXT, each advertised on
            ``host``. TLS material for them is generated at start (see :attr:`tls`).
        sasl_users: user name to password, for every SASL listener: SCRAM users are added
            when the storage is formatted, PLAIN users go into the listener's JAAS entry.
    """

    def __init__(
        self,
        port: int | None = None,
        controller_port: int | None = None,
        *,
        host: str = "127.0.0.1",
        advertised_port: int | None = None,
        data_dir: str | os.PathLike[str] | None = None,
        heap: str = "512m",
        startup_timeout: float = 60.0,
        progress: Callable[[str], None] | None = print,
        log_level: str = "INFO",
        extra_properties: Mapping[str, str] | None = None,
        listeners: Sequence[Listener] = (),
        sasl_users: Mapping[str, str] | None = None,
    ) -> None:
        self._requested_port = port
        self._requested_controller_port = controller_port
        self.host = host
        self._advertised_port = advertised_port
        self._data_dir_arg = Path(data_dir) if data_dir is not None else None
        self.heap = heap
        self.startup_timeout = startup_timeout
        self._progress = progress
        self.log_level = log_level
        self.extra_properties: dict[str, str] = dict(extra_properties or {})
        self.listeners: tuple[Listener, ...] = tuple(listeners)
        self.sasl_users: dict[str, str] = dict(sasl_users or {})
        _check_listeners(self.listeners, self.sasl_users)
        self._listener_ports: dict[str, int] = {}
        self._tls: TlsFiles | None = None
        self._port: int | None = None
        self._controller_port: int | None = None
        self._work_dir: Path | None = None
        self._owns_work_dir = False
        self._proc: subprocess.Popen[bytes] | None = None
        self._jars: Path | None = None
        self._java: str | None = None
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ properties

    @property
    def port(self) -> int:
        """The client (PLAINTEXT) port; known after :meth:`start`."""
        if self._port is None:
            raise LocalKafkaError("LocalKafka is not started")
        return self._port

    @property
    def controller_port(self) -> int:
        """The KRaft controller port; known after :meth:`start`."""
        if self._controller_port is None:
            raise LocalKafkaError("LocalKafka is not started")
        return self._controller_port

    @property
    def bootstrap_servers(self) -> str:
        """``host:port`` for clients' ``bootstrap_servers``."""
        return f"{self.host}:{self.port}"

    def listener_port(self, name: str) -> int:
        """The port of the extra listener ``name``; known after :meth:`start`."""
        try:
            return self._listener_ports[name]
        except KeyError:
            if self._port is None:
                raise LocalKafkaError("LocalKafka is not started") from None
            raise LocalKafkaError(f"no listener {name!r}") from None

    def listener_bootstrap(self, name: str) -> str:
        """``host:port`` of the extra listener ``name``, for clients' ``bootstrap_servers``."""
        return f"{self.host}:{self.listener_port(name)}"

    @property
    def tls(self) -> TlsFiles:
        """The CA, client certificate and key generated for the TLS listeners."""
        if self._tls is None:
            raise LocalKafkaError("LocalKafka has no TLS listener, or is not started")
        return self._tls

    @property
    def work_dir(self) -> Path:
        """Folder with ``server.properties``, ``broker.log`` and ``data/``."""
        if self._work_dir is None:
            raise LocalKafkaError("LocalKafka is not started")
        return self._work_dir

    @property
    def log_path(self) -> Path:
        """The broker's log file (appended to across restarts)."""
        return self.work_dir / "broker.log"

    @property
    def properties_path(self) -> Path:
        """The generated ``server.properties``."""
        return self.work_dir / "server.properties"

    @property
    def is_running(self) -> bool:
        """True while the broker process is alive."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """The broker JVM's process id, or ``None`` when it is not running."""
        return self._proc.pid if self.is_running and self._proc is not None else None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Self:
        """Fetch jars if needed, write config, format storage, start the broker and wait.

        Returns once the broker serves metadata. Raises :class:`LocalKafkaError` (with the
        tail of the broker log) if it does not within ``startup_timeout`` seconds.
        """
        with self._lock:
            if self._work_dir is not None:
                if not self.is_running:
                    self.start_broker()
                return self
            self._java = _java_executable()
            _check_java(self._java)
            self._jars = ensure_jars(self._progress or (lambda _msg: None))
            if self._data_dir_arg is not None:
                self._work_dir = self._data_dir_arg.resolve()
                self._work_dir.mkdir(parents=True, exist_ok=True)
                self._owns_work_dir = False
            else:
                self._work_dir = Path(tempfile.mkdtemp(prefix="workbridge-kafka-"))
                self._owns_work_dir = True
            _live.add(self)
            try:
                self._choose_ports()
                self._write_tls_files()
                self._write_config()
                self._format_storage()
                self.start_broker()
            except BaseException as exc:
                # Keep a temporary folder when something failed: its broker.log tells why.
                # A caller's data_dir is never removed.
                self._shutdown(
                    remove_files=self._owns_work_dir and not isinstance(exc, LocalKafkaError)
                )
                raise
            return self

    def _choose_ports(self) -> None:
        # A kept data_dir comes back on the ports of its last run, so that its clients'
        # bootstrap_servers still hold; a port taken meanwhile is replaced by a free one.
        previous = _previous_ports(self.properties_path)
        taken: set[int] = set()

        def pick(name: str, requested: int | None) -> int:
            if requested:
                port = requested
            else:
                port = previous.get(name, 0)
                if not port or port in taken or not _port_free(self.host, port):
                    port = _free_port(self.host)
                while port in taken:
                    port = _free_port(self.host)
            taken.add(port)
            return port

        self._port = pick("PLAINTEXT", self._requested_port)
        self._controller_port = pick("CONTROLLER", self._requested_controller_port)
        self._listener_ports = {lst.name: pick(lst.name, lst.port) for lst in self.listeners}

    def _write_tls_files(self) -> None:
        keystores = {
            lst.keystore_name: lst.cert_hosts or (self.host, "localhost")
            for lst in self.listeners
            if lst.tls
        }
        if not keystores:
            self._tls = None
            return
        try:
            from adapters.localkafka.certs import ensure_tls_files
        except ImportError as exc:
            raise LocalKafkaError(
                f"TLS listeners need the `cryptography` package ({exc}); "
                "install it with `pip install cryptography` (it is in the `dev` extra)"
            ) from exc
        self._tls = ensure_tls_files(self.work_dir / "tls", keystores)

    def stop(self) -> None:
        """Stop the broker (SIGTERM, then SIGKILL) and remove its temporary folder."""
        self._shutdown(remove_files=self._owns_work_dir)

    def _shutdown(self, *, remove_files: bool) -> None:
        with self._lock:
            self.stop_broker()
            if self._work_dir is not None and remove_files:
                shutil.rmtree(self._work_dir, ignore_errors=True)
            self._work_dir = None
            self._port = None
            self._controller_port = None
            self._listener_ports = {}
            self._tls = None
            _live.discard(self)

    def stop_broker(self, *, graceful: bool = True, timeout: float = 30.0) -> None:
        """Stop the broker process only; port, config and data are kept for :meth:`start_broker`.

        ``graceful=False`` kills it (SIGKILL) like a crash. A graceful stop that takes longer
        than ``timeout`` seconds is finished with SIGKILL.
        """
        with self._lock:
            proc = self._proc
            if proc is None:
                return
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM if graceful else signal.SIGKILL)
                try:
                    proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    self._say(f"Kafka broker did not stop within {timeout:.0f} s; killing it")
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
                    proc.wait(timeout=10)
            self._proc = None
            # The client port must be free again before anyone expects "Kafka is down".
            deadline = time.monotonic() + 5
            while self._port is not None and time.monotonic() < deadline:
                if not _port_accepts(self.host, self._port, timeout=0.2):
                    break
                time.sleep(0.1)

    def start_broker(self) -> None:
        """(Re)start the broker process on the same ports with the same data and wait for it."""
        with self._lock:
            if self._work_dir is None or self._jars is None or self._java is None:
                raise LocalKafkaError("call start() first")
            if self.is_running:
                return
            for port in (self.port, self.controller_port, *self._listener_ports.values()):
                if not _port_free(self.host, port):
                    raise LocalKafkaError(
                        f"cannot start Kafka broker: {self.host}:{port} is already in use"
                    )
            started = time.monotonic()
            log = self.log_path.open("ab")
            try:
                log.write(f"\n{_START_MARKER} at {time.ctime()} =====\n".encode())
                log.flush()
                cmd = self._java_cmd("kafka.Kafka", str(self.properties_path))
                env = self._java_env()
                self._proc = _SPAWNER.submit(
                    lambda: subprocess.Popen(
                        cmd,
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        cwd=self.work_dir,
                        env=env,
                        # own process group: a Ctrl-C in the terminal reaches only the
                        # launcher, which then stops the broker in order
                        start_new_session=True,
                        preexec_fn=_die_with_launcher,
                    )
                ).result()
            finally:
                log.close()
            self._say(f"Starting Kafka {KAFKA_VERSION} broker on {self.bootstrap_servers} ...")
            try:
                self._wait_ready(started)
            except BaseException:
                self.stop_broker(graceful=False)
                raise
            self._say(
                f"Kafka broker ready on {self.bootstrap_servers} "
                f"in {time.monotonic() - started:.1f} s"
            )

    def _wait_ready(self, started: float) -> None:
        deadline = started + self.startup_timeout
        last_note = started
        while True:
            proc = self._proc
            if proc is None or proc.poll() is not None:
                code = None if proc is None else proc.returncode
                raise LocalKafkaError(
                    f"Kafka broker exited (code {code}) during startup. {self._diagnosis()}"
                )
            if (
                _port_accepts(self.host, self.port)
                and _run_probe(lambda: _metadata_ready(self.bootstrap_servers, 3000))
                # the secured listeners open with the PLAINTEXT one; checked, not assumed
                and all(_port_accepts(self.host, p) for p in self._listener_ports.values())
            ):
                return
            now = time.monotonic()
            if now >= deadline:
                raise LocalKafkaError(
                    f"Kafka broker on {self.bootstrap_servers} not ready after "
                    f"{self.startup_timeout:.0f} s. {self._diagnosis()}"
                )
            if now - last_note >= 5:
                last_note = now
                self._say(f"  ... waiting for the broker ({now - started:.0f} s)")
            time.sleep(0.2)

    def log_tail(self, lines: int = 40) -> str:
        """Return the last ``lines`` lines of the broker log (empty if there is none)."""
        return "\n".join(self._last_run_lines()[-lines:])

    def log_errors(self, limit: int = 12) -> str:
        """Return the ERROR/FATAL lines (with their exception line) of the last broker run."""
        found: list[str] = []
        lines = self._last_run_lines()
        for i, line in enumerate(lines):
            if " ERROR " in line or " FATAL " in line:
                found.append(line)
                following = lines[i + 1] if i + 1 < len(lines) else ""
                if following and not following.startswith(("[", "\t", " ")):
                    found.append("    " + following)
            if len(found) >= limit:
                break
        return "\n".join(found)

    def _last_run_lines(self) -> list[str]:
        try:
            with self.log_path.open("rb") as fh:
                fh.seek(0, os.SEEK_END)
                size = fh.tell()
                fh.seek(max(0, size - 4 * 1024 * 1024))
                text = fh.read().decode("utf-8", errors="replace")
        except (OSError, LocalKafkaError):
            return []
        marker = text.rfind(_START_MARKER)
        if marker >= 0:
            text = text[marker:]
        return text.splitlines()

    def _diagnosis(self) -> str:
        errors = self.log_errors()
        parts = [f"Broker log: {self.log_path}"]
        if errors:
            parts.append(f"Errors:\n{errors}")
        parts.append(f"Last lines:\n{self.log_tail(25)}")
        return "\n".join(parts)

    # ------------------------------------------------------------------ internals

    def _say(self, message: str) -> None:
        if self._progress is not None:
            self._progress(message)

    def _java_env(self) -> dict[str, str]:
        env = dict(os.environ)
        # Kafka's scripts read these; make sure stray values do not change our JVM.
        for name in (
            "KAFKA_OPTS",
            "KAFKA_HEAP_OPTS",
            "KAFKA_JVM_PERFORMANCE_OPTS",
            "JAVA_TOOL_OPTIONS",
        ):
            env.pop(name, None)
        return env

    def _java_cmd(self, main_class: str, *args: str) -> list[str]:
        assert self._java is not None and self._jars is not None
        if main_class == "kafka.Kafka":
            jvm = ["-Xms128m", f"-Xmx{self.heap}", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20"]
        else:  # a short-lived tool: start fast
            jvm = ["-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1"]
        return [
            self._java,
            *jvm,
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.work_dir / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={self.work_dir / 'logs'}",
            "-cp",
            str(self._jars / "*"),
            main_class,
            *args,
        ]

    def server_properties(self) -> dict[str, str]:
        """The broker configuration that :meth:`start` writes (after ports are chosen)."""
        data = self.work_dir / "data"
        advertised = self._advertised_port or self.port
        extra = [(lst, self.listener_port(lst.name)) for lst in self.listeners]
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{self.host}:{self.controller_port}",
            "controller.listener.names": "CONTROLLER",
            "listeners": ",".join(
                [
                    f"PLAINTEXT://{self.host}:{self.port}",
                    f"CONTROLLER://{self.host}:{self.controller_port}",
                    *(f"{lst.name}://{self.host}:{port}" for lst, port in extra),
                ]
            ),
            "advertised.listeners": ",".join(
                [
                    f"PLAINTEXT://{self.host}:{advertised}",
                    *(f"{lst.name}://{self.host}:{port}" for lst, port in extra),
                ]
            ),
            # The controller and the broker's own traffic stay PLAINTEXT on loopback.
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": ",".join(
                [
                    "CONTROLLER:PLAINTEXT",
                    "PLAINTEXT:PLAINTEXT",
                    *(f"{lst.name}:{lst.protocol}" for lst, _ in extra),
                ]
            ),
            "log.dirs": str(data),
            "metadata.log.dir": str(data),
            # single node: internal topics with one replica
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "3",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "3",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "default.replication.factor": "1",
            "min.insync.replicas": "1",
            # the application creates its topics itself: catch code that relies on auto-create
            "auto.create.topics.enable": "false",
            "num.partitions": "1",
            # fast start and fast tests
            "group.initial.rebalance.delay.ms": "0",
            "num.network.threads": "2",
            "num.io.threads": "4",
            "num.recovery.threads.per.data.dir": "1",
            "log.cleaner.dedupe.buffer.size": str(16 * 1024 * 1024),
            "log.cleaner.threads": "1",
        }
        for lst, _ in extra:
            props.update(self._listener_properties(lst))
        props.update(self.extra_properties)
        return props

    def _listener_properties(self, lst: Listener) -> dict[str, str]:
        prefix = f"listener.name.{lst.name.lower()}."
        props: dict[str, str] = {}
        if lst.tls:
            tls = self.tls
            props |= {
                # PEM files as they are: no JKS/PKCS12 conversion (KIP-651)
                f"{prefix}ssl.keystore.type": "PEM",
                f"{prefix}ssl.keystore.location": str(tls.keystore(lst.keystore_name)),
                f"{prefix}ssl.truststore.type": "PEM",
                f"{prefix}ssl.truststore.location": str(tls.ca_file),
                f"{prefix}ssl.client.auth": lst.client_auth,
            }
        if lst.sasl:
            props[f"{prefix}sasl.enabled.mechanisms"] = ",".join(lst.sasl_mechanisms)
            for mechanism in lst.sasl_mechanisms:
                if mechanism == "PLAIN":
                    users = "".join(f' user_{u}="{pw}"' for u, pw in self.sasl_users.items())
                    module = (
                        f"org.apache.kafka.common.security.plain.PlainLoginModule required{users};"
                    )
                else:  # SCRAM: the credentials live in the cluster metadata (see --add-scram)
                    module = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
                props[f"{prefix}{mechanism.lower()}.sasl.jaas.config"] = module
        return props

    def _scram_arguments(self) -> list[str]:
        mechanisms = {m for lst in self.listeners if lst.sasl for m in lst.sasl_mechanisms}
        return [
            arg
            for mechanism in _SCRAM
            if mechanism in mechanisms
            for user, password in self.sasl_users.items()
            for arg in ("--add-scram", f"{mechanism}=[name={user},password={password}]")
        ]

    def _write_config(self) -> None:
        lines = [f"{key}={value}" for key, value in self.server_properties().items()]
        # A PLAIN listener's JAAS entry holds its users' passwords.
        self.properties_path.touch(mode=0o600, exist_ok=True)
        self.properties_path.chmod(0o600)
        self.properties_path.write_text(
            "# written by adapters.localkafka.launcher\n" + "\n".join(lines) + "\n"
        )
        (self.work_dir / "log4j2.properties").write_text(
            _LOG4J2_PROPERTIES.format(level=self.log_level)
        )

    def _format_storage(self) -> None:
        if (self.work_dir / "data" / "meta.properties").is_file():
            return  # a kept data_dir from an earlier run
        cmd = self._java_cmd(
            "kafka.tools.StorageTool",
            "format",
            "-t",
            _cluster_id(),
            "-c",
            str(self.properties_path),
            "--ignore-formatted",
            *self._scram_arguments(),
        )
        out = subprocess.run(
            cmd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            cwd=self.work_dir,
            env=self._java_env(),
            timeout=120,
            check=False,
        )
        with self.log_path.open("a") as log:
            log.write("===== launcher: kafka.tools.StorageTool format =====\n")
            log.write(out.stdout + out.stderr)
        if out.returncode != 0:
            # The command line holds the SCRAM passwords: say only what the tool said.
            raise LocalKafkaError(
                f"formatting Kafka storage failed (exit code {out.returncode}):\n"
                f"{out.stdout}{out.stderr}"
            )

    # ------------------------------------------------------------------ context managers

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        return await asyncio.to_thread(self.start)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.stop)

    async def pause(self, *, graceful: bool = True) -> None:
        """Async :meth:`stop_broker`: the broker goes down, port and data are kept."""
        await asyncio.to_thread(lambda: self.stop_broker(graceful=graceful))

    async def resume(self) -> None:
        """Async :meth:`start_broker`: the broker comes back on the same port with its data."""
        await asyncio.to_thread(self.start_broker)

    def __repr__(self) -> str:
        where = self.bootstrap_servers if self._port is not None else "not started"
        state = "running" if self.is_running else "stopped"
        return f"<LocalKafka {KAFKA_VERSION} {where} {state}>"


# ---------------------------------------------------------------------- CLI


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m adapters.localkafka",
        description=(
            f"Run a local single-node Apache Kafka {KAFKA_VERSION} broker (KRaft) until "
            "Ctrl-C. Needs Java 17+; the first run fetches the jars with Maven."
        ),
    )
    parser.add_argument("--port", type=int, default=None, help="client port (default: a free one)")
    parser.add_argument(
        "--controller-port", type=int, default=None, help="controller port (default: a free one)"
    )
    parser.add_argument(
        "--data-dir",
        default=None,
        help="keep config, log and data here across runs (default: a temporary folder)",
    )
    parser.add_argument("--heap", default="512m", help="JVM max heap (default: 512m)")
    parser.add_argument(
        "--timeout", type=float, default=60.0, help="startup timeout in seconds (default: 60)"
    )
    parser.add_argument("--fetch-only", action="store_true", help="only fetch the jars, then exit")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Start a local broker, print its bootstrap servers and run until Ctrl-C or SIGTERM."""
    args = _parse_args(argv)

    def say(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    def _interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    # SIGINT too: a shell without job control starts background jobs with SIGINT ignored
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    kafka: LocalKafka | None = None
    try:
        if args.fetch_only:
            print(ensure_jars(say))
            return 0
        kafka = LocalKafka(
            args.port,
            args.controller_port,
            data_dir=args.data_dir,
            heap=args.heap,
            startup_timeout=args.timeout,
            progress=say,
        )
        kafka.start()
        say(f"broker log: {kafka.log_path}")
        print(f"KAFKA_BOOTSTRAP_SERVERS={kafka.bootstrap_servers}", flush=True)
        say("Press Ctrl-C to stop.")
        while kafka.is_running:
            time.sleep(0.5)
        say(f"Kafka broker exited unexpectedly; log tail:\n{kafka.log_tail()}")
        return 1
    except KeyboardInterrupt:
        say("Stopping Kafka broker ...")
        return 0
    except LocalKafkaError as exc:
        say(f"error: {exc}")
        return 2
    finally:
        if kafka is not None:
            kafka.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
