"""The HTTP client every vendor call goes through: auth, budget, timeouts, no secret in logs."""

from __future__ import annotations

import contextlib
import email.utils
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import msgspec

from adapters.core.auth import Auth, AuthFailed
from adapters.core.multipart import Multipart
from adapters.core.ratelimit import Limiter
from adapters.core.retry import retry_after_seconds


class VendorResponse(msgspec.Struct, frozen=True):
    """A vendor's answer: status, lower-cased headers and the raw body.

    `links` are the RFC 8288 `Link` header's targets by lower-cased relation type (each of a
    multi-valued `rel`), as aiohttp parses them and resolved against the request URL.
    """

    status: int
    headers: dict[str, str]
    body: bytes
    links: dict[str, str] = msgspec.field(default_factory=dict)

    def json(self) -> Any:
        """The body decoded as JSON (`None` for an empty body)."""
        return msgspec.json.decode(self.body) if self.body else None

    def json_or_text(self) -> Any:
        """The body as JSON when it is, else as text: what the vendor said, as it said it."""
        try:
            return self.json()
        except msgspec.DecodeError:
            return self.body.decode("utf-8", "replace")[:2000]


class TransportError(Exception):
    """No answer from the vendor (connection refused, reset, timeout): retriable.

    `may_have_acted` is False only when the request provably never reached the vendor
    (no connection could be made); once it was sent, a lost answer says nothing.
    """

    def __init__(self, message: str, *, may_have_acted: bool) -> None:
        super().__init__(message)
        self.may_have_acted = may_have_acted


class Unrepeatable(TransportError):
    """A call's attempt failed in a way that is retried, but sending it again would put it
    behind a later command of its subject that already ran (batching.py): not retried.

    `response` is its operation's answer (None when the batch's answer was lost)."""

    def __init__(
        self, message: str, *, may_have_acted: bool, response: VendorResponse | None
    ) -> None:
        super().__init__(message, may_have_acted=may_have_acted)
        self.response = response


class CredentialsUnavailable(TransportError):
    """No credentials could be had (the token request failed): the call never left.

    `permanent`: the vendor refused the credentials, so retrying cannot help.
    """

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message, may_have_acted=False)
        self.permanent = permanent


class ForeignURL(Exception):
    """A URL from a vendor answer points elsewhere than the instance's base URL."""


@dataclass(frozen=True)
class RateLimitHeaders:
    """A vendor's rate-limit headers (names lower-case); `reset` in seconds or epoch seconds;
    `limit`, where the vendor sends one, its requests per window."""

    remaining: str
    reset: str
    reset_is_epoch: bool = False
    limit: str | None = None


BeforeSend = Callable[[], Awaitable[None]]


