"""CLOUDWORK|PRO's bearer token from `POST /auth/token`, renewed before expiry and on a 401.

The document names the endpoint and that the Public API credentials are exchanged there; the
request body and the answer's shape are not given (undocumented.py). The answer is read
leniently: the token as a JSON string, or at one of the usual places (`data.token`,
`data.access_token`, `token`, `access_token`); its lifetime from a JWT's `exp`, else an
`expires_in`, else the default. A 200 that carries `"code": 4xx` (the document's way of
answering most bad requests) is a refusal, not a token.
"""

from __future__ import annotations

from typing import Any

import msgspec

from adapters.cloudworkpro.undocumented import (
    EXPIRES_IN_AT,
    TOKEN_AT,
    TOKEN_DEFAULT_TTL_S,
    TOKEN_REFRESH_BEFORE_S,
    CloudworkProOptions,
)
from adapters.core.auth import (
    Grant,
    TokenAnswer,
    TokenAuth,
    TokenRequest,
    bearer,
    jwt_in_json_string,
    jwt_seconds_left,
)
from adapters.core.pagination import dig
from adapters.settings import InstanceConfig


class TokenRefused(ValueError):
    """The token answer says no (its text holds no secret)."""


def read_token(answer: TokenAnswer) -> Grant:
    """The token and its lifetime from `/auth/token`'s answer."""
    try:
        body: Any = msgspec.json.decode(answer.body)
    except msgspec.DecodeError:
        return jwt_in_json_string(answer)  # the token as plain text
    if isinstance(body, str):
        return Grant(body, jwt_seconds_left(body))
    if not isinstance(body, dict):
        raise TokenRefused("the token answer is neither a string nor an object")
    code = body.get("code")
    if isinstance(code, int | str) and str(code).isdigit() and int(code) >= 400:
        raise TokenRefused(f"the token request was refused (code {code})")
    for path in TOKEN_AT:
        token = dig(body, path)
        # (a sentence in `data` is no token)
        if isinstance(token, str) and token and " " not in token.strip():
            token = token.strip()
            break
    else:
        raise TokenRefused("the token answer holds no token")
    ttl = jwt_seconds_left(token)
    if ttl is None:
        for path in EXPIRES_IN_AT:
            value = dig(body, path)
            if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
                ttl = float(value)
                break
    return Grant(token, ttl)


def missing_credentials(inst: InstanceConfig) -> list[str]:
    """The credentials the token request needs that the instance does not have."""
    options = CloudworkProOptions.of(inst)
    return sorted(
        name
        for name in set(options.token_request_fields.values())
        if name not in inst.credentials or not inst.credentials[name].reveal()
    )


def auth(inst: InstanceConfig) -> TokenAuth:
    """The instance's token exchange."""
    options = CloudworkProOptions.of(inst)
    creds = inst.credentials
    fields = dict(options.token_request_fields)

    def body() -> dict[str, str]:
        # Revealed only when the request is made.
        return {field: creds[name].reveal() for field, name in fields.items() if name in creds}

    return TokenAuth(
        request=TokenRequest(
            method="POST",
            path=options.token_path,
            body=body,
            headers={"Content-Type": "application/json"},
        ),
        read=read_token,
        header=bearer,
        default_ttl_s=TOKEN_DEFAULT_TTL_S,
        refresh_before_s=TOKEN_REFRESH_BEFORE_S,
        # 422 is "the request's Content-Type header was not set correctly", said of every
        # request: a GET carries it too (a form upload replaces it with its own).
        extra_headers={"Content-Type": "application/json"},
    )
