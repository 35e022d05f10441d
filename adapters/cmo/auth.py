"""CMO's three kinds of authorization, one chosen per instance (`options.auth`).

- JWT: `POST [cmo-base-url]/api/token` with `{"login", "password"}` (`credentials.login`,
  `credentials.password`), answered with the token as a JSON string; sent as
  `Authorization: Bearer`. Renewed before its `exp` (else after the document's default 20
  minutes, `options.jwt_default_ttl_s`) and once after a 401, the call then repeated
  (adapters/core/auth.py: concurrent calls share one renewal).
- Static user token: `Authorization: Bearer <credentials.token>` (up to 200 characters).
- Mutual TLS: the instance's `tls` client certificate is the credential; no header.
"""

from __future__ import annotations

from adapters.cmo.undocumented import JWT_REFRESH_BEFORE_S, STATIC_TOKEN_MAX_CHARS, CmoOptions
from adapters.core.auth import Auth, TokenAuth, TokenRequest, bearer, jwt_in_json_string
from adapters.settings import InstanceConfig

MODES = ("jwt", "token", "mtls")


def configured_modes(inst: InstanceConfig) -> list[str]:
    """The kinds of authorization whose credentials the instance has."""
    creds = inst.credentials
    found = []
    if "login" in creds or "password" in creds:
        found.append("jwt")
    if "token" in creds:
        found.append("token")
    if inst.tls is not None and inst.tls.cert_file:
        found.append("mtls")
    return found


def mode(inst: InstanceConfig) -> str:
    """The instance's kind of authorization (`auto`: the only one configured)."""
    chosen = CmoOptions.of(inst).auth
    if chosen != "auto":
        return chosen
    found = configured_modes(inst)
    return found[0] if len(found) == 1 else "auto"


def check_credentials(inst: InstanceConfig) -> tuple[str, str] | None:
    """(key, problem) when the chosen kind of authorization lacks its credentials."""
    chosen = mode(inst)
    creds = inst.credentials
    if chosen == "auto":
        found = configured_modes(inst)
        what = ", ".join(found) if found else "none"
        return (
            "options.auth",
            f"set options.auth to jwt, token or mtls (credentials found for: {what}): jwt "
            "needs credentials.login_file and credentials.password_file, token needs "
            "credentials.token_file, mtls needs tls.cert_file and tls.key_file",
        )
    if chosen == "jwt":
        for name in ("login", "password"):
            if name not in creds or not creds[name].reveal():
                return (
                    f"credentials.{name}",
                    f"JWT authorization needs credentials.{name}_file (the CMO user's "
                    f"{name}, exchanged at /api/token)",
                )
    elif chosen == "token":
        token = creds.get("token")
        if token is None or not token.reveal().strip():
            return (
                "credentials.token",
                "token authorization needs credentials.token_file (the user's static API token)",
            )
        if len(token.reveal().strip()) > STATIC_TOKEN_MAX_CHARS:
            return (
                "credentials.token",
                f"a CMO static API token is at most {STATIC_TOKEN_MAX_CHARS} characters; "
                "check the file",
            )
    elif chosen == "mtls" and (inst.tls is None or not inst.tls.cert_file):
        return (
            "tls.cert_file",
            "mutual TLS needs tls.cert_file and tls.key_file (the client certificate CMO "
            "maps to a user) and, for a private CA, tls.ca_file",
        )
    return None


def auth(inst: InstanceConfig) -> Auth:
    """The instance's authorization (the client certificate is added by the core from
    `inst.tls` whatever the kind)."""
    chosen = mode(inst)
    options = CmoOptions.of(inst)
    creds = inst.credentials
    if chosen == "jwt" and "login" in creds and "password" in creds:
        login, password = creds["login"], creds["password"]
        return TokenAuth(
            request=TokenRequest(
                method="POST",
                path=options.token_path,
                # Revealed only when the request is made.
                body=lambda: {"login": login.reveal(), "password": password.reveal()},
                headers={"Content-Type": "application/json"},
            ),
            read=jwt_in_json_string,
            header=bearer,
            default_ttl_s=options.jwt_default_ttl_s,
            refresh_before_s=JWT_REFRESH_BEFORE_S,
        )
    if chosen == "token" and "token" in creds:
        return Auth(bearer(creds["token"].reveal().strip()))
    # mtls (or credentials still missing: check_credentials stops the instance first).
    return Auth()
