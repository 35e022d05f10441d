"""The fake kit's authentication: static keys (MOCO, Mobility Work, Click Maint) and the token
issuer the CMO and CLOUDWORK|PRO fakes build on."""

from __future__ import annotations

import base64
import json

from adapters.core.auth import jwt_seconds_left
from adapters.fakekit_auth import FakeTokenIssuer, KeyHeader, StaticKeys, TokenHandles


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


def test_a_key_header_reads_the_key_after_its_prefix() -> None:
    moco = KeyHeader("Authorization", "Token token=")
    assert moco.read({"Authorization": "Token token=K"}) == "K"
    assert moco.read({"Authorization": "Token token= K"}) == " K"  # the key as sent
    assert moco.read({"Authorization": "Bearer K"}) is None
    assert moco.read({}) is None
    bearer = KeyHeader("Authorization", "Bearer ", strip=True)
    assert bearer.read({"Authorization": "Bearer  K "}) == "K"
    assert KeyHeader("Api-Key").read({"Api-Key": "K"}) == "K"


def test_static_keys_know_whose_each_key_is() -> None:
    keys = StaticKeys(KeyHeader("Authorization", "Token token="), {"a": 1})
    keys.add("b", 2)
    assert keys.check({"Authorization": "Token token=a"}) == ("a", 1)
    assert keys.check({"Authorization": "Token token=b"}) == ("b", 2)
    assert keys.check({"Authorization": "Token token=c"}) is None
    assert keys.check({"Authorization": "a"}) is None


def test_token_handles_count_expire_and_revoke_the_issuers_tokens() -> None:
    class Fake(TokenHandles):
        def __init__(self) -> None:
            self._issuer = FakeTokenIssuer()

    fake = Fake()
    a, b = fake._issuer.issue("u"), fake._issuer.issue("u")
    assert fake.tokens_issued == 2
    fake.revoke_token(a)
    assert fake._issuer.subject(a) is None and fake._issuer.subject(b) == "u"
    fake.expire_tokens()
    assert fake._issuer.subject(b) is None
