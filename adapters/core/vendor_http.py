"""The HTTP client every vendor call goes through: auth, budget, timeouts, no secret in logs."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

import aiohttp
import msgspec

from adapters.core.ratelimit import Limiter
from adapters.core.retry import retry_after_seconds


class VendorResponse(msgspec.Struct, frozen=True):
    """A vendor's answer: status, lower-cased headers and the raw body."""

    status: int
    headers: dict[str, str]
    body: bytes

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
    """No answer from the vendor (connection refused, reset, timeout): retriable."""


class VendorClient:
    """Calls one vendor instance's API. One per instance and process, shared by all roles."""

    def __init__(
        self,
        *,
        base_url: str,
        auth_headers: Mapping[str, str],
        limiter: Limiter,
        timeout_s: float,
        user_agent: str,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._auth = dict(auth_headers)
        self.limiter = limiter
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._user_agent = user_agent
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout,
                headers={"User-Agent": self._user_agent, "Accept": "application/json"},
            )
        return self._session

    async def close(self) -> None:
        """Close the connection pool."""
        if self._session is not None:
            await self._session.close()

    def url(self, path_or_url: str) -> str:
        """An absolute URL for a path below the base URL (absolute URLs pass through)."""
        if path_or_url.startswith(("http://", "https://")):
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
    ) -> VendorResponse:
        """One request within the instance's budget; raises `TransportError` on no answer."""
        await self.limiter.acquire()
        all_headers = {**self._auth, **(headers or {})}
        body = None
        if json is not None:
            body = msgspec.json.encode(json)
            all_headers["Content-Type"] = "application/json"
        try:
            async with self._http().request(
                method, self.url(path_or_url), params=params, data=body, headers=all_headers
            ) as resp:
                raw = await resp.read()
                answer = VendorResponse(
                    resp.status, {k.lower(): v for k, v in resp.headers.items()}, raw
                )
        except (TimeoutError, aiohttp.ClientError) as exc:
            # The URL has no credentials in it; the exception text names host and reason only.
            raise TransportError(f"{method} {path_or_url}: {type(exc).__name__}: {exc}") from None
        self._adapt(answer)
        return answer

    def _adapt(self, answer: VendorResponse) -> None:
        if answer.status == 429:
            wait = retry_after_seconds(answer.headers)
            # No Retry-After: sit out a whole window of the documented budget.
            self.limiter.pause(wait if wait is not None else getattr(self.limiter, "window", 1.0))
        remaining = answer.headers.get("x-ratelimit-remaining")
        reset = answer.headers.get("x-ratelimit-reset")
        if remaining is not None and reset is not None:
            with contextlib.suppress(ValueError):
                self.limiter.observe_remaining(int(remaining), float(reset))
