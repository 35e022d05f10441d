"""Auth providers through the real VendorClient: token exchange, refresh, 401, mutual TLS.

The token server follows CMO's document (`POST /api/token` with `login` and `password`,
answered with the JWT as a JSON string, `Authorization: Bearer <token>` on every call).
"""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestServer

from adapters.core.auth import (
    Auth,
    ClientTls,
    Grant,
    TokenAuth,
    TokenRequest,
    bearer,
    jwt_in_json_string,
    jwt_seconds_left,
)
from adapters.core.errors import Action, ErrorTable
from adapters.core.ratelimit import Unlimited
from adapters.core.secret import Secret
from adapters.core.vendor_call import RetryPolicy, call_with_retry
from adapters.core.vendor_http import CredentialsUnavailable, VendorClient, VendorResponse
from adapters.localkafka.certs import ensure_tls_files

LOGIN = "api-user"
PASSWORD = "Pa55-word-never-printed"
# The document's own example token (its `exp` is 1628012484, in 2021).
DOC_JWT = (
    "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.eyJzdWJqZWN0IjoyMDUxOCwiZXhwIjoxNjI4MDEyNDg0LjB9"
    ".nzLWuRDYKo9-BWwYOxOLeNnVRAzQL_qEVPObI6vMrcE"
)


