"""The fake kit's token issuer: what the CMO and CLOUDWORK|PRO fakes build on."""

from __future__ import annotations

import base64
import json

from adapters.core.auth import jwt_seconds_left
from adapters.fakekit_auth import FakeTokenIssuer


class Clock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_tokens_expire_and_carry_their_exp() -> None:
    clock = Clock()
    issuer = FakeTokenIssuer(lifetime_s=1200, clock=clock)
    token = issuer.issue("api-user")
    assert issuer.subject(token) == "api-user"
    assert issuer.subject_of_bearer(f"Bearer {token}") == "api-user"
    assert jwt_seconds_left(token, now_epoch=clock.t) == 1200
    clock.t += 1200
    assert issuer.subject(token) is None


def test_tokens_can_be_opaque_revoked_or_all_expired() -> None:
    issuer = FakeTokenIssuer(with_exp=False)
    a, b = issuer.issue("u"), issuer.issue("u")
    payload = a.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert "exp" not in claims
    issuer.revoke(a)
    assert issuer.subject(a) is None and issuer.subject(b) == "u"
    issuer.expire_all()
    assert issuer.subject(b) is None
    assert issuer.subject_of_bearer("Token token=x") is None
