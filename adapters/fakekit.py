"""Vendor-agnostic machinery shared by the five fake vendor servers: the kit's base module.

The kit, one job a module: this one (server lifecycle, faults, webhook delivery),
`fakekit_pipeline` (the request pipeline with a hook per vendor step), `fakekit_control` (the
shared `/_fake/` routes), `fakekit_logs` (request and write log entries), `fakekit_auth`
(static keys, issued tokens), `fakekit_limits` (rate limits), `fakekit_pages` (pagination),
`fakekit_errors` (error envelopes) and `fakekit_main` (serving a fake standalone). A vendor's
fake keeps only its own behaviour.

`FakeServer` is the base class: server lifecycle (`start`/`stop`/`async with`, HTTP or, with
`ssl_context`, HTTPS and mutual TLS), base and control URLs, `fail_next`/`delay_next`
fault-injection queues, and webhook delivery as background tasks with retries and backoff
(`wait_deliveries_idle`, `resend_last`). A fake subclass supplies only its vendor's behaviour:
the aiohttp application (`_build_app`), the webhook messages, and the per-attempt hooks of the
delivery loop (`_may_attempt`, `_attempt_request`, `_after_attempt`) where signing and give-up
rules differ, and where needed `_webhook_session` (the source address an attempt goes out from)
and `_retry_delay` (a schedule of the vendor's own).

The small helpers (`json_response`, `read_json_object`, `retry_after_headers`,
`retry_delay`, `post_webhook`) hold nothing vendor-specific either.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Mapping
from types import TracebackType
from typing import Any, ClassVar, Generic, Protocol, Self, TypeVar

import aiohttp
import msgspec
from aiohttp import web

MessageT = TypeVar("MessageT")

Fault = tuple[int, float | None]
"""An injected failure: (status, Retry-After seconds or None)."""


class Attempt(msgspec.Struct, frozen=True, kw_only=True):
    """One webhook delivery attempt as sent: `status` when the receiver answered, else `error`."""

    number: int
    body: bytes
    headers: dict[str, str]
    status: int | None
    error: str | None
    redelivery: bool


class DeliveryRecord(msgspec.Struct, kw_only=True):
    """One webhook delivery attempt: `status` when the receiver answered, else `error`.

    Each fake extends it with its vendor's own fields and its idea of success (`ok`).
    """

    subscription_id: int
    url: str
    event: str
    attempt: int
    body: bytes
    headers: dict[str, str]
    status: int | None
    error: str | None
    redelivery: bool


class RetryPolicy(Protocol):
    """The webhook retry settings a fake's behaviour struct carries."""

    @property
    def webhook_retry_initial_s(self) -> float: ...

    @property
    def webhook_retry_factor(self) -> float: ...

    @property
    def webhook_retry_max_s(self) -> float: ...

    @property
    def webhook_timeout_s(self) -> float: ...


def json_response(
    data: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    """A minified JSON response (msgspec encodes without whitespace)."""
    return web.Response(
        body=msgspec.json.encode(data),
        status=status,
        content_type="application/json",
        headers=headers,
    )


async def read_json_object(request: web.Request) -> dict[str, Any]:
    """The body of a control-API request as a JSON object; 400 when it is not one."""
    try:
        body = msgspec.json.decode(await request.read())
    except msgspec.DecodeError:
        raise web.HTTPBadRequest(text="body must be JSON") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="body must be a JSON object")
    return body


def retry_after_headers(retry_after: float | None) -> dict[str, str]:
    """`{"Retry-After": "%g"}` for an injected failure, or no headers."""
    return {} if retry_after is None else {"Retry-After": f"{retry_after:g}"}


def retry_delay(policy: RetryPolicy, attempt: int) -> float:
    """Seconds to wait after failed `attempt`: initial * factor**(attempt-1), capped."""
    delay = policy.webhook_retry_initial_s * policy.webhook_retry_factor ** (attempt - 1)
    return min(delay, policy.webhook_retry_max_s)


async def post_webhook(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    timeout_s: float,
    allow_redirects: bool,
) -> tuple[int | None, str | None]:
    """POST one webhook attempt; (status, None) when the receiver answered, else (None, error)."""
    try:
        async with session.post(
            url,
            data=body,
            headers=headers,
            allow_redirects=allow_redirects,
            timeout=aiohttp.ClientTimeout(total=timeout_s),
        ) as response:
            status = response.status
            await response.read()
    except (aiohttp.ClientError, TimeoutError) as exc:
        return None, f"{type(exc).__name__}: {exc}"
    return status, None