def jwt(exp: float, n: int = 0) -> str:
    def part(obj: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{part({'typ': 'JWT', 'alg': 'HS256'})}.{part({'subject': n, 'exp': exp})}.sig"


@dataclass
class FakeTokenVendor:
    """Issues JWTs for the right login; accepts only the newest unexpired one."""

    lifetime_s: float = 1200.0
    token_status: int = 200
    issued: list[str] = field(default_factory=list)
    revoked: set[str] = field(default_factory=set)
    calls: list[str | None] = field(default_factory=list)
    refuse_all: bool = False

    async def token(self, request: web.Request) -> web.Response:
        if self.token_status != 200:
            return web.json_response({"message": "no"}, status=self.token_status)
        body = await request.json()
        if body != {"login": LOGIN, "password": PASSWORD}:
            return web.json_response({"message": "invalid login or password"}, status=401)
        token = jwt(time.time() + self.lifetime_s, len(self.issued))
        self.issued.append(token)
        return web.json_response(token)

    async def action(self, request: web.Request) -> web.Response:
        header = request.headers.get("Authorization", "")
        given = header.removeprefix("Bearer ")
        self.calls.append(given or None)
        if self.refuse_all or not self.issued or given != self.issued[-1] or given in self.revoked:
            return web.Response(status=401)
        return web.json_response(42)


def cmo_auth(lifetime_s: float | None = None, refresh_before_s: float = 60.0) -> TokenAuth:
    password = Secret(PASSWORD)
    return TokenAuth(
        request=TokenRequest(
            "POST", "/api/token", body=lambda: {"login": LOGIN, "password": password.reveal()}
        ),
        read=jwt_in_json_string,
        header=bearer,
        default_ttl_s=lifetime_s,
        refresh_before_s=refresh_before_s,
    )


@pytest_asyncio.fixture
async def vendor() -> AsyncIterator[tuple[FakeTokenVendor, str]]:
    fake = FakeTokenVendor()
    app = web.Application()
    app.router.add_post("/api/token", fake.token)
    app.router.add_route("*", "/api/actions{tail:.*}", fake.action)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    try:
        yield fake, str(server.make_url(""))
    finally:
        await server.close()


def client(base_url: str, auth: Auth) -> VendorClient:
    return VendorClient(
        base_url=base_url, auth=auth, limiter=Unlimited(), timeout_s=5, user_agent="t"
    )


POLICY = RetryPolicy(deadline_s=5, max_attempts=3, base_s=0.01, cap_s=0.02)


def test_jwt_lifetime_is_read_from_the_documents_example() -> None:
    assert jwt_seconds_left(DOC_JWT, now_epoch=1628012484 - 100) == pytest.approx(100)
    assert jwt_seconds_left("not-a-jwt") is None
    assert jwt_seconds_left("a.b.c") is None


async def test_the_token_is_fetched_once_and_sent_as_bearer(
    vendor: tuple[FakeTokenVendor, str],
) -> None:
    fake, base = vendor
    auth = cmo_auth()
    api = client(base, auth)
    try:
        answers = await asyncio.gather(*(api.request("GET", "/api/actions/1") for _ in range(10)))
    finally:
        await api.close()
    assert [a.status for a in answers] == [200] * 10
    # Ten concurrent calls share one token request.
    assert len(fake.issued) == 1 and auth.fetches == 1
    assert set(fake.calls) == {fake.issued[0]}


async def test_a_token_is_renewed_before_it_expires(vendor: tuple[FakeTokenVendor, str]) -> None:
    fake, base = vendor
    # A one-second token: renewed halfway through its life (the 60 s margin is longer).
    fake.lifetime_s = 1.0
    api = client(base, cmo_auth(refresh_before_s=60.0))
    try:
        await api.request("GET", "/api/actions/1")
        await api.request("GET", "/api/actions/1")
        assert len(fake.issued) == 1  # still in its first half
        await asyncio.sleep(0.6)
        answer = await api.request("GET", "/api/actions/1")
    finally:
        await api.close()
    assert len(fake.issued) == 2 and answer.status == 200
    assert None not in fake.calls  # never sent without one, never refused


@pytest.mark.parametrize("lifetime_s", [5.0, 30.0, 59.0, -3600.0])
async def test_short_or_stale_tokens_are_shared_by_concurrent_calls(
    vendor: tuple[FakeTokenVendor, str], lifetime_s: float
) -> None:
    # Shorter than the margin, or (by our clock) over already: one fetch for all the calls,
    # and a stale `exp` is used until the vendor refuses it.
    fake, base = vendor
    fake.lifetime_s = lifetime_s
    auth = cmo_auth()
    api = client(base, auth)
    try:
        answers = await asyncio.gather(*(api.request("GET", "/api/actions/1") for _ in range(10)))
    finally:
        await api.close()
    assert [a.status for a in answers] == [200] * 10
    assert auth.fetches == 1


def test_a_bare_unquoted_token_and_a_numeric_string_exp_are_read() -> None:
    token = jwt(time.time() + 100, 0)
    answer = VendorResponse(200, {"content-type": "text/plain"}, f" {token}\n".encode())
    grant = jwt_in_json_string(answer)
    assert grant.value == token and grant.ttl_s is not None and 95 < grant.ttl_s <= 100
    payload = base64.urlsafe_b64encode(b'{"exp": "2000000000"}').rstrip(b"=").decode()
    assert jwt_seconds_left(f"h.{payload}.s", now_epoch=1999999990) == pytest.approx(10)


async def test_a_401_renews_the_token_and_repeats_a_create_once(
    vendor: tuple[FakeTokenVendor, str],
) -> None:
    fake, base = vendor
    api = client(base, cmo_auth())
    try:
        await api.request("GET", "/api/actions/1")
        fake.revoked.add(fake.issued[-1])  # the vendor expired it early
        outcome = await call_with_retry(
            api,
            "POST",
            "/api/actions",
            errors=ErrorTable(),
            policy=POLICY,
            repeat_safe=False,  # a create: repeated only because a 401 proves no action
            json={"title": "x"},
        )
    finally:
        await api.close()
    assert outcome.action is Action.SUCCESS
    assert outcome.response is not None and outcome.response.json() == 42
    assert len(fake.issued) == 2
    assert fake.calls[-2:] == [fake.issued[0], fake.issued[1]]


async def test_a_401_to_a_fresh_token_is_final(vendor: tuple[FakeTokenVendor, str]) -> None:
    fake, base = vendor
    api = client(base, cmo_auth())
    fake.refuse_all = True
    try:
        outcome = await call_with_retry(
            api, "GET", "/api/actions/1", errors=ErrorTable(), policy=POLICY
        )
    finally:
        await api.close()
    assert outcome.action is Action.FAIL
    assert outcome.response is not None and outcome.response.status == 401
    # One renewal, not a loop.
    assert len(fake.issued) == 2 and len(fake.calls) == 2


@pytest.mark.parametrize(("status", "action"), [(401, Action.FAIL), (503, Action.RETRY)])
async def test_a_failed_token_request_never_sends_the_call_and_shows_no_password(
    vendor: tuple[FakeTokenVendor, str], status: int, action: Action
) -> None:
    fake, base = vendor
    fake.token_status = status
    api = client(base, cmo_auth())
    try:
        with pytest.raises(CredentialsUnavailable) as raised:
            await api.request("GET", "/api/actions/1")
        outcome = await call_with_retry(
            api, "POST", "/api/actions", errors=ErrorTable(), policy=POLICY, repeat_safe=False
        )
    finally:
        await api.close()
    assert raised.value.permanent is (status == 401)
    assert outcome.action is action and outcome.may_have_acted is False
    assert fake.calls == []
    assert PASSWORD not in str(raised.value) and PASSWORD not in (outcome.error or "")


async def test_a_wrong_password_is_refused_as_credentials(
    vendor: tuple[FakeTokenVendor, str],
) -> None:
    _, base = vendor
    auth = TokenAuth(
        request=TokenRequest(
            "POST", "/api/token", body=lambda: {"login": LOGIN, "password": "wrong"}
        ),
        read=jwt_in_json_string,
        header=bearer,
        default_ttl_s=1200,
    )
    api = client(base, auth)
    try:
        with pytest.raises(CredentialsUnavailable, match="check the instance's credentials"):
            await api.request("GET", "/api/actions/1")
    finally:
        await api.close()


async def test_a_token_without_exp_lives_the_default_ttl() -> None:
    now = [0.0]
    auth = TokenAuth(
        request=TokenRequest("POST", "/t"),
        read=lambda answer: Grant(msgspec.json.decode(answer.body)),
        header=bearer,
        default_ttl_s=1200,  # CMO's default: 20 minutes
        clock=lambda: now[0],
    )

    @dataclass
    class Answer:
        status: int = 200
        headers: dict[str, str] = field(default_factory=dict)
        body: bytes = b'"opaque-token"'

    async def send(*_: object) -> Answer:
        return Answer()

    assert await auth.headers(send) == {"Authorization": "Bearer opaque-token"}
    now[0] = 1100.0
    await auth.headers(send)
    assert auth.fetches == 1
    now[0] = 1141.0  # within 60 s of the end
    await auth.headers(send)
    assert auth.fetches == 2


# --- mutual TLS --------------------------------------------------------------------------


@pytest_asyncio.fixture
async def mtls_server(tmp_path: Path) -> AsyncIterator[tuple[str, Path]]:
    files = ensure_tls_files(tmp_path, {"vendor": ["127.0.0.1", "localhost"]})
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(files.ca_file))
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_cert_chain(str(files.keystore("vendor")))

    async def whoami(request: web.Request) -> web.Response:
        peer = request.transport.get_extra_info("peercert") if request.transport else None
        return web.json_response({"client": bool(peer)})

    app = web.Application()
    app.router.add_get("/api/whoami", whoami)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"https://127.0.0.1:{port}", tmp_path
    finally:
        await runner.cleanup()