class VendorClient:
    """Calls one vendor instance's API. One per instance and process, shared by all roles."""

    def __init__(
        self,
        *,
        base_url: str,
        limiter: Limiter,
        timeout_s: float,
        user_agent: str,
        auth: Auth | None = None,
        auth_headers: Mapping[str, str] | None = None,
        rate_limit_headers: RateLimitHeaders | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._origin = _origin(self.base_url)
        self.auth = auth if auth is not None else Auth(auth_headers)
        self.limiter = limiter
        # A separate connect timeout tells "never reached the vendor" from "no answer".
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=min(10.0, timeout_s))
        self._user_agent = user_agent
        self._rl_headers = rate_limit_headers
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            tls = self.auth.tls
            connector = aiohttp.TCPConnector(ssl=tls.context()) if tls is not None else None
            self._session = aiohttp.ClientSession(
                timeout=self._timeout,
                headers={"User-Agent": self._user_agent, "Accept": "application/json"},
                connector=connector,
            )
        return self._session

    async def close(self) -> None:
        """Close the connection pool."""
        if self._session is not None:
            await self._session.close()

    def url(self, path_or_url: str) -> str:
        """An absolute URL below the base URL.

        Absolute URLs (a `Link: rel="next"`) must have the base URL's scheme, host and port:
        the credentials go with every request and must not follow a link elsewhere.
        """
        if path_or_url.startswith(("http://", "https://")):
            if _origin(path_or_url) != self._origin:
                raise ForeignURL(f"refusing to send credentials to {_origin(path_or_url)}")
            return path_or_url
        return f"{self.base_url}/{path_or_url.lstrip('/')}"

    async def request(
        self,
        method: str,
        path_or_url: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        before_send: BeforeSend | None = None,
        in_slot: bool = False,
    ) -> VendorResponse:
        """One request within the instance's budget; raises `TransportError` on no answer.

        `in_slot`: the caller holds a slot of the budget already (the batcher), which the
        first attempt uses; a repeat after a renewed token takes a slot of its own.

        `before_send` runs once the budget allows the request, right before it goes out
        (the command worker commits its in-flight mark there). A 401 to credentials that the
        auth provider can renew (an expired token) is repeated once with the new ones: the
        401 proves the vendor did not act. `AuthFailed` (a `TransportError` that never
        reached the vendor) is raised when no credentials can be had.
        """
        url = self.url(path_or_url)
        renewed = False
        while True:
            try:
                # The session first: a client certificate that cannot be loaded (a wrong key
                # password) stops the call before anything is marked as sent.
                self._http()
                credentials = await self.auth.headers(self._send_unauthenticated)
            except AuthFailed as exc:
                raise CredentialsUnavailable(str(exc), permanent=exc.permanent) from None
            # The slot is held from here until a window after the answer: the in-flight
            # mark's commit and the network delay the request's arrival, not its count.
            held = in_slot and not renewed
            async with contextlib.nullcontext() if held else self.limiter.slot():
                if before_send is not None and not renewed:
                    await before_send()
                answer = await self._send(
                    method, url, path_or_url, params, json, {**credentials, **(headers or {})}
                )
            if answer.status == 401 and not renewed and await self.auth.expired(credentials):
                renewed = True
                continue
            return answer

    async def _send_unauthenticated(
        self, method: str, path: str, json: Any, headers: Mapping[str, str]
    ) -> VendorResponse:
        # The token request: within the budget like any other, without credentials headers.
        async with self.limiter.slot():
            return await self._send(method, self.url(path), path, None, json, headers)

    async def _send(
        self,
        method: str,
        url: str,
        shown: str,
        params: Mapping[str, str] | None,
        json: Any,
        headers: Mapping[str, str],
    ) -> VendorResponse:
        all_headers = dict(headers)
        body: bytes | aiohttp.MultipartWriter | None = None
        if isinstance(json, Multipart):
            body = json.form()  # aiohttp sets multipart/form-data with its boundary
            for name in [k for k in all_headers if k.lower() == "content-type"]:
                del all_headers[name]
        elif json is not None:
            body = msgspec.json.encode(json)
            all_headers["Content-Type"] = "application/json"
        try:
            async with self._http().request(
                method, url, params=params, data=body, headers=all_headers
            ) as resp:
                raw = await resp.read()
                answer = VendorResponse(
                    resp.status,
                    {k.lower(): v for k, v in resp.headers.items()},
                    raw,
                    {
                        rel.lower(): str(link["url"])
                        for rels, link in reversed(list(resp.links.items()))
                        for rel in str(rels).split()
                    },
                )
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            raise TransportError(
                f"{method} {shown}: cannot connect ({type(exc).__name__})",
                may_have_acted=False,
            ) from None
        except (TimeoutError, aiohttp.ClientError) as exc:
            # The URL holds no credentials; the exception text names host and reason only.
            raise TransportError(
                f"{method} {shown}: {type(exc).__name__}: {exc}", may_have_acted=True
            ) from None
        self._adapt(answer)
        return answer

    def _adapt(self, answer: VendorResponse) -> None:
        if answer.status == 429:
            wait = retry_after_seconds(answer.headers)
            # No Retry-After: sit out a whole window of the budget.
            self.limiter.pause(wait if wait is not None else getattr(self.limiter, "window", 1.0))
        names = self._rl_headers
        if names is None:
            return
        if names.limit is not None and (limit := answer.headers.get(names.limit)) is not None:
            with contextlib.suppress(ValueError, TypeError):
                self.limiter.observe_limit(int(limit))
        remaining = answer.headers.get(names.remaining)
        reset = answer.headers.get(names.reset)
        if remaining is not None and reset is not None:
            with contextlib.suppress(ValueError, TypeError):
                if names.reset_is_epoch:
                    # Against the vendor's own clock where it sends one: ours may be off.
                    now = _vendor_now(answer.headers.get("date")) or time.time()
                    reset_in = float(reset) - now
                else:
                    reset_in = float(reset)
                self.limiter.observe_remaining(int(remaining), reset_in)


def _vendor_now(date: str | None) -> float | None:
    if not date:
        return None
    try:
        return email.utils.parsedate_to_datetime(date).timestamp()
    except (TypeError, ValueError, IndexError):
        return None


def _origin(url: str) -> str:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.scheme}://{(parts.hostname or '').lower()}:{port}"
