"""Property-based fuzzing of `POST /webhooks/<name>` against a real process on the real broker.

Hypothesis generates requests over bodies (vendor-shaped, random JSON, deep nesting, raw
bytes), headers (random, duplicated signatures, odd content types), encodings (valid and
invalid gzip/deflate, unsupported codings), methods and signatures (valid, forged, stale,
for another body, missing, doubled). The properties, for every request while Kafka is up:
- never a 5xx;
- a forged or missing signature is never accepted (no 2xx);
- an authentic POST is always accepted (200: published, dead-lettered or a known replay).
After the run: every record on the events and DLQ topics is the body of a request sent with
a valid signature (nothing forged reached Kafka), the process is alive, healthy and ready,
and its log has no traceback.

The number of cases per CI run is `WORKBRIDGE_FUZZ_EXAMPLES` (default 10,000, spread over
the three instances); a failure prints the seed to reproduce it with.
"""

from __future__ import annotations

import gzip
import hashlib
import hmac
import json
import os
import socket
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.core.kafka import Topics
from tests.integration.conftest import read_records
from tests.integration.test_process_lifecycle import free_port

pytestmark = pytest.mark.integration

TOTAL = int(os.environ.get("WORKBRIDGE_FUZZ_EXAMPLES", "10000"))
MOCO_SECRET = "1d608b9d72219b90ff2393a1d3ee0ac0"
MW_SECRET = "mw-fuzz-secret-0123456789abcdef"
MAX_BODY = 65_536


@dataclass
class Service:
    """The process under test and what the fuzzer saw it accept."""

    port: int
    proc: subprocess.Popen[bytes]
    log: Path
    prefix: str
    # Per instance: every body sent with a valid signature (or unsigned, where none is needed),
    # as sent and as the server would decode it.
    accepted: dict[str, set[bytes]] = field(default_factory=dict)
    counts: dict[str, dict[int, int]] = field(default_factory=dict)


