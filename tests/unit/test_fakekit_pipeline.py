"""The fake kit's request pipeline and shared control routes, on a tiny fake vendor."""

from __future__ import annotations

import time

import aiohttp
from aiohttp import web

from adapters.fakekit import json_response, retry_after_headers
from adapters.fakekit_auth import FakeTokenIssuer
from adapters.fakekit_control import mount_control_routes
from adapters.fakekit_logs import CallLogEntry, RequestLogEntry
from adapters.fakekit_pipeline import Arrival, PipelineServer, injected_reason


class Probe(PipelineServer[None, str | None]):
    """Key "k" in header `Key` admits; the answer echoes the body and how long it waited."""

    _server_name = "Probe"
    _base_path = "/api"

    def __init__(self, *, tokens: bool = True) -> None:
        super().__init__()
        self.requests: list[RequestLogEntry] = []
        self.calls: list[CallLogEntry] = []
        self.arrived: list[str | None] = []
        self.issuer = FakeTokenIssuer() if tokens else None

    def _build_app(self) -> web.Application:
        app = web.Application()
        mount_control_routes(app, self, tokens=self.issuer)
        app.router.add_route("*", "/api/{tail:.*}", self._api)
        return app

    def _arrive(self, request: web.Request, at: float) -> str | None:
        key = request.headers.get("Key")
        self.arrived.append(key)
        return key

    def _injected(self, status: int, retry_after: float | None) -> web.Response:
        return json_response(
            {"error": injected_reason(status)}, status, retry_after_headers(retry_after)
        )

    def _admit(self, request: web.Request, state: str | None, at: float) -> web.Response | None:
        return None if state == "k" else json_response({"error": "key"}, 401)

    async def _dispatch(self, request: web.Request, arrival: Arrival[str | None]) -> web.Response:
        body = arrival.body.decode()
        self.calls.append(CallLogEntry(method=request.method, path=request.path, json=body))
        return json_response({"body": body, "waited": time.monotonic() - arrival.at})

    def _log_request(
        self, request: web.Request, arrival: Arrival[str | None], response: web.Response
    ) -> None:
        self.requests.append(
            RequestLogEntry(
                method=request.method, path=request.path, status=response.status, at=arrival.at
            )
        )


class EagerProbe(Probe):
    _answer_before_delay = True


async def test_an_injected_failure_comes_first_then_the_key_then_the_vendors_answer() -> None:
    async with Probe() as fake, aiohttp.ClientSession() as http:
        url = f"{fake.base_url}/x"
        fake.fail_next(1, 503, retry_after=0.5)
        async with http.post(url, data=b"a", headers={"Key": "k"}) as response:
            assert response.status == 503 and response.headers["Retry-After"] == "0.5"
            assert await response.json() == {"error": "injected failure (503)"}
        async with http.post(url, data=b"b", headers={"Key": "wrong"}) as response:
            assert response.status == 401
        async with http.post(url, data=b"c", headers={"Key": "k"}) as response:
            assert (await response.json())["body"] == "c"
    # Every request is read on arrival; only the admitted one reached the vendor's handler.
    assert fake.arrived == ["k", "wrong", "k"]
    assert [c.json for c in fake.calls] == ["c"]
    assert [r.status for r in fake.requests] == [503, 401, 200]


async def test_the_delay_comes_before_the_answer_or_after_it() -> None:
    for probe, waited_at_least in ((Probe(), True), (EagerProbe(), False)):
        async with probe as fake, aiohttp.ClientSession() as http:
            fake.delay_next(1, 0.2)
            started = time.monotonic()
            async with http.get(f"{fake.base_url}/x", headers={"Key": "k"}) as response:
                waited = (await response.json())["waited"]
            assert time.monotonic() - started >= 0.2  # the client waits either way
            assert (waited >= 0.2) is waited_at_least


async def test_the_shared_control_routes() -> None:
    async with Probe() as fake, aiohttp.ClientSession() as http:
        ctl = fake.control_url

        async def call(path: str, body: object = None) -> int:
            async with http.post(f"{ctl}{path}", json=body) as response:
                return response.status

        assert await call("/fail_next", {"n": 1, "status": 502, "retry_after": 1}) == 204
        assert await call("/fail_next", {"n": "x", "status": 502}) == 400
        assert await call("/delay_next", {"n": 1, "seconds": 0.01}) == 204
        assert await call("/delay_next", {}) == 400
        async with http.get(f"{fake.base_url}/x", headers={"Key": "k"}) as response:
            assert response.status == 502 and response.headers["Retry-After"] == "1"
        async with http.put(f"{fake.base_url}/x", data=b"w", headers={"Key": "k"}):
            pass
        async with http.get(f"{ctl}/requests") as response:
            assert [(r["path"], r["status"]) for r in await response.json()] == [
                ("/api/x", 502),
                ("/api/x", 200),
            ]
        async with http.get(f"{ctl}/calls") as response:
            assert await response.json() == [{"method": "PUT", "path": "/api/x", "json": "w"}]
        assert fake.issuer is not None
        token = fake.issuer.issue("u")
        assert await call("/expire_tokens") == 204
        assert fake.issuer.subject(token) is None


async def test_no_expire_tokens_route_without_an_issuer() -> None:
    async with (
        Probe(tokens=False) as fake,
        aiohttp.ClientSession() as http,
        http.post(f"{fake.control_url}/expire_tokens") as response,
    ):
        assert response.status == 404
