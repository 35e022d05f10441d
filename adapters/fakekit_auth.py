"""Fake vendors' authentication: static API keys in a header, and issued, expiring tokens.

- `KeyHeader` and `StaticKeys`: a static key sent in one header after a fixed prefix (MOCO's
  `Authorization: Token token=KEY`, Mobility Work's `Api-Key: KEY`, Click Maint's
  `Authorization: Bearer KEY`), and the keys a fake accepts with whom each belongs to.
- `FakeTokenIssuer`: JWTs (or opaque tokens) with an expiry, revocable, as CMO and
  CLOUDWORK|PRO issue. A fake declares how long its tokens live (CMO's document: 20 minutes
  by default) and uses `issue` in its token endpoint and `subject` on every API call. Tests
  shorten lifetimes, expire or revoke tokens to see a client refresh before expiry and after
  a 401; `TokenHandles` gives a fake those test handles.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

import msgspec

OwnerT = TypeVar("OwnerT")


@dataclass(frozen=True)
class KeyHeader:
    """Where a vendor's static API key travels: header `name`, after `prefix`."""

    name: str
    prefix: str = ""
    # Whether white space around the key is dropped (Click Maint's fake) or is part of the
    # key as sent (MOCO's: `Token token= KEY` is a wrong key).
    strip: bool = False

    def read(self, headers: Mapping[str, str]) -> str | None:
        """The key a request sends, or None without the header or its prefix."""
        value = headers.get(self.name)
        if value is None or not value.startswith(self.prefix):
            return None
        key = value.removeprefix(self.prefix)
        return key.strip() if self.strip else key


class StaticKeys(Generic[OwnerT]):
    """The static API keys a fake accepts in `header`, each with its owner (a user id, …)."""

    def __init__(self, header: KeyHeader, keys: Mapping[str, OwnerT] | None = None) -> None:
        self.header = header
        self._owners: dict[str, OwnerT] = dict(keys or {})

    def add(self, key: str, owner: OwnerT) -> None:
        """Accept `key` too, as `owner`'s."""
        self._owners[key] = owner

    def check(self, headers: Mapping[str, str]) -> tuple[str, OwnerT] | None:
        """(key, owner) for a request that sends a known key, else None (a 401)."""
        key = self.header.read(headers)
        if key is None or key not in self._owners:
            return None
        return key, self._owners[key]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class FakeTokenIssuer:
    """Issues HS256 JWTs (`exp` claim included unless `with_exp` is off), or with `opaque` random
    strings, and checks them."""

    def __init__(
        self,
        *,
        lifetime_s: float = 1200.0,
        with_exp: bool = True,
        opaque: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.lifetime_s = lifetime_s
        # Some vendors' tokens are opaque to the client: it must then assume a lifetime.
        self.with_exp = with_exp
        # Not a JWT at all: a random string the client cannot read anything from. The
        # issuer still knows its expiry.
        self.opaque = opaque
        self._clock = clock
        self._key = secrets.token_bytes(32)
        self._expiry: dict[str, float] = {}
        self._subjects: dict[str, str] = {}
        self.issued: list[str] = []

    def issue(self, subject: str) -> str:
        """A new token for `subject`, valid for `lifetime_s` from now."""
        expires = self._clock() + self.lifetime_s
        if self.opaque:
            token = secrets.token_urlsafe(32)
            self._expiry[token] = expires
            self._subjects[token] = subject
            self.issued.append(token)
            return token
        claims: dict[str, object] = {"sub": subject, "n": len(self.issued)}
        if self.with_exp:
            claims["exp"] = round(expires, 3)
        head = _b64(msgspec.json.encode({"typ": "JWT", "alg": "HS256"}))
        body = _b64(msgspec.json.encode(claims))
        mac = hmac.new(self._key, f"{head}.{body}".encode(), hashlib.sha256).digest()
        token = f"{head}.{body}.{_b64(mac)}"
        self._expiry[token] = expires
        self._subjects[token] = subject
        self.issued.append(token)
        return token

    def subject(self, token: str) -> str | None:
        """Who a token was issued to, or None when it is unknown, expired or revoked."""
        expires = self._expiry.get(token)
        if expires is None or self._clock() >= expires:
            return None
        return self._subjects[token]

    def subject_of_bearer(self, authorization: str | None) -> str | None:
        """`subject` for an `Authorization: Bearer <token>` header value."""
        if not authorization or not authorization.startswith("Bearer "):
            return None
        return self.subject(authorization.removeprefix("Bearer ").strip())

    def revoke(self, token: str) -> None:
        """The vendor forgets one token (a client must get a new one after its 401)."""
        self._expiry.pop(token, None)

    def expire_all(self) -> None:
        """Every token issued so far stops working now."""
        self._expiry.clear()


class TokenHandles:
    """The test handles of a fake whose token endpoint issues from `_issuer`."""

    _issuer: FakeTokenIssuer

    @property
    def tokens_issued(self) -> int:
        """How many tokens the fake's token endpoint handed out."""
        return len(self._issuer.issued)

    def expire_tokens(self) -> None:
        """Every token issued so far stops working now (the API answers 401)."""
        self._issuer.expire_all()

    def revoke_token(self, token: str) -> None:
        """One token stops working now (the API answers 401)."""
        self._issuer.revoke(token)
