"""call_with_retry against a real local HTTP server (loopback only)."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import msgspec
import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestServer

from adapters.core.errors import Action, ErrorTable, Rule
from adapters.core.multipart import FormPart, Multipart
from adapters.core.ratelimit import Unlimited
from adapters.core.rest_command import rest_command
from adapters.core.vendor_call import RetryPolicy, call_with_retry
from adapters.core.vendor_http import Unrepeatable, VendorClient, VendorResponse

FAST = RetryPolicy(deadline_s=5.0, max_attempts=5, base_s=0.001, cap_s=0.005)


@dataclass
class Seen:
    at: float
    method: str
    path_qs: str
    headers: dict[str, str]
    body: bytes
    raw_path: str = ""


@dataclass
class Script:
    """Answers in order (the last one repeats) and records every request."""

    answers: list[tuple[int, dict[str, str], bytes]] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.seen.append(
            Seen(
                time.monotonic(),
                request.method,
                request.path_qs,
                dict(request.headers),
                await request.read(),
                request.raw_path,
            )
        )
        status, headers, body = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        return web.Response(status=status, headers=headers, body=body)


@pytest_asyncio.fixture
async def script() -> AsyncIterator[tuple[Script, VendorClient]]:
    sc = Script()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", sc.handle)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    client = VendorClient(
        base_url=str(server.make_url("/api/v1")),
        auth_headers={"Authorization": "Token token=SECRETKEY"},
        limiter=Unlimited(),
        timeout_s=5.0,
        user_agent="workbridge-test",
    )
    try:
        yield sc, client
    finally:
        await client.close()
        await server.close()


async def test_503_503_200_succeeds_after_three_attempts(
    script: tuple[Script, VendorClient],
) -> None:
    sc, client = script
    sc.answers = [(503, {}, b"busy"), (503, {}, b"busy"), (200, {"X-Req": "r1"}, b'{"id":9}')]
    out = await call_with_retry(
        client,
        "POST",
        "/activities",
        errors=ErrorTable(),
        policy=FAST,
        json={"hours": 1},
        params={"a": "b"},
        headers={"X-IMPERSONATE-USER-ID": "3"},
    )
    assert out.action is Action.SUCCESS
    assert out.attempts == 3
    assert out.error is None
    assert out.response is not None
    assert out.response.status == 200
    assert out.response.json() == {"id": 9}
    assert out.response.headers["x-req"] == "r1"  # headers are lower-cased
    assert len(sc.seen) == 3
    first = sc.seen[0]
    assert first.method == "POST"
    assert first.path_qs == "/api/v1/activities?a=b"
    assert first.body == b'{"hours":1}'
    assert first.headers["Authorization"] == "Token token=SECRETKEY"
    assert first.headers["Content-Type"] == "application/json"
    assert first.headers["X-IMPERSONATE-USER-ID"] == "3"
    assert first.headers["User-Agent"] == "workbridge-test"
    assert all(s.body == b'{"hours":1}' for s in sc.seen)


async def test_422_fails_after_one_attempt(script: tuple[Script, VendorClient]) -> None:
    sc, client = script
    sc.answers = [(422, {}, b'{"message":"date is invalid"}')]
    out = await call_with_retry(client, "GET", "/x", errors=ErrorTable(), policy=FAST)
    assert out.action is Action.FAIL
    assert out.attempts == 1
    assert out.error == "validation failed at the vendor"
    assert out.response is not None
    assert out.response.json_or_text() == {"message": "date is invalid"}
    assert len(sc.seen) == 1


async def test_429_retry_after_is_waited(script: tuple[Script, VendorClient]) -> None:
    sc, client = script
    sc.answers = [(429, {"Retry-After": "0.2"}, b""), (200, {}, b"[]")]
    out = await call_with_retry(client, "GET", "/projects", errors=ErrorTable(), policy=FAST)
    assert out.action is Action.SUCCESS
    assert out.attempts == 2
    assert sc.seen[1].at - sc.seen[0].at >= 0.2


async def test_max_attempts(script: tuple[Script, VendorClient]) -> None:
    sc, client = script
    sc.answers = [(500, {}, b"")]
    policy = RetryPolicy(deadline_s=5.0, max_attempts=3, base_s=0.001, cap_s=0.002)
    out = await call_with_retry(client, "GET", "/x", errors=ErrorTable(), policy=policy)
    assert out.action is Action.RETRY
    assert out.attempts == 3
    assert out.response is not None and out.response.status == 500
    assert out.error == "vendor server error"
    assert len(sc.seen) == 3


async def test_deadline_stops_retries(script: tuple[Script, VendorClient]) -> None:
    sc, client = script
    # The vendor asks for 5 s, the deadline is 0.3 s away: give up now, don't sleep past it.
    sc.answers = [(503, {"Retry-After": "5"}, b"")]
    policy = RetryPolicy(deadline_s=0.3, max_attempts=10, base_s=0.001, cap_s=0.002)
    started = time.monotonic()
    out = await call_with_retry(client, "GET", "/x", errors=ErrorTable(), policy=policy)
    assert time.monotonic() - started < 0.25
    assert out.action is Action.RETRY
    assert out.attempts == 1
    assert len(sc.seen) == 1


async def test_deadline_cuts_a_retry_loop(script: tuple[Script, VendorClient]) -> None:
    sc, client = script
    sc.answers = [(503, {"Retry-After": "0.1"}, b"")]
    policy = RetryPolicy(deadline_s=0.35, max_attempts=100, base_s=0.001, cap_s=0.002)
    started = time.monotonic()
    out = await call_with_retry(client, "GET", "/x", errors=ErrorTable(), policy=policy)
    assert time.monotonic() - started < 0.5  # no sleep past the deadline
    assert out.action is Action.RETRY
    assert out.attempts in (3, 4)  # 0, ~0.1, ~0.2, (~0.3) and then 0.4 would pass the deadline
    assert len(sc.seen) == out.attempts


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_connection_refused_is_a_retriable_transport_error() -> None:
    client = VendorClient(
        base_url=f"http://127.0.0.1:{free_port()}/api/v1",
        auth_headers={"Authorization": "Token token=SECRETKEY"},
        limiter=Unlimited(),
        timeout_s=2.0,
        user_agent="t",
    )
    policy = RetryPolicy(deadline_s=2.0, max_attempts=2, base_s=0.001, cap_s=0.002)
    try:
        out = await call_with_retry(client, "GET", "/projects", errors=ErrorTable(), policy=policy)
    finally:
        await client.close()
    assert out.action is Action.RETRY
    assert out.attempts == 2
    assert out.response is None
    assert out.rule is None
    assert out.error is not None
    assert out.error.startswith("GET /projects: cannot connect")
    assert out.may_have_acted is False  # nothing reached the vendor: safe even for a create
    assert "SECRETKEY" not in out.error


async def test_timeout_is_a_transport_error() -> None:
    async def slow(_request: web.Request) -> web.Response:
        await asyncio.sleep(1.0)
        return web.Response()

    app = web.Application()
    app.router.add_get("/slow", slow)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    client = VendorClient(
        base_url=str(server.make_url("/")),
        auth_headers={},
        limiter=Unlimited(),
        timeout_s=0.1,
        user_agent="t",
    )
    policy = RetryPolicy(deadline_s=2.0, max_attempts=1)
    try:
        out = await call_with_retry(client, "GET", "/slow", errors=ErrorTable(), policy=policy)
    finally:
        await client.close()
        await server.close()
    assert out.action is Action.RETRY
    assert out.response is None
    assert out.error is not None and "Timeout" in out.error


async def test_429_pauses_the_limiter(script: tuple[Script, VendorClient]) -> None:
    sc, client = script
    paused: list[float] = []

    class Recording(Unlimited):
        def pause(self, seconds: float) -> None:
            paused.append(seconds)

    client.limiter = Recording()
    sc.answers = [(429, {"Retry-After": "0.05"}, b""), (200, {}, b"")]
    out = await call_with_retry(client, "GET", "/x", errors=ErrorTable(), policy=FAST)
    assert out.action is Action.SUCCESS
    assert paused == [0.05]


async def test_a_create_is_not_repeated_after_a_500(script: tuple[Script, VendorClient]) -> None:
    # A 500 may come after the vendor acted: repeating a create could act twice.
    sc, client = script
    sc.answers = [(500, {}, b"oops"), (201, {}, b"{}")]
    out = await call_with_retry(
        client, "POST", "/tasks", errors=ErrorTable(), policy=FAST, repeat_safe=False, json={}
    )
    assert (out.action, out.attempts, out.may_have_acted) == (Action.RETRY, 1, True)
    assert len(sc.seen) == 1


async def test_a_create_is_repeated_after_429_and_503(script: tuple[Script, VendorClient]) -> None:
    # 429 and 503 say the request was not handled: repeating is safe.
    sc, client = script
    sc.answers = [(429, {"Retry-After": "0"}, b""), (503, {}, b""), (201, {}, b"{}")]
    out = await call_with_retry(
        client, "POST", "/tasks", errors=ErrorTable(), policy=FAST, repeat_safe=False, json={}
    )
    assert (out.action, out.attempts, out.may_have_acted) == (Action.SUCCESS, 3, False)


async def test_after_attempt_reports_whether_the_vendor_may_have_acted(
    script: tuple[Script, VendorClient],
) -> None:
    sc, client = script
    sc.answers = [(503, {}, b""), (500, {}, b""), (200, {}, b"{}")]
    heard: list[bool] = []
    await call_with_retry(
        client, "PUT", "/x", errors=ErrorTable(), policy=FAST, after_attempt=heard.append
    )
    assert heard == [False, True, True]


async def test_credentials_never_follow_a_link_to_another_host(
    script: tuple[Script, VendorClient],
) -> None:
    from adapters.core.vendor_http import ForeignURL

    _, client = script
    with pytest.raises(ForeignURL):
        await client.request("GET", "https://elsewhere.example/api/v1/projects?page=2")
    assert client.url(client.base_url + "/projects?page=2").endswith("/projects?page=2")


async def test_a_4xx_class_override_leaves_429_retried(
    script: tuple[Script, VendorClient],
) -> None:
    # The vendor's own class rule is less specific than the default 429 rule: it must not
    # turn a rate limit into a permanent failure.
    sc, client = script
    sc.answers = [(429, {"Retry-After": "0"}, b""), (200, {}, b"[]")]
    table = ErrorTable(overrides={"4xx": Rule(Action.FAIL, "refused by this vendor")})
    out = await call_with_retry(client, "GET", "/projects", errors=table, policy=FAST)
    assert out.action is Action.SUCCESS
    assert out.attempts == 2


async def test_path_fields_reach_the_vendor_as_one_segment(
    script: tuple[Script, VendorClient],
) -> None:
    sc, client = script
    sc.answers = [(200, {}, b"{}")]

    class Ref(msgspec.Struct, kw_only=True):
        id: str

    spec = rest_command("x.thing.delete", Ref, "DELETE", "/activities/{id}", kind="delete")
    for value in ("../x", "a/b", "x?y=1", "%2e"):
        call = spec.build(Ref(id=value))
        await call_with_retry(client, call.method, call.path, errors=ErrorTable(), policy=FAST)
    assert [s.raw_path for s in sc.seen] == [
        "/api/v1/activities/..%2Fx",
        "/api/v1/activities/a%2Fb",
        "/api/v1/activities/x%3Fy=1",
        "/api/v1/activities/%252e",
    ]


class _Stopping:
    """A client whose every answer is a batch operation's 500 that must not be repeated."""

    def __init__(self, response: bool) -> None:
        self.calls = 0
        self.response = response

    async def request(self, *_args: object, **_kw: object) -> object:
        self.calls += 1
        answer = VendorResponse(500, {}, b'{"status": "error"}') if self.response else None
        raise Unrepeatable("not retried: order", may_have_acted=True, response=answer)


