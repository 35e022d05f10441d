"""Reading CLOUDWORK|PRO's `/auth/token` answer, whose shape the document does not give."""

from __future__ import annotations

import base64
import time
from typing import Any

import msgspec
import pytest

from adapters.cloudworkpro.auth import TokenRefused, read_token
from adapters.core.vendor_http import VendorResponse


def jwt(exp: float) -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(msgspec.json.encode(value)).rstrip(b"=").decode()

    return f"{part({'alg': 'HS256'})}.{part({'exp': exp})}.sig"


def answer(body: Any, raw: bytes | None = None) -> VendorResponse:
    return VendorResponse(200, {}, raw if raw is not None else msgspec.json.encode(body))


@pytest.mark.parametrize(
    "body",
    [
        {"code": 200, "reason": "", "data": {"token": "tok-1", "expires_in": 300}, "success": True},
        {"code": 200, "data": {"access_token": "tok-1", "expires_in": 300}},
        {"code": 200, "data": {"accessToken": "tok-1", "expiresIn": 300}},
        {"token": "tok-1", "expires_in": 300},
        {"accessToken": "tok-1", "expiresIn": 300},
        {"code": 200, "data": "tok-1", "expires_in": 300},
    ],
)
def test_the_token_and_its_lifetime_wherever_the_answer_puts_them(body: Any) -> None:
    grant = read_token(answer(body))
    assert (grant.value, grant.ttl_s) == ("tok-1", 300.0)


def test_a_jwt_says_its_own_lifetime_and_a_bare_or_plain_token_is_taken() -> None:
    token = jwt(time.time() + 120)
    grant = read_token(answer({"data": {"token": token, "expires_in": 9999}}))
    assert grant.ttl_s is not None and 110 < grant.ttl_s <= 120
    assert read_token(answer(token)).value == token
    assert read_token(answer(None, raw=f"{token}\n".encode())).value == token


@pytest.mark.parametrize(
    "body",
    [
        {"code": 400, "error": {"code": "AUTH_0001", "message": "bad credentials"}, "data": {}},
        {"code": "401", "data": {}},
        {"code": 200, "data": "Token could not be issued"},  # a sentence is no token
        [1, 2],
    ],
)
def test_a_refusal_or_an_answer_without_a_token_is_no_token(body: Any) -> None:
    with pytest.raises(TokenRefused):
        read_token(answer(body))
