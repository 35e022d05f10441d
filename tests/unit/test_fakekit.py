"""Tests of the shared fake-server machinery (adapters/fakekit.py)."""

from __future__ import annotations

import aiohttp
import msgspec
import pytest
from aiohttp import web

from adapters.fakekit import (
    Attempt,
    FakeServer,
    RetryPolicy,
    json_response,
    read_json_object,
    retry_after_headers,
    retry_delay,
)


class Policy(msgspec.Struct, frozen=True):
    webhook_retry_initial_s: float = 0.01
    webhook_retry_factor: float = 2.0
    webhook_retry_max_s: float = 0.03
    webhook_timeout_s: float = 2.0


class Message(msgspec.Struct):
    url: str
    body: bytes


class TinyFake(FakeServer[Message]):
    """Echoes the control body; delivers webhooks until `max_attempts` or a 2xx."""

    _server_name = "TinyFake"
    _base_path = "/api"

    def __init__(self, max_attempts: int = 3) -> None:
        super().__init__()
        self.max_attempts = max_attempts
        self.attempts: list[Attempt] = []

    def _build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/_fake/echo", self._echo)
        app.router.add_get("/api/ping", self._ping)
        return app

    async def _echo(self, request: web.Request) -> web.Response:
        return json_response(await read_json_object(request))

    async def _ping(self, request: web.Request) -> web.Response:
        delay, injected = self._take_faults()
        if injected is not None:
            return json_response({}, injected[0], retry_after_headers(injected[1]))
        return json_response({"delay": delay})

    def _retry_policy(self) -> RetryPolicy:
        return Policy()

    def _may_attempt(self, message: Message, attempt: int) -> bool:
        return attempt <= self.max_attempts

    def _attempt_request(self, message: Message, attempt: int) -> tuple[str, bytes, dict[str, str]]:
        return message.url, message.body, {"X-Attempt": str(attempt)}

    def _after_attempt(self, message: Message, attempt: Attempt) -> bool:
        self.attempts.append(attempt)
        ok = attempt.status is not None and 200 <= attempt.status < 300
        return ok or attempt.number == self.max_attempts


def test_retry_delay_grows_and_is_capped() -> None:
    policy = Policy()
    assert [retry_delay(policy, n) for n in (1, 2, 3)] == [0.01, 0.02, 0.03]


def test_retry_after_headers() -> None:
    assert retry_after_headers(None) == {}
    assert retry_after_headers(0.5) == {"Retry-After": "0.5"}
    assert retry_after_headers(2.0) == {"Retry-After": "2"}


async def test_urls_and_lifecycle() -> None:
    fake = TinyFake()
    with pytest.raises(RuntimeError, match="TinyFake is not started"):
        _ = fake.control_url
    async with fake:
        assert fake.base_url is not None and fake.base_url.endswith("/api")
        assert fake.control_url == fake.base_url.removesuffix("/api") + "/_fake"
        with pytest.raises(RuntimeError, match="already started"):
            await fake.start()
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{fake.control_url}/echo", json={"a": 1}) as response:
                assert (response.status, await response.json()) == (200, {"a": 1})
            async with session.post(f"{fake.control_url}/echo", data=b"[1]") as response:
                assert response.status == 400
            fake.fail_next(1, 503, retry_after=0.5)
            fake.delay_next(1, 0.01)
            async with session.get(f"{fake.base_url}/ping") as response:
                assert response.status == 503
                assert response.headers["Retry-After"] == "0.5"
            async with session.get(f"{fake.base_url}/ping") as response:
                assert await response.json() == {"delay": 0.0}


async def test_delivery_retries_until_success_and_resend_last() -> None:
    statuses = [500, 500, 200, 200]
    seen: list[str] = []

    async def receive(request: web.Request) -> web.Response:
        seen.append(request.headers["X-Attempt"])
        return web.Response(status=statuses.pop(0))

    app = web.Application()
    app.router.add_post("/hook", receive)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    try:
        async with TinyFake() as fake:
            message = Message(url=url, body=b"{}")
            fake.webhooks.append(message)
            fake._spawn(message, redelivery=False)
            await fake.wait_deliveries_idle(5)
            fake.resend_last()
            await fake.wait_deliveries_idle(5)
        assert [a.status for a in fake.attempts] == [500, 500, 200, 200]
        assert [a.redelivery for a in fake.attempts] == [False, False, False, True]
        assert seen == ["1", "2", "3", "1"]
    finally:
        await runner.cleanup()


async def test_delivery_gives_up_and_records_errors() -> None:
    async with TinyFake(max_attempts=2) as fake:
        fake._spawn(Message(url="http://127.0.0.1:9/none", body=b"{}"), redelivery=False)
        await fake.wait_deliveries_idle(5)
    assert [a.number for a in fake.attempts] == [1, 2]
    assert all(a.status is None and a.error for a in fake.attempts)