@pytest.fixture(scope="module")
def service(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    folder = tmp_path_factory.mktemp("fuzz")
    port = free_port()
    prefix = f"fz{int(time.time() * 1000) % 10**9}"
    base = {"base_url": "http://127.0.0.1:9", "commands": {"enabled": False}}
    raw = {
        "kafka": {
            "bootstrap_servers": kafka_bootstrap,
            "topic_prefix": prefix,
            "topics": {"partitions": 2, "replication_factor": 1},
            "linger_ms": 0,
        },
        "server": {"host": "127.0.0.1", "port": port, "max_body_bytes": MAX_BODY},
        "roles": {"webhooks": True, "pollers": False, "commands": False},
        "log_level": "INFO",
        "instances": [
            {"vendor": "moco", "name": "moco", "webhook_secret": MOCO_SECRET, **base},
            {
                "vendor": "mobilitywork",
                "name": "mw",
                "webhook_secret": MW_SECRET,
                "options": {"network_name": "Fuzz Inc."},
                **base,
            },
            {"vendor": "mobilitywork", "name": "mw-open", **base},
        ],
    }
    config = folder / "wb.yaml"
    config.write_text(yaml.safe_dump(raw))
    log = folder / "workbridge.log"
    with log.open("wb") as out:
        # Output to a file: thousands of refusal lines would fill a pipe and block the process.
        proc = subprocess.Popen(
            [sys.executable, "-m", "adapters.cli", "run", "--config", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while _status(port, "GET", "/readyz") != 200:
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the service did not become ready"
            time.sleep(0.2)
        yield Service(port, proc, log, prefix)
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


# --- a raw HTTP client: any method, duplicate headers, bodies that lie about themselves ----


def _exchange(port: int, raw: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(raw)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def _request(
    method: str, path: str, headers: list[tuple[str, str]], body: bytes, *, chunked: bool
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in headers]
    if chunked:
        lines.append("Transfer-Encoding: chunked")
        payload = (b"%x\r\n%s\r\n" % (len(body), body) if body else b"") + b"0\r\n\r\n"
    else:
        lines.append(f"Content-Length: {len(body)}")
        payload = body
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload


def _status(port: int, method: str, path: str) -> int | None:
    try:
        answer = _exchange(port, _request(method, path, [], b"", chunked=False))
    except OSError:
        return None
    parts = answer.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None


# --- strategies ---------------------------------------------------------------------------

_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _text,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(_text, inner, max_size=5),
    max_leaves=30,
)
_ids = st.integers(min_value=-(2**63), max_value=2**63) | _text.filter(bool)


@st.composite
def moco_bodies(draw: st.DrawFn) -> bytes:
    record = {"id": draw(_ids), **draw(st.dictionaries(_text, _json, max_size=6))}
    return json.dumps(record, ensure_ascii=draw(st.booleans())).encode()


@st.composite
def mw_bodies(draw: st.DrawFn) -> bytes:
    event = draw(
        st.sampled_from(["SparePartWasConsumed", "TaskWasCreated", "TaskWasClosed"]) | _text
    )
    record: dict[str, Any] = {
        "_type": f"{event}Webhook",
        "_event": event,
        "_sentAt": "2022-06-02T14:31:06+00:00",
        "emittedAt": draw(st.sampled_from(["2023-02-08T23:00:00+00:00", "yesterday", ""])),
        "networkId": draw(_text),
        draw(st.sampled_from(["task", "sparePart", "equipment"])): {"id": draw(_ids)},
        **draw(st.dictionaries(_text, _json, max_size=4)),
    }
    return json.dumps(record).encode()


def _deep(n: int) -> bytes:
    return b'{"id":1,"x":' + b"[" * n + b"]" * n + b"}"


def bodies(vendor_shaped: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    return st.one_of(
        vendor_shaped,
        vendor_shaped,
        _json.map(lambda v: json.dumps(v).encode()),
        st.binary(max_size=2000),
        st.integers(min_value=60, max_value=20_000).map(_deep),
        st.just(b""),
        st.integers(min_value=1000, max_value=MAX_BODY + 2000).map(
            lambda n: b'{"id":2,"pad":"' + b"x" * n + b'"}'
        ),
    )


_header_names = st.from_regex(r"\AX-[A-Za-z0-9-]{1,20}\Z", fullmatch=True)
_header_values = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60)
_extra_headers = st.lists(st.tuples(_header_names, _header_values), max_size=4)
_encodings = st.sampled_from(
    ["none", "none", "none", "gzip", "deflate", "gzip-lie", "deflate-lie", "br", "bogus"]
)
_methods = st.sampled_from(["POST"] * 12 + ["GET", "PUT", "DELETE", "PATCH", "OPTIONS", "FOO"])
SIGNATURES = ["valid", "valid", "valid", "forged", "missing", "other-body", "doubled"]


@dataclass(frozen=True)
class Case:
    method: str
    body: bytes
    signature: str
    encoding: str
    chunked: bool
    extra: list[tuple[str, str]]
    content_type: str


def cases(vendor_shaped: st.SearchStrategy[bytes], signatures: list[str]) -> Any:
    return st.builds(
        Case,
        method=_methods,
        body=bodies(vendor_shaped),
        signature=st.sampled_from(signatures),
        encoding=_encodings,
        chunked=st.booleans(),
        extra=_extra_headers,
        content_type=st.sampled_from(["application/json", "text/plain", "", "application/x"]),
    )


def _encode(body: bytes, encoding: str) -> tuple[bytes, list[tuple[str, str]], bool]:
    """(wire bytes, headers, whether the decoded body is `body`)."""
    if encoding == "gzip":
        return gzip.compress(body), [("Content-Encoding", "gzip")], True
    if encoding == "deflate":
        return zlib.compress(body), [("Content-Encoding", "deflate")], True
    if encoding in ("gzip-lie", "deflate-lie"):
        # Not what it says: unless the bytes happen to decode, the answer must be 400.
        return body + b"\x00", [("Content-Encoding", encoding.split("-")[0])], False
    if encoding in ("br", "bogus"):
        return body, [("Content-Encoding", encoding)], False
    return body, [], True


def _server_view(wire: bytes, coding: str | None) -> bytes | None:
    """The body as the server decodes it (None when it cannot): a "lying" body may still
    decode by chance (raw deflate accepts many byte strings), and then it is that body the
    server verifies and publishes."""
    if coding is None or coding not in ("gzip", "deflate"):
        return wire
    attempts = [16 + zlib.MAX_WBITS] if coding == "gzip" else [zlib.MAX_WBITS, -zlib.MAX_WBITS]
    for wbits in attempts:
        try:
            return zlib.decompress(wire, wbits)
        except zlib.error:
            continue
    return None


def _send(
    service: Service, instance: str, case: Case, headers: list[tuple[str, str]], authentic: bool
) -> int:
    wire, enc_headers, _ = _encode(case.body, case.encoding)
    if authentic:
        # Recorded before sending: what reaches Kafka is checked against what was sent with
        # a valid signature, whatever answer (or lost answer) the client saw.
        sent = service.accepted.setdefault(instance, set())
        sent.add(case.body)
        seen = _server_view(wire, enc_headers[0][1] if enc_headers else None)
        if seen is not None:
            sent.add(seen)
    all_headers = enc_headers + headers + case.extra
    if case.content_type:
        all_headers.append(("Content-Type", case.content_type))
    raw = _request(case.method, f"/webhooks/{instance}", all_headers, wire, chunked=case.chunked)
    answer = _exchange(service.port, raw)
    status_line = answer.split(b"\r\n", 1)[0].split(b" ")
    assert len(status_line) >= 2 and status_line[1].isdigit(), f"no HTTP answer: {answer[:200]!r}"
    status = int(status_line[1])
    counts = service.counts.setdefault(instance, {})
    counts[status] = counts.get(status, 0) + 1
    return status


def _check(service: Service, instance: str, case: Case, status: int, authentic: bool) -> None:
    assert status < 500, f"{status} for {case!r}"
    encoded_ok = _encode(case.body, case.encoding)[2]
    if not authentic:
        assert not 200 <= status < 300, f"forged request accepted: {case!r}"
    elif case.method == "POST" and encoded_ok and len(case.body) <= MAX_BODY:
        assert status == 200, f"{status} for an authentic delivery: {case!r}"
    if 200 <= status < 300:
        assert authentic and case.method == "POST"


def _moco_signature(body: bytes, secret: str = MOCO_SECRET) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _mw_signature(body: bytes, *, t: int, nonce: str, secret: str = MW_SECRET) -> str:
    mac = hmac.new(secret.encode(), f"{t}.{nonce}.".encode() + body, hashlib.sha256)
    return f"t={t},nonce={nonce},signature={mac.hexdigest()}"


def fuzz(max_examples: int) -> settings:
    """Settings of one fuzz test: no deadline, no example database, the seed on failure."""
    return settings(
        max_examples=max(1, max_examples),
        deadline=None,
        database=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


@fuzz(TOTAL * 2 // 5)
@given(case=cases(moco_bodies(), SIGNATURES))
def test_fuzz_moco(service: Service, case: Case) -> None:
    headers = [("X-Moco-Target", "Activity"), ("X-Moco-Event", "create")]
    good = _moco_signature(case.body)
    authentic = case.signature == "valid"
    if case.signature == "valid":
        headers.append(("X-Moco-Signature", good))
    elif case.signature == "forged":
        headers.append(("X-Moco-Signature", _moco_signature(case.body, "not-the-secret")))
    elif case.signature == "other-body":
        headers.append(("X-Moco-Signature", _moco_signature(case.body + b" ")))
    elif case.signature == "doubled":
        headers += [("X-Moco-Signature", good), ("X-Moco-Signature", "0" * 64)]
    _check(service, "moco", case, _send(service, "moco", case, headers, authentic), authentic)


@fuzz(TOTAL * 2 // 5)
@given(
    case=cases(mw_bodies(), [*SIGNATURES, "stale", "malformed"]),
    nonce=st.from_regex(r"\A[0-9a-f]{8,40}\Z", fullmatch=True),
)
def test_fuzz_mobilitywork(service: Service, case: Case, nonce: str) -> None:
    now = int(time.time())
    good = _mw_signature(case.body, t=now, nonce=nonce)
    header = {
        "valid": good,
        "forged": _mw_signature(case.body, t=now, nonce=nonce, secret="wrong"),
        "other-body": _mw_signature(case.body + b" ", t=now, nonce=nonce),
        "stale": _mw_signature(case.body, t=now - 3600, nonce=nonce),
        "malformed": f"t={now};nonce={nonce}",
    }.get(case.signature)
    headers = [("X-MW-Signature", header)] if header else []
    if case.signature == "doubled":
        headers = [("X-MW-Signature", good), ("X-MW-Signature", good[:-4] + "0000")]
    authentic = case.signature == "valid"
    _check(service, "mw", case, _send(service, "mw", case, headers, authentic), authentic)


@fuzz(TOTAL - 2 * (TOTAL * 2 // 5))
@given(case=cases(mw_bodies(), ["missing"]))
def test_fuzz_unsigned_mobilitywork(service: Service, case: Case) -> None:
    # No secret configured: every well-formed POST is taken (the bridge warned at start-up).
    _check(service, "mw-open", case, _send(service, "mw-open", case, [], True), True)


async def test_after_fuzzing_only_authentic_bodies_are_on_kafka_and_the_process_is_healthy(
    service: Service, kafka_bootstrap: str
) -> None:
    if not service.accepted:
        pytest.skip("run with the fuzz tests (it checks what they left behind)")
    assert service.proc.poll() is None, "the process died while fuzzed"
    assert _status(service.port, "GET", "/healthz") == 200
    assert _status(service.port, "GET", "/readyz") == 200
    for instance, accepted in service.accepted.items():
        topics = Topics(service.prefix, instance)
        for topic in (topics.events, topics.dlq):
            records = await read_records(kafka_bootstrap, topic, count=10**9, wait_s=1)
            strangers = [r for r in records if r.value not in accepted]
            # What a stranger is, should one appear: its headers include the request's.
            details = [(r.value[:80] if r.value else b"", dict(r.headers)) for r in strangers[:3]]
            assert strangers == [], f"{len(strangers)} forged records on {topic}: {details}"
    log = service.log.read_text(errors="replace")
    assert "Traceback" not in log, log[-4000:]
    print("\nfuzz answers by instance and status:", service.counts)
