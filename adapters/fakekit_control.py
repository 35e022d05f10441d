"""The control routes every fake vendor serves under `/_fake/`, unauthenticated, for tests.

`mount_control_routes` adds them to a fake's application:

- `POST /_fake/fail_next {"n", "status", "retry_after"?}` and `POST /_fake/delay_next {"n",
  "seconds"}`: the fault injection of `FakeServer`, for a test (or demo) in another process;
- `GET /_fake/requests` and `GET /_fake/calls`: the fake's request and write logs as JSON;
- `POST /_fake/expire_tokens`, where the fake issues tokens: every token so far stops working.

Each answers 204 (or the JSON), and 400 for a body it cannot use. A fake mounts them before
routes of its own under `/_fake/{…}`, which would otherwise catch these paths.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import msgspec
from aiohttp import web

from adapters.fakekit import json_response, read_json_object
from adapters.fakekit_auth import FakeTokenIssuer


class Controlled(Protocol):
    """What the control routes need of a fake: its logs and its fault injection."""

    @property
    def requests(self) -> Sequence[msgspec.Struct]:
        """Every API request with its status."""
        ...

    @property
    def calls(self) -> Sequence[msgspec.Struct]:
        """The accepted writes."""
        ...

    def fail_next(self, n: int, status: int, retry_after: float | None = None) -> None:
        """Answer the next `n` API requests with `status`."""
        ...

    def delay_next(self, n: int, seconds: float) -> None:
        """Hold the answers of the next `n` API requests for `seconds`."""
        ...


def mount_control_routes(
    app: web.Application, fake: Controlled, *, tokens: FakeTokenIssuer | None = None
) -> None:
    """Add the shared `/_fake/` routes (see the module docstring) for `fake` to `app`.

    `tokens`: the fake's token issuer, whose tokens `/_fake/expire_tokens` expires; without
    one there is no such route.
    """

    async def fail_next(request: web.Request) -> web.Response:
        body = await read_json_object(request)
        try:
            n, status = int(body["n"]), int(body["status"])
            retry_after = body.get("retry_after")
            fake.fail_next(n, status, None if retry_after is None else float(retry_after))
        except (KeyError, TypeError, ValueError):
            raise web.HTTPBadRequest(text="need n, status and an optional retry_after") from None
        return web.Response(status=204)

    async def delay_next(request: web.Request) -> web.Response:
        body = await read_json_object(request)
        try:
            fake.delay_next(int(body["n"]), float(body["seconds"]))
        except (KeyError, TypeError, ValueError):
            raise web.HTTPBadRequest(text="need n and seconds") from None
        return web.Response(status=204)

    async def requests(request: web.Request) -> web.Response:
        return json_response(fake.requests)

    async def calls(request: web.Request) -> web.Response:
        return json_response(fake.calls)

    app.router.add_post("/_fake/fail_next", fail_next)
    app.router.add_post("/_fake/delay_next", delay_next)
    app.router.add_get("/_fake/requests", requests)
    app.router.add_get("/_fake/calls", calls)
    if tokens is not None:
        issuer = tokens

        async def expire_tokens(request: web.Request) -> web.Response:
            issuer.expire_all()
            return web.Response(status=204)

        app.router.add_post("/_fake/expire_tokens", expire_tokens)
