"""How a vendor call is authenticated: static headers, a token exchange, a client certificate.

A vendor declares one `Auth` per instance (`VendorSpec.auth`). `VendorClient` asks it for
headers before every request and tells it when the vendor answered 401: a provider that can
get new credentials (a token exchange) then does, and the client repeats the request once.
That repeat is safe even for a create, since a 401 proves the vendor did not act.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import msgspec

from adapters.core.secret import Secret


class AuthFailed(Exception):
    """Credentials could not be obtained. The message is safe to log (it holds no secret).

    `permanent` is True when retrying cannot help (the vendor refused the credentials).
    """

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


class TokenAnswer(Protocol):
    """The part of a vendor answer a token reader looks at."""

    @property
    def status(self) -> int:
        """The HTTP status."""

    @property
    def headers(self) -> dict[str, str]:
        """Lower-cased response headers."""

    @property
    def body(self) -> bytes:
        """The raw body."""


# Sends one request without credentials (the token request itself), within the budget.
RawSend = Callable[[str, str, Any, Mapping[str, str]], Awaitable[TokenAnswer]]


class Auth:
    """Static request headers (e.g. `Authorization: Token token=…`), optionally with TLS.

    The base class never refreshes: a 401 is final.
    """

    def __init__(
        self, headers: Mapping[str, str] | None = None, *, tls: ClientTls | None = None
    ) -> None:
        self._headers = dict(headers or {})
        self.tls = tls

    @property
    def static_headers(self) -> dict[str, str]:
        """The headers sent with every request, whatever the token (a copy)."""
        return dict(self._headers)

    async def headers(self, send: RawSend) -> dict[str, str]:
        """The headers to send with the next request."""
        return dict(self._headers)

    async def expired(self, used: Mapping[str, str]) -> bool:
        """The vendor answered 401 to `used`: True if new credentials are worth one more try."""
        return False


@dataclass(frozen=True)
class ClientTls:
    """Mutual TLS towards the vendor: a client certificate and key, and the CA to trust."""

    cert_file: str | None = None
    key_file: str | None = None
    key_password: Secret | None = None
    ca_file: str | None = None

    def context(self) -> ssl.SSLContext:
        """An SSL context for the vendor session; errors name the file, never a secret."""
        context = ssl.create_default_context(cafile=self.ca_file)
        if self.cert_file:
            password = self.key_password.reveal() if self.key_password else None
            try:
                context.load_cert_chain(
                    self.cert_file,
                    self.key_file,
                    # A callable keeps OpenSSL from prompting on a terminal for a missing one.
                    password=lambda: password or "",
                )
            except (OSError, ssl.SSLError) as exc:
                reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or ""
                raise AuthFailed(
                    f"client certificate {self.cert_file} / key {self.key_file} cannot be "
                    f"used ({type(exc).__name__}{': ' + str(reason) if reason else ''}); check "
                    "the files and the key password",
                    permanent=True,
                ) from None
        return context


class Grant(msgspec.Struct, frozen=True):
    """What a token answer says: the token and, if it says so, for how many seconds."""

    value: str
    ttl_s: float | None = None


class Token(msgspec.Struct, frozen=True):
    """A credential from a token exchange, when it stops being valid and when it is renewed
    (monotonic clock)."""

    value: str
    expires_at: float | None = None
    renew_at: float | None = None


@dataclass(frozen=True)
class TokenRequest:
    """How to ask the vendor for a token (e.g. CMO: `POST /api/token` with login and password)."""

    method: str
    path: str
    # Built when the request is made, so secrets are revealed only for the send.
    body: Callable[[], Any] = lambda: None
    headers: Mapping[str, str] | None = None


class TokenAuth(Auth):
    """A token exchange: fetched when first needed, refreshed before it expires and on a 401.

    Concurrent callers share one fetch. The token's lifetime is read from the answer by
    `read` (e.g. a JWT's `exp`), else `default_ttl_s`; it is renewed `refresh_before_s` early,
    or halfway through a shorter life. A lifetime that is over already by our clock (a skewed
    clock, a stale `exp`) counts as unknown: the token is used until the vendor says 401.
    """

    def __init__(
        self,
        *,
        request: TokenRequest,
        read: Callable[[TokenAnswer], Grant],
        header: Callable[[str], Mapping[str, str]],
        default_ttl_s: float | None,
        refresh_before_s: float = 60.0,
        extra_headers: Mapping[str, str] | None = None,
        tls: ClientTls | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(extra_headers, tls=tls)
        self._request = request
        self._read = read
        self._header = header
        self._default_ttl_s = default_ttl_s
        self._refresh_before_s = refresh_before_s
        self._clock = clock
        self._token: Token | None = None
        self._lock = asyncio.Lock()
        self.fetches = 0

    def _fresh(self, token: Token | None) -> bool:
        if token is None:
            return False
        return token.renew_at is None or self._clock() < token.renew_at

    async def headers(self, send: RawSend) -> dict[str, str]:
        """Static headers plus the current token, fetching a new one if it is (nearly) due."""
        token = self._token
        if not self._fresh(token):
            async with self._lock:
                # Fetched by another caller while this one waited: that one is the renewal.
                if self._token is token or not self._fresh(self._token):
                    self._token = await self._fetch(send)
                token = self._token
        assert token is not None
        return {**self._headers, **self._header(token.value)}

    async def expired(self, used: Mapping[str, str]) -> bool:
        """Drop the token the vendor refused (unless a newer one is already there)."""
        async with self._lock:
            token = self._token
            if token is not None and all(
                used.get(k) == v for k, v in self._header(token.value).items()
            ):
                self._token = None
        return True

    async def _fetch(self, send: RawSend) -> Token:
        self.fetches += 1
        request = self._request
        try:
            answer = await send(request.method, request.path, request.body(), request.headers or {})
        except AuthFailed:
            raise
        except Exception as exc:
            raise AuthFailed(
                f"token request {request.method} {request.path} got no answer "
                f"({type(exc).__name__})",
                permanent=False,
            ) from None
        if answer.status in (400, 401, 403):
            raise AuthFailed(
                f"token request {request.method} {request.path} was refused with "
                f"{answer.status}: check the instance's credentials",
                permanent=True,
            )
        if not 200 <= answer.status < 300:
            raise AuthFailed(
                f"token request {request.method} {request.path} answered {answer.status}",
                permanent=answer.status < 500 and answer.status != 429,
            )
        try:
            grant = self._read(answer)
            if not grant.value:
                raise ValueError("empty token")
        except Exception as exc:
            raise AuthFailed(
                f"token request {request.method} {request.path} answered 200 without a "
                f"readable token ({type(exc).__name__})",
                permanent=True,
            ) from None
        ttl = grant.ttl_s
        if ttl is None or ttl <= 0:
            ttl = self._default_ttl_s
        if ttl is None:
            return Token(grant.value)
        now = self._clock()
        early = min(self._refresh_before_s, ttl / 2)
        return Token(grant.value, now + ttl, now + ttl - early)


def jwt_seconds_left(token: str, now_epoch: float | None = None) -> float | None:
    """Seconds until a JWT's `exp` claim (read, not verified: only the vendor can verify it)."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = msgspec.json.decode(base64.urlsafe_b64decode(payload))
    except (binascii.Error, msgspec.DecodeError, ValueError):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    if isinstance(exp, str):
        try:
            exp = float(exp)  # some issuers write it as a numeric string
        except ValueError:
            return None
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        return None
    return float(exp) - (time.time() if now_epoch is None else now_epoch)


def jwt_in_json_string(answer: TokenAnswer) -> Grant:
    """A body that is the token as a JSON string (CMO's `/api/token`); lifetime from `exp`.
    A body that is the bare token (not JSON-quoted) is taken too."""
    try:
        value = msgspec.json.decode(answer.body)
    except msgspec.DecodeError:
        text = answer.body.decode("utf-8", "replace").strip().lstrip("\ufeff")
        value = text.strip('"') if text and not text.startswith(("{", "[")) else None
    if not isinstance(value, str) or not value.strip():
        raise ValueError("the token answer is not a JSON string")
    value = value.strip()
    return Grant(value, jwt_seconds_left(value))


def bearer(token: str) -> dict[str, str]:
    """`Authorization: Bearer <token>`."""
    return {"Authorization": f"Bearer {token}"}