class FakeServer(Generic[MessageT]):
    """Lifecycle, fault injection and webhook delivery of a fake vendor server.

    Subclasses set `_server_name` (for error messages) and `_base_path` (what `start` appends
    to `http://host:port` for `base_url`), and implement `_build_app` and the delivery hooks.
    `webhooks` lists every message first sent, for `resend_last`.
    """

    _server_name: ClassVar[str] = "FakeServer"
    _base_path: ClassVar[str] = ""
    # Whether a webhook attempt follows redirects (aiohttp's default) or takes a 3xx as is.
    _webhook_allow_redirects: ClassVar[bool] = True

    def __init__(self) -> None:
        self.base_url: str | None = None
        self._root_url: str | None = None
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._fail_queue: deque[Fault] = deque()
        self._delay_queue: deque[float] = deque()
        self.webhooks: list[MessageT] = []
        # Set before `start` to serve HTTPS: the URLs are then `https://…`, and a context with
        # `verify_mode = ssl.CERT_REQUIRED` makes it a mutual-TLS server. An attribute rather
        # than a `start` parameter, so that subclasses' `start` overrides keep their signature.
        self.ssl_context: ssl.SSLContext | None = None

    # ------------------------------------------------------------------ lifecycle

    def _build_app(self) -> web.Application:
        """The aiohttp application with the vendor's API and control routes."""
        raise NotImplementedError

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on host:port (0 = any free port) and return the base URL.

        With `ssl_context` set the fake serves HTTPS (see its attribute).
        """
        if self._runner is not None:
            raise RuntimeError(f"{self._server_name} is already started")
        app = self._build_app()
        # A short shutdown timeout: a test stopping the fake should not wait for slow
        # (delay_next) handlers for aiohttp's default 60 s.
        runner = web.AppRunner(app, shutdown_timeout=1.0, access_log=None)
        await runner.setup()
        ssl_context = self.ssl_context
        site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
        await site.start()
        bound_port = runner.addresses[0][1]
        self._runner = runner
        self._session = aiohttp.ClientSession()
        scheme = "http" if ssl_context is None else "https"
        self._root_url = f"{scheme}://{host}:{bound_port}"
        self.base_url = self._root_url + self._base_path
        return self.base_url

    async def stop(self) -> None:
        """Cancel pending webhook deliveries, close the client session, stop listening."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        if self._runner is None:
            await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def control_url(self) -> str:
        """Base URL of the unauthenticated control API (`http://host:port/_fake`, or `https`)."""
        if self._root_url is None:
            raise RuntimeError(f"{self._server_name} is not started")
        return self._root_url + "/_fake"

    def _require_base(self) -> str:
        if self.base_url is None:
            raise RuntimeError(f"{self._server_name} is not started")
        return self.base_url

    # ------------------------------------------------------------------ fault injection

    def fail_next(self, n: int, status: int, retry_after: float | None = None) -> None:
        """Answer the next `n` API requests with `status` before any other handling.

        `retry_after` is sent as `Retry-After` as given (`%g`, so fractions are possible for
        fast tests; real HTTP uses whole seconds). What else such an answer skips is the
        vendor fake's to say (see its class docstring).
        """
        self._fail_queue.extend([(status, retry_after)] * n)

    def delay_next(self, n: int, seconds: float) -> None:
        """Hold the answers of the next `n` API requests for `seconds`.

        The request counts as arrived and whole before the delay, so a client that hangs up
        meanwhile still causes the write: the "did my request go through?" case.
        """
        self._delay_queue.extend([seconds] * n)

    def _take_faults(self) -> tuple[float, Fault | None]:
        """(delay, injected failure) for a request arriving now, in arrival order."""
        delay = self._delay_queue.popleft() if self._delay_queue else 0.0
        injected = self._fail_queue.popleft() if self._fail_queue else None
        return delay, injected

    # ------------------------------------------------------------------ webhook delivery

    def resend_last(self) -> None:
        """Send the most recently fired webhook again as first sent. IndexError if none."""
        self._spawn(self.webhooks[-1], redelivery=True)

    # A `timeout` argument rather than asyncio.timeout() around the call: it is the interface
    # tests were promised, and one number reads better at every call site.
    async def wait_deliveries_idle(self, timeout: float) -> None:  # noqa: ASYNC109
        """Wait until no webhook delivery is pending; TimeoutError after `timeout` seconds."""
        async with asyncio.timeout(timeout):
            while self._tasks:
                await asyncio.wait(set(self._tasks))

    def _spawn(self, message: MessageT, *, redelivery: bool) -> None:
        task = asyncio.get_running_loop().create_task(self._deliver(message, redelivery))
        # Keep a strong reference: the loop holds tasks only weakly.
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _retry_policy(self) -> RetryPolicy:
        raise NotImplementedError

    def _may_attempt(self, message: MessageT, attempt: int) -> bool:
        """Whether attempt number `attempt` (from 1) of `message` may go out."""
        raise NotImplementedError

    def _attempt_request(
        self, message: MessageT, attempt: int
    ) -> tuple[str, bytes, dict[str, str]]:
        """(url, body, headers) of attempt number `attempt` of `message`."""
        raise NotImplementedError

    def _after_attempt(self, message: MessageT, attempt: Attempt) -> bool:
        """Log one attempt; return True when delivery of `message` is over (no retry)."""
        raise NotImplementedError

    def _webhook_session(self, message: MessageT, attempt: int) -> aiohttp.ClientSession:
        """The client session attempt number `attempt` of `message` goes out on.

        The fake's one session by default; a vendor that delivers from given source addresses
        (CLOUDWORK|PRO's two IPs) answers a session bound to one of them.
        """
        session = self._session
        if session is None:
            raise RuntimeError(f"{self._server_name} is not started")
        return session

    def _retry_delay(self, message: MessageT, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt` of `message`.

        `retry_delay` on the behaviour's policy by default (exponential, capped); a vendor
        with its own schedule (CLOUDWORK|PRO: n x 10 minutes) overrides it.
        """
        return retry_delay(self._retry_policy(), attempt)

    async def _deliver(self, message: MessageT, redelivery: bool) -> None:
        policy = self._retry_policy()
        attempt = 0
        while self._may_attempt(message, attempt + 1):
            attempt += 1
            url, body, headers = self._attempt_request(message, attempt)
            session = self._webhook_session(message, attempt)
            status, error = await post_webhook(
                session,
                url,
                body,
                headers,
                timeout_s=policy.webhook_timeout_s,
                allow_redirects=self._webhook_allow_redirects,
            )
            outcome = Attempt(
                number=attempt,
                body=body,
                headers=headers,
                status=status,
                error=error,
                redelivery=redelivery,
            )
            if self._after_attempt(message, outcome):
                return
            await asyncio.sleep(self._retry_delay(message, attempt))