@pytest.mark.parametrize("with_answer", [True, False])
async def test_a_call_that_must_not_be_repeated_is_tried_once(with_answer: bool) -> None:
    client = _Stopping(with_answer)
    seen: list[bool] = []
    result = await call_with_retry(
        client,  # type: ignore[arg-type]
        "PATCH",
        "/things/1",
        errors=ErrorTable(),
        policy=FAST,
        repeat_safe=True,
        after_attempt=seen.append,
    )
    assert client.calls == 1 and seen == [True]
    assert result.action is Action.RETRY and result.may_have_acted
    assert result.stopped == "not retried: order"
    assert (result.response is not None) is with_answer
    assert result.error is not None and "not retried: order" in result.error


async def test_a_multipart_body_is_sent_as_form_data_on_every_attempt(
    script: tuple[Script, VendorClient],
) -> None:
    sc, client = script
    sc.answers = [(503, {}, b""), (200, {}, b'{"code": 200}')]
    body = Multipart(
        (
            FormPart("name", "pump.pdf"),
            FormPart(
                "file", b"%PDF-1.4 bytes", filename="pump.pdf", content_type="application/pdf"
            ),
        )
    )
    assert "PDF-1.4" not in repr(body)
    outcome = await call_with_retry(
        client, "POST", "/workorders/1/documents", errors=ErrorTable(), policy=FAST, json=body
    )
    assert outcome.action is Action.SUCCESS and outcome.attempts == 2
    for seen in sc.seen:
        assert seen.headers["Content-Type"].startswith("multipart/form-data; boundary=")
        assert b'name="file"; filename="pump.pdf"' in seen.body
        assert b"%PDF-1.4 bytes" in seen.body