async def test_mutual_tls_presents_the_client_certificate(
    mtls_server: tuple[str, Path],
) -> None:
    base, folder = mtls_server
    files = ensure_tls_files(folder, {"vendor": ["127.0.0.1", "localhost"]})
    tls = ClientTls(
        cert_file=str(files.client_cert_file),
        key_file=str(files.client_key_file),
        key_password=Secret(files.client_key_password),
        ca_file=str(files.ca_file),
    )
    api = client(base, Auth(tls=tls))
    try:
        answer = await api.request("GET", "/api/whoami")
    finally:
        await api.close()
    assert answer.status == 200 and answer.json() == {"client": True}


async def test_without_the_client_certificate_the_vendor_cannot_be_reached(
    mtls_server: tuple[str, Path],
) -> None:
    base, folder = mtls_server
    files = ensure_tls_files(folder, {"vendor": ["127.0.0.1", "localhost"]})
    api = client(base, Auth(tls=ClientTls(ca_file=str(files.ca_file))))
    try:
        with pytest.raises(Exception) as raised:
            await api.request("GET", "/api/whoami")
    finally:
        await api.close()
    assert "TransportError" in type(raised.value).__name__


def test_a_wrong_key_password_names_the_files_not_the_password(tmp_path: Path) -> None:
    files = ensure_tls_files(tmp_path, {"vendor": ["127.0.0.1"]})
    tls = ClientTls(
        cert_file=str(files.client_cert_file),
        key_file=str(files.client_key_file),
        key_password=Secret("definitely-wrong-password"),
    )
    with pytest.raises(Exception) as raised:
        tls.context()
    assert str(files.client_cert_file) in str(raised.value)
    assert "definitely-wrong-password" not in str(raised.value)
