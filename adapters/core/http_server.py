"""The HTTP listener: bounded header reads, bounded idle time, and a drain Kubernetes expects.

aiohttp bounds the size of request lines and headers but not the time a client may take to
send them: a connection that trickles a header byte per second, or sends half a header and
idles, would be held for as long as the keep-alive timeout (an hour by default). Here every
request's line and headers must arrive within `header_timeout_s` from their first byte, and
an idle connection is closed after `keepalive_timeout_s`.

Stopping (`drain`) follows Kubernetes: the caller turns `/readyz` to 503 first; the listener
keeps accepting for `delay_s` while the endpoints are removed; then it closes, and every
request already received (including one whose headers or body are still arriving) is
answered within the grace period.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestHandler, RequestPayloadError
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse

log = logging.getLogger(__name__)

# A connection this young with nothing received yet is awaited by the drain, not cut.
FRESH_S = 0.5


class _BoundedHandler(RequestHandler):
    """A connection whose request line and headers must arrive within a deadline."""

    def __init__(self, manager: web.Server, *, header_timeout_s: float, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._header_timeout_s = header_timeout_s
        self._header_timer: asyncio.TimerHandle | None = None
        self._quiet = False
        self._accepted_at = 0.0
        self._got_data = False

    @property
    def receiving_headers(self) -> bool:
        """A request has begun to arrive but its headers are not complete yet."""
        return self._header_timer is not None

    @property
    def busy(self) -> bool:
        """A request is being received, handled or answered on this connection.

        A connection accepted a moment ago that has sent nothing yet counts too: its client
        is about to send the request it connected for.
        """
        fresh = not self._got_data and self._loop.time() - self._accepted_at < FRESH_S
        return fresh or self._request_in_progress or bool(self._messages) or self.receiving_headers

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._accepted_at = self._loop.time()
        super().connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self._got_data = True
        super().data_received(data)
        if self._messages or self._request_in_progress or self.transport is None:
            # Headers complete (the body is bounded by the handler's own deadline).
            self._cancel_header_timer()
        elif self._header_timer is None and data:
            self._header_timer = self._loop.call_later(
                self._header_timeout_s, self._headers_too_slow
            )

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if not (self._messages or self._request_in_progress):
            self.log_debug("request headers not received in time; closing")
            self.force_close()

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def connection_lost(self, exc: BaseException | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> StreamResponse:
        # A malformed request (line, header, encoding) is the sender's fault: aiohttp would
        # log a traceback per request; one line at INFO says enough. Our own 500s stay loud.
        if status >= 500:
            return super().handle_error(request, status, exc, message)
        self._quiet = True
        try:
            log.info("bad request from %s: %s %s", request.remote, status, _reason(exc))
            return super().handle_error(request, status, exc, message)
        finally:
            self._quiet = False

    def log_exception(self, *args: Any, **kw: Any) -> None:
        if self._quiet:
            return
        exc = kw.get("exc_info")
        if isinstance(exc, RequestPayloadError | HttpProcessingError):
            # aiohttp reads the rest of a refused body after the answer ("lingering") and
            # meets the same decoding error again: already answered, not ours to shout about.
            log.info("bad request body: %s", _reason(exc))
            return
        super().log_exception(*args, **kw)


def _reason(exc: BaseException | None) -> str:
    if exc is None:
        return ""
    text = getattr(exc, "message", None) or str(exc)
    # The parser's message can quote the request line: keep it short.
    return (
        f"{type(exc).__name__}: {str(text).splitlines()[0][:120]}" if text else type(exc).__name__
    )


class _BoundedServer(web.Server):
    """aiohttp's connection factory, making `_BoundedHandler`s."""

    def __init__(self, plain: web.Server, *, header_timeout_s: float) -> None:
        super().__init__(
            plain.request_handler,
            request_factory=plain.request_factory,
            handler_cancellation=plain.handler_cancellation,
            loop=plain._loop,
            **plain._kwargs,
        )
        self._header_timeout_s = header_timeout_s

    def __call__(self) -> RequestHandler:
        return _BoundedHandler(
            self, loop=self._loop, header_timeout_s=self._header_timeout_s, **self._kwargs
        )


class BoundedAppRunner(web.AppRunner):
    """An `AppRunner` whose connections use `_BoundedHandler`, with a graceful `drain`."""

    def __init__(
        self,
        app: web.Application,
        *,
        header_timeout_s: float,
        keepalive_timeout_s: float,
        max_line_bytes: int,
        max_headers: int,
    ) -> None:
        super().__init__(
            app,
            access_log=None,
            handle_signals=False,
            # What is left when `cleanup` runs after `drain` are stragglers past the grace.
            shutdown_timeout=1.0,
            keepalive_timeout=keepalive_timeout_s,
            max_line_size=max_line_bytes,
            max_field_size=max_line_bytes,
            max_headers=max_headers,
        )
        self._header_timeout_s = header_timeout_s

    async def _make_server(self) -> web.Server:
        plain = await super()._make_server()
        return _BoundedServer(plain, header_timeout_s=self._header_timeout_s)

    def _handlers(self) -> list[_BoundedHandler]:
        server = self.server
        if server is None:
            return []
        return [h for h in server.connections if isinstance(h, _BoundedHandler)]

    async def drain(self, *, delay_s: float, grace_s: float) -> bool:
        """Keep accepting for `delay_s`, stop listening, then finish what was received.

        Returns False if requests were still open when `grace_s` (counted from the call)
        ran out; `cleanup` then cuts them.
        """
        deadline = time.monotonic() + grace_s
        await asyncio.sleep(max(0.0, min(delay_s, grace_s)))
        for site in list(self.sites):
            await site.stop()
        while time.monotonic() < deadline:
            if not any(h.busy for h in self._handlers()):
                return True
            await asyncio.sleep(0.05)
        return not any(h.busy for h in self._handlers())
