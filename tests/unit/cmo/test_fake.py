"""Tests of the fake Mitratech CMO server: it must behave as CMO's document says
(vendor-docs/003_727b092b2f7c1962.txt, "Creating Standalone Actions via REST API", quoted as
"the document"), and each guess where the document is silent (`FakeCmoBehaviour`) must be
switchable.

tests/unit/test_fake_knobs_covered.py checks that every knob is set by a test here: each knob
appears below as a keyword argument (`start(not_found_status=410)`).
"""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfoNotFoundError

import aiohttp
import msgspec
import pytest
import pytest_asyncio
from multidict import CIMultiDictProxy

from adapters.cmo.dev import DOCUMENT_ACTION_ID, start_dev
from adapters.cmo.fake import (
    DEFAULT_CATEGORIES,
    DEFAULT_ENTITIES,
    DEFAULT_ORG_UNITS,
    CmoUser,
    CmoValidationError,
    FakeCmo,
    FakeCmoBehaviour,
    certificate_thumbprint,
    format_created,
    parse_utc,
    server_ssl_context,
)
from adapters.cmo.fake_main import behaviour as main_behaviour
from adapters.cmo.fake_main import build as main_build
from adapters.cmo.fake_main import logins as main_logins
from adapters.cmo.fake_main import parse_args
from adapters.cmo.fake_main import static_tokens as main_static_tokens
from adapters.devkit import DEV_API_KEY
from tests.tls_certs import TlsFiles, make_tls_files
from tests.vendor_clock import VendorClock

ROOT = Path(__file__).resolve().parents[3]

LOGIN = "superadmin"
PASSWORD = "test-password"
# The document's example static token ("UPDATE Users SET ApiToken = '1212…' WHERE UserID =
# 20518").
STATIC_TOKEN = (
    "121218409EB643899FDFA11FE54BF5746B88C948D7E746BB9C7986CB88405F9B780D2474742C42919B15"
    "B4753732D7F3"
)
DAN_JOHNSTON = 20518  # the GET example's user, login "superadmin"
DAN_JOHNSON = 20519  # the request examples' "responsibleUserName": "Dan Johnson"
DEFAULTS = FakeCmoBehaviour()

# The document's POST example (its line 2 lacks the closing quote; fixed here).
POST_EXAMPLE: dict[str, Any] = {
    "orgUnitName": "North America Operations",
    "entityName": "Head Office",
    "actionCategoryName": "Emergency Response",
    "actionText": "Fix the pipes ",
    "guidanceText": "Guidance Text for Action Created via public API #3",
    "responsibleUserName": "Dan Johnson",
    "carbonCopyEmail": "test@example.com",
    "actionPriorityName": "High",
    "gpsCoordinates": {"X": 1, "Y": 2, "Z": 3},
    "dueDate": "2021-07-02T13:59:59.997Z",
    "hoursTaken": 15,
    "actionValue": 25,
    "progress": 33,
    "geocortexFeature": None,
    "residualRisk": {"consequenceCode": 1, "likelihoodCode": 1},
    "inherentRisk": {"consequenceCode": 2, "likelihoodCode": 2},
    "attachmentRequired": True,
    "confidential": False,
    "customFields": [{"customFieldName": "happiness", "value": "very high score"}],
}
# The document's PUT example.
PUT_EXAMPLE: dict[str, Any] = {
    **POST_EXAMPLE,
    "orgUnitName": "Albama",
    "entityName": "ActionEntity",
    "actionCategoryName": "Act",
    "actionText": "Action Updated via public API #3",
    "guidanceText": "Guidance Text for Action Updated via public API #3",
}
# The document's GET example's keys, in its order.
GET_KEYS = [
    "id",
    "uniqueID",
    "actionText",
    "status",
    "guidanceText",
    "carbonCopyEmail",
    "orgUnit",
    "entity",
    "category",
    "priority",
    "assignorUser",
    "responsibleUser",
    "createdDateTime",
    "dueDate",
    "verifications",
    "gpsCoordinates",
    "actionValue",
    "hoursTaken",
    "progress",
    "residualRisk",
    "inherentRisk",
    "customFields",
]
# The least a create needs under the default `required_on_create`.
MINIMAL: dict[str, Any] = {
    "orgUnitName": "Albama",
    "actionCategoryName": "Act",
    "actionText": "Check the valve",
    "responsibleUserLogin": LOGIN,
    "dueDate": "2021-07-22T18:29:59.997Z",
}
VALIDATION = "Model can't be processed due to following errors"


def by_name(table: dict[Any, str], name: str) -> Any:
    return next(key for key, value in table.items() if value == name)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def claims(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(header, payload) of a JWT."""
    parts = token.split(".")
    assert len(parts) == 3, token
    decoded = [
        msgspec.json.decode(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
        for part in parts[:2]
    ]
    return decoded[0], decoded[1]


@dataclass
class Answer:
    status: int
    raw: bytes
    headers: CIMultiDictProxy[str]

    @property
    def body(self) -> Any:
        return msgspec.json.decode(self.raw) if self.raw else None


@dataclass
class Api:
    """Requests to one started fake; `auth` is sent unless a call gives its own headers."""

    http: aiohttp.ClientSession
    fake: FakeCmo
    auth: dict[str, str] = field(default_factory=dict)
    ssl: Any = None

    async def __call__(
        self,
        method: str,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        json: Any = None,
        data: bytes | None = None,
        ssl: Any = None,
    ) -> Answer:
        base = self.fake.base_url
        assert base is not None
        async with self.http.request(
            method,
            base + path,
            headers=self.auth if headers is None else headers,
            json=json,
            data=data,
            ssl=self.ssl if ssl is None else ssl,
        ) as response:
            return Answer(response.status, await response.read(), response.headers)

    async def token(self, login: str = LOGIN, password: str = PASSWORD) -> str:
        answer = await self(
            "POST", "/api/token", headers={}, json={"login": login, "password": password}
        )
        assert answer.status == 200, answer.raw
        token = answer.body
        assert isinstance(token, str)
        return token

    async def create(self, body: dict[str, Any] | None = None) -> str:
        answer = await self("POST", "/api/actions", json=MINIMAL if body is None else body)
        assert answer.status == 200, answer.body
        created = answer.body
        assert isinstance(created, str)
        return created

    async def get(self, action_id: str) -> dict[str, Any]:
        answer = await self("GET", f"/api/actions/{action_id}")
        assert answer.status == 200, answer.raw
        found = answer.body
        assert isinstance(found, dict)
        return found


Start = Callable[..., Awaitable[tuple[FakeCmo, Api]]]


@pytest.fixture
def clock() -> VendorClock:
    return VendorClock()


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest_asyncio.fixture
async def start(clock: VendorClock, http: aiohttp.ClientSession) -> AsyncIterator[Start]:
    """`await start(**knobs)`: a started fake with those knobs (user 20518 with PASSWORD and
    STATIC_TOKEN), and an `Api` that authenticates as the document says it can: with the client
    certificate when `client_ssl` is given, else with a JWT while JWT is on, else with the
    static token. `fake_kwargs` go to FakeCmo."""
    fakes: list[FakeCmo] = []

    async def _start(
        *,
        fake_kwargs: dict[str, Any] | None = None,
        ssl_context: Any = None,
        client_ssl: Any = None,
        **knobs: Any,
    ) -> tuple[FakeCmo, Api]:
        kwargs: dict[str, Any] = {
            "logins": {LOGIN: PASSWORD},
            "static_tokens": {STATIC_TOKEN: DAN_JOHNSTON},
            "clock": clock,
            **(fake_kwargs or {}),
        }
        fake = FakeCmo(behaviour=FakeCmoBehaviour(**knobs), **kwargs)
        await fake.start(ssl_context=ssl_context)
        fakes.append(fake)
        api = Api(http, fake, ssl=client_ssl)
        if client_ssl is not None:
            api.auth = {}  # over mutual TLS the certificate is the credential
        elif fake.behaviour.jwt_enabled and LOGIN in kwargs["logins"]:
            api.auth = bearer(await api.token())
        else:
            api.auth = bearer(STATIC_TOKEN)
        return fake, api

    yield _start
    for fake in fakes:
        await fake.stop()


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("cmo-tls"), client_key_password="key-pw")


# --------------------------------------------------------------------------- JWT


async def test_the_token_is_a_jwt_in_a_json_string_that_expires(
    start: Start, clock: VendorClock
) -> None:
    # "respond with HTTP 200 OK … and with the newly generated JWT token in JSON string
    # Response Body"; "set the token's expiration time (default 20mins)".
    fake, api = await start()
    assert fake.tokens_issued == 1
    answer = await api(
        "POST", "/api/token", headers={}, json={"login": LOGIN, "password": PASSWORD}
    )
    assert answer.status == 200
    assert answer.headers["Content-Type"].startswith("application/json")
    assert answer.raw.startswith(b'"eyJ') and answer.raw.endswith(b'"')
    token = answer.body
    header, payload = claims(token)
    assert header == {"typ": "JWT", "alg": "HS256"}
    assert payload["exp"] == pytest.approx(clock.now.timestamp() + 20 * 60)
    assert fake.tokens_issued == 2
    assert (fake.requests[-1].auth, fake.requests[-1].user_id) == (("login",), DAN_JOHNSTON)

    action_id = await api.create()
    assert (await api("GET", f"/api/actions/{action_id}", headers=bearer(token))).status == 200
    assert fake.requests[-1].auth == ("jwt",)
    # A changed (forged) token is not one the fake issued.
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    assert (await api("GET", f"/api/actions/{action_id}", headers=bearer(forged))).status == 401

    clock.tick(20 * 60)
    expired = await api("GET", f"/api/actions/{action_id}", headers=bearer(token))
    assert (expired.status, expired.raw) == (401, b"")
    assert not fake.requests[-1].auth
    fresh = await api.token()
    assert (await api("GET", f"/api/actions/{action_id}", headers=bearer(fresh))).status == 200


async def test_the_lifetime_and_exp_are_knobs(start: Start, clock: VendorClock) -> None:
    fake, api = await start(jwt_lifetime_s=5.0, jwt_with_exp=False)
    token = await api.token()
    _, payload = claims(token)
    assert "exp" not in payload
    action_id = await api.create()
    clock.tick(4.9)
    assert (await api("GET", f"/api/actions/{action_id}", headers=bearer(token))).status == 200
    clock.tick(0.1)
    assert (await api("GET", f"/api/actions/{action_id}", headers=bearer(token))).status == 401
    # The behaviour is read on every issue.
    fake.behaviour = msgspec.structs.replace(fake.behaviour, jwt_with_exp=True)
    _, payload = claims(await api.token())
    assert payload["exp"] == pytest.approx(clock.now.timestamp() + 5)


async def test_expire_and_revoke_tokens(start: Start) -> None:
    fake, api = await start()
    action_id = await api.create()
    first, second = await api.token(), await api.token()
    fake.revoke_token(first)
    assert (await api("GET", f"/api/actions/{action_id}", headers=bearer(first))).status == 401
    assert (await api("GET", f"/api/actions/{action_id}", headers=bearer(second))).status == 200
    fake.expire_tokens()
    assert (await api("GET", f"/api/actions/{action_id}", headers=bearer(second))).status == 401


async def test_a_wrong_login_or_password_is_refused(start: Start) -> None:
    fake, api = await start()
    before = fake.tokens_issued
    for body in (
        {"login": LOGIN, "password": "wrong"},
        {"login": "nobody", "password": PASSWORD},
        {"login": "djohnson", "password": ""},  # a user without a password
        {"login": LOGIN},
    ):
        answer = await api("POST", "/api/token", headers={}, json=body)
        assert (answer.status, answer.raw) == (401, b""), body
    assert (await api("POST", "/api/token", headers={}, data=b"{not json")).status == 401
    assert fake.tokens_issued == before
    assert fake.requests[-1].user_id is None

    _, api = await start(
        token_refused_status=400, token_refused_message="Invalid login or password"
    )
    answer = await api("POST", "/api/token", headers={}, json={"login": LOGIN, "password": "x"})
    assert (answer.status, answer.body) == (400, {"message": "Invalid login or password"})


async def test_with_jwt_off_there_is_no_token_endpoint(start: Start) -> None:
    fake, api = await start()
    token = api.auth
    action_id = await api.create()
    fake.behaviour = msgspec.structs.replace(fake.behaviour, jwt_enabled=False)
    answer = await api(
        "POST", "/api/token", headers={}, json={"login": LOGIN, "password": PASSWORD}
    )
    assert (answer.status, answer.raw) == (404, b"")
    assert (await api("GET", f"/api/actions/{action_id}", headers=token)).status == 401

    _, api = await start(jwt_enabled=False, token_disabled_status=403)
    answer = await api(
        "POST", "/api/token", headers={}, json={"login": LOGIN, "password": PASSWORD}
    )
    assert answer.status == 403


async def test_no_or_unknown_credentials_are_401(start: Start) -> None:
    fake, api = await start()
    for headers in (
        {},
        bearer("unknown"),
        {"Authorization": "Basic c3VwZXJhZG1pbjp0ZXN0LXBhc3N3b3Jk"},
        {"Authorization": "Bearer "},
    ):
        for method, path in (("POST", "/api/actions"), ("GET", f"/api/actions/{uuid.uuid4()}")):
            answer = await api(method, path, headers=headers, json=MINIMAL)
            assert (answer.status, answer.raw) == (401, b""), headers
    assert fake.actions() == [] and fake.calls == []

    _, api = await start(unauthorized_status=403)
    assert (await api("POST", "/api/actions", headers={}, json=MINIMAL)).status == 403


# --------------------------------------------------------------------------- static tokens


async def test_static_tokens_work_only_with_jwt_and_mutual_off(start: Start) -> None:
    # "This is the default auth type and it will be used only if JWT and Mutual
    # authentication types are turned off."
    _, api = await start()
    assert (
        await api("POST", "/api/actions", headers=bearer(STATIC_TOKEN), json=MINIMAL)
    ).status == 401
    _, api = await start(jwt_enabled=False)
    assert (await api("POST", "/api/actions", json=MINIMAL)).status == 401
    fake, api = await start(jwt_enabled=False, mutual_enabled=False)
    answer = await api("POST", "/api/actions", headers=bearer(STATIC_TOKEN), json=MINIMAL)
    assert answer.status == 200
    assert (fake.requests[-1].auth, fake.requests[-1].user_id) == (("static",), DAN_JOHNSTON)

    # The other readings.
    _, api = await start(static_token="always")
    assert (
        await api("POST", "/api/actions", headers=bearer(STATIC_TOKEN), json=MINIMAL)
    ).status == 200
    _, api = await start(static_token="never", jwt_enabled=False, mutual_enabled=False)
    assert (await api("POST", "/api/actions", json=MINIMAL)).status == 401


async def test_a_static_token_is_up_to_200_characters_and_belongs_to_a_user(start: Start) -> None:
    # "Static API Token can be any string up to 200 characters long."
    fake, api = await start(static_token="always")
    longest = "x" * 200
    fake.add_static_token(longest, DAN_JOHNSON)
    with pytest.raises(ValueError):
        fake.add_static_token("x" * 201, DAN_JOHNSON)
    with pytest.raises(KeyError):
        fake.add_static_token("token-of-nobody", 1)
    action_id = await api.create()
    answer = await api(
        "PUT", f"/api/actions/{action_id}", headers=bearer(longest), json={"progress": 50}
    )
    assert answer.status == 200
    assert (fake.calls[-1].user_id, fake.calls[-1].auth) == (DAN_JOHNSON, ("static",))
    assert (await api("GET", f"/api/actions/{action_id}", headers=bearer("x" * 201))).status == 401


# --------------------------------------------------------------------------- mutual TLS


async def test_mutual_tls_lets_the_right_certificate_in_without_a_header(
    start: Start, tls: TlsFiles
) -> None:
    fake, api = await start(ssl_context=tls.server_context(), client_ssl=tls.client_context())
    assert fake.base_url is not None and fake.base_url.startswith("https://127.0.0.1:")
    assert fake.control_url.startswith("https://")
    # The certificate is the credential (its key was encrypted: `client_key_password`).
    action_id = await api.create()
    assert (fake.requests[-1].auth, fake.requests[-1].user_id) == (("mtls",), DAN_JOHNSTON)
    assert (await api.get(action_id))["assignorUser"]["id"] == DAN_JOHNSTON
    # A JWT may come along: the request is then both.
    token = await api.token()
    assert (await api("GET", f"/api/actions/{action_id}", headers=bearer(token))).status == 200
    assert fake.requests[-1].auth == ("mtls", "jwt")
    # A wrong header is refused even over a good certificate.
    assert (await api("GET", f"/api/actions/{action_id}", headers=bearer("wrong"))).status == 401


@pytest.mark.parametrize("cert", ["other", "none"])
async def test_mutual_tls_refuses_a_certificate_of_another_ca_or_none_in_the_handshake(
    start: Start, tls: TlsFiles, cert: str
) -> None:
    fake, api = await start(ssl_context=tls.server_context(), client_ssl=tls.client_context())
    stranger = tls.client_context(cert=cert)  # type: ignore[arg-type]
    with pytest.raises(aiohttp.ClientError):
        await api("POST", "/api/actions", headers=bearer(STATIC_TOKEN), json=MINIMAL, ssl=stranger)
    # Nothing got as far as HTTP.
    assert [r.path for r in fake.requests] == []
    # A client that does not trust the fake's CA cannot connect either.
    with pytest.raises(aiohttp.ClientError):
        await api("GET", "/api/actions/x", ssl=tls.client_context(trust=False))


async def test_mutual_tls_knobs(start: Start, tls: TlsFiles) -> None:
    context = tls.client_context()
    # The certificate admits the connection only: a token must come with it.
    fake, api = await start(
        ssl_context=tls.server_context(), client_ssl=context, mtls_alone_suffices=False
    )
    assert (await api("POST", "/api/actions", headers={}, json=MINIMAL)).status == 401
    token = await api.token()
    assert (await api("POST", "/api/actions", headers=bearer(token), json=MINIMAL)).status == 200
    assert fake.requests[-1].auth == ("mtls", "jwt")

    # Certificates map to users; an unmapped one is refused.
    fake, api = await start(
        ssl_context=tls.server_context(),
        client_ssl=context,
        mtls_unmapped_certificate="refuse",
    )
    assert (await api("POST", "/api/actions", headers={}, json=MINIMAL)).status == 401
    fake.map_client_certificate(tls.client_thumbprint, DAN_JOHNSON)
    action_id = await api.create()
    assert (await api.get(action_id))["assignorUser"]["loginName"] == "djohnson"
    with pytest.raises(KeyError):
        fake.map_client_certificate(tls.client_thumbprint, 1)

    # Mutual authentication off: a verified certificate is no credential.
    fake, api = await start(
        ssl_context=tls.server_context(), client_ssl=context, mutual_enabled=False
    )
    assert (await api("POST", "/api/actions", headers={}, json=MINIMAL)).status == 401


async def test_an_optional_client_certificate_and_the_fakes_context_helper(
    start: Start, tls: TlsFiles, clock: VendorClock
) -> None:
    context = server_ssl_context(
        str(tls.server_cert_file),
        str(tls.server_key_file),
        client_ca_file=str(tls.ca_file),
        require_client_cert=False,
    )
    fake, api = await start(ssl_context=context, client_ssl=tls.client_context(cert="none"))
    # No certificate: the TLS connection stands, the request needs a token.
    assert (await api("POST", "/api/actions", headers={}, json=MINIMAL)).status == 401
    token = await api.token()
    assert (await api("POST", "/api/actions", headers=bearer(token), json=MINIMAL)).status == 200
    assert fake.requests[-1].auth == ("jwt",)
    answer = await api("POST", "/api/actions", headers={}, json=MINIMAL, ssl=tls.client_context())
    assert answer.status == 200 and fake.requests[-1].auth == ("mtls",)
    # HTTPS without client verification at all.
    plain = FakeCmo(
        clock=clock,
        ssl_context=server_ssl_context(str(tls.server_cert_file), str(tls.server_key_file)),
    )
    async with plain:
        assert plain.base_url is not None and plain.base_url.startswith("https://")


def test_the_thumbprint_is_the_sha1_of_the_der(tls: TlsFiles) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    cert = x509.load_pem_x509_certificate(tls.client_cert_file.read_bytes())
    assert certificate_thumbprint(cert.public_bytes(Encoding.DER)) == tls.client_thumbprint
    assert len(tls.client_thumbprint) == 40 and tls.client_thumbprint.isupper()
    assert tls.other_client_thumbprint != tls.client_thumbprint


# --------------------------------------------------------------------------- create and GET


async def test_create_answers_the_id_as_a_bare_json_string_and_get_the_documents_shape(
    start: Start, clock: VendorClock
) -> None:
    fake, api = await start()
    answer = await api("POST", "/api/actions", json=POST_EXAMPLE)
    # "HTTP 200 OK response code and the created Action ID JSON string in the response body".
    assert answer.status == 200
    assert answer.raw.startswith(b'"') and answer.raw.endswith(b'"')
    action_id = answer.body
    assert str(uuid.UUID(action_id)) == action_id
    found = await api.get(action_id)
    assert list(found) == GET_KEYS
    assert found == {
        "id": action_id,
        "uniqueID": "6142",
        "actionText": "Fix the pipes ",
        "status": {"code": 1, "name": "Pending"},
        "guidanceText": "Guidance Text for Action Created via public API #3",
        "carbonCopyEmail": "test@example.com",
        "orgUnit": {
            "id": by_name(DEFAULT_ORG_UNITS, "North America Operations"),
            "name": "North America Operations",
        },
        "entity": {"id": by_name(DEFAULT_ENTITIES, "Head Office"), "name": "Head Office"},
        "category": {
            "id": by_name(DEFAULT_CATEGORIES, "Emergency Response"),
            "name": "Emergency Response",
        },
        "priority": {"id": "7cc13288-e9f9-46d4-bfc9-443e3ad00c9b", "name": "High"},
        "assignorUser": {
            "id": 20518,
            "firstName": "Dan",
            "lastName": "Johnston",
            "loginName": "superadmin",
            "email": "pavel.pargachev@mitratech.com",
        },
        "responsibleUser": {
            "id": DAN_JOHNSON,
            "firstName": "Dan",
            "lastName": "Johnson",
            "loginName": "djohnson",
            "email": "dan.johnson@example.com",
        },
        "createdDateTime": format_created(clock.now),
        "dueDate": "2021-07-02T13:59:59.997Z",
        "verifications": [],
        "gpsCoordinates": {"x": 1, "y": 2, "z": 3},
        "actionValue": 25.0,
        "hoursTaken": 15,
        "progress": 33,
        "residualRisk": {"consequenceCode": 1, "likelihoodCode": 1},
        "inherentRisk": {"consequenceCode": 2, "likelihoodCode": 2},
        "customFields": [
            {
                "customFieldID": 3590,
                "customFieldName": "happiness",
                "customFieldTypeName": "Text Box",
                "value": "very high score",
            }
        ],
    }
    assert found["createdDateTime"] == "2026-11-01T08:00:00.000Z"
    assert b'"actionValue":25.0' in (await api("GET", f"/api/actions/{action_id}")).raw
    assert fake.get_action(action_id) == found == fake.actions()[0]
    assert fake.get_action(action_id.upper()) == found
    # The next action gets the next uniqueID.
    assert (await api.get(await api.create()))["uniqueID"] == "6143"


async def test_the_id_alternatives_resolve_like_the_names(start: Start) -> None:
    # "Instead of the following fields, alternative fields with Id suffix can be used";
    # "There are two alternatives for the field "responsibleUserName"".
    _, api = await start()
    body = {
        "orgUnitId": 12480,
        "entityId": "0656ef56-f3e2-418b-9f47-1de3c889dd6f",
        "actionCategoryId": 2233,
        "actionPriorityId": "7CC13288-E9F9-46D4-BFC9-443E3AD00C9B",
        "actionText": "By ids",
        "responsibleUserId": 20518,
        "dueDate": "2021-07-22T18:29:59.997Z",
        "customFields": [{"customFieldId": 3590, "value": "not so high score"}],
    }
    found = await api.get(await api.create(body))
    assert found["orgUnit"] == {"id": 12480, "name": "Albama"}
    assert found["entity"] == {
        "id": "0656ef56-f3e2-418b-9f47-1de3c889dd6f",
        "name": "Some Entity Name",
    }
    assert found["category"] == {"id": 2233, "name": "Act"}
    assert found["priority"] == {"id": "7cc13288-e9f9-46d4-bfc9-443e3ad00c9b", "name": "High"}
    assert found["responsibleUser"]["loginName"] == "superadmin"
    assert found["customFields"][0]["customFieldName"] == "happiness"
    assert found["customFields"][0]["value"] == "not so high score"
    by_login = {**MINIMAL, "responsibleUserLogin": "djohnson"}
    assert (await api.get(await api.create(by_login)))["responsibleUser"]["id"] == DAN_JOHNSON


async def test_an_unknown_name_is_the_documents_400(start: Start) -> None:
    fake, api = await start()
    # The document's example: "Albama" that the system cannot find.
    del fake.org_units[12480]
    answer = await api("POST", "/api/actions", json=MINIMAL)
    assert answer.status == 400
    assert answer.body == {
        "message": "Model can't be processed due to following errors",
        "errors": [
            {
                "field": "OrgUnitName",
                "messages": [
                    "System is unable to find object based on the provided name(s). "
                    "(Values: Albama)"
                ],
            }
        ],
    }
    assert fake.actions() == [] and fake.calls == []
    # Every unresolvable field is listed.
    answer = await api(
        "POST",
        "/api/actions",
        json={
            **POST_EXAMPLE,
            "entityName": "Nowhere",
            "actionPriorityName": "Urgent",
            "responsibleUserName": "Nobody Here",
            "customFields": [{"customFieldName": "sadness", "value": "x"}],
        },
    )
    assert answer.status == 400 and answer.body["message"] == VALIDATION
    assert {e["field"]: e["messages"] for e in answer.body["errors"]} == {
        "EntityName": [
            "System is unable to find object based on the provided name(s). (Values: Nowhere)"
        ],
        "ActionPriorityName": [
            "System is unable to find object based on the provided name(s). (Values: Urgent)"
        ],
        "ResponsibleUserName": [
            "System is unable to find object based on the provided name(s). (Values: Nobody Here)"
        ],
        "CustomFieldName": [
            "System is unable to find object based on the provided name(s). (Values: sadness)"
        ],
    }
    # Names match exactly by default.
    fake.org_units[12480] = "Albama"
    answer = await api("POST", "/api/actions", json={**MINIMAL, "orgUnitName": "ALBAMA"})
    assert answer.status == 400 and answer.body["errors"][0]["field"] == "OrgUnitName"

    _, api = await start(name_match="case_insensitive")
    found = await api.get(
        await api.create(
            {
                **MINIMAL,
                "orgUnitName": "ALBAMA",
                "responsibleUserLogin": None,
                "responsibleUserName": "dan johnson",
            }
        )
    )
    assert found["orgUnit"] == {"id": 12480, "name": "Albama"}
    assert found["responsibleUser"]["id"] == DAN_JOHNSON


async def test_an_unknown_id_is_a_400_too(start: Start) -> None:
    _, api = await start()
    answer = await api(
        "POST", "/api/actions", json={**MINIMAL, "orgUnitName": None, "orgUnitId": 999}
    )
    assert answer.status == 400
    assert answer.body["errors"] == [
        {
            "field": "OrgUnitId",
            "messages": [
                "System is unable to find object based on the provided id(s). (Values: 999)"
            ],
        }
    ]
    _, api = await start(unknown_id_message="Object not found: {values}")
    body = {**MINIMAL, "responsibleUserLogin": None, "responsibleUserId": 1, "entityId": "nope"}
    answer = await api("POST", "/api/actions", json=body)
    assert {e["field"]: e["messages"] for e in answer.body["errors"]} == {
        "EntityId": ["Object not found: nope"],
        "ResponsibleUserId": ["Object not found: 1"],
    }


async def test_a_name_and_its_id_together(start: Start) -> None:
    _, api = await start()
    both = {**MINIMAL, "orgUnitName": "North America Operations", "orgUnitId": 12480}
    answer = await api("POST", "/api/actions", json=both)
    assert answer.status == 400
    assert answer.body["errors"] == [
        {
            "field": "OrgUnitName",
            "messages": ["Only one of OrgUnitName and OrgUnitId may be given."],
        }
    ]
    two_users = {**MINIMAL, "responsibleUserName": "Dan Johnson"}
    answer = await api("POST", "/api/actions", json=two_users)
    assert answer.status == 400 and answer.body["errors"][0]["field"] == "ResponsibleUserName"

    _, api = await start(name_and_id="id_wins")
    found = await api.get(await api.create(both))
    assert found["orgUnit"]["name"] == "Albama"
    # id, then login, then name.
    assert (await api.get(await api.create(two_users)))["responsibleUser"]["id"] == DAN_JOHNSTON

    _, api = await start(name_and_id="name_wins")
    found = await api.get(await api.create(both))
    assert found["orgUnit"]["name"] == "North America Operations"
    assert (await api.get(await api.create(two_users)))["responsibleUser"]["id"] == DAN_JOHNSON
    found = await api.get(
        await api.create(
            {
                **MINIMAL,
                "customFields": [
                    {"customFieldName": "happiness", "customFieldId": 1, "value": "v"}
                ],
            }
        )
    )
    assert found["customFields"][0]["customFieldID"] == 3590


async def test_required_fields(start: Start) -> None:
    _, api = await start()
    answer = await api("POST", "/api/actions", json={"actionText": "x"})
    assert answer.status == 400
    assert {e["field"]: e["messages"] for e in answer.body["errors"]} == {
        "OrgUnitName": ["The OrgUnitName field is required."],
        "ActionCategoryName": ["The ActionCategoryName field is required."],
        "ResponsibleUserName": ["The ResponsibleUserName field is required."],
        "DueDate": ["The DueDate field is required."],
    }
    # Optional ones may be left out: entity, priority, risks, custom fields.
    found = await api.get(await api.create())
    assert found["entity"] is None and found["priority"] is None
    assert found["customFields"] == [] and found["residualRisk"] is None

    _, api = await start(required_on_create=("actionText", "entity"))
    answer = await api("POST", "/api/actions", json={"actionText": "x"})
    assert answer.body["errors"] == [
        {"field": "EntityName", "messages": ["The EntityName field is required."]}
    ]
    found = await api.get(await api.create({"actionText": "x", "entityName": "Head Office"}))
    assert found["orgUnit"] is None and found["responsibleUser"] is None


async def test_bad_values_are_field_errors(start: Start) -> None:
    fake, api = await start()
    answer = await api(
        "POST",
        "/api/actions",
        json={
            **MINIMAL,
            "progress": "a lot",
            "confidential": "no",
            "residualRisk": {"consequenceCode": 1},
            "gpsCoordinates": {"X": "north"},
            "orgUnitName": 12480,
            "customFields": "happiness",
        },
    )
    assert answer.status == 400
    assert {e["field"]: e["messages"] for e in answer.body["errors"]} == {
        "OrgUnitName": ["The value is not valid for OrgUnitName."],
        "Progress": ["The value is not valid for Progress."],
        "Confidential": ["The value is not valid for Confidential."],
        "ResidualRisk": ["The value is not valid for ResidualRisk."],
        "GpsCoordinates": ["The value is not valid for GpsCoordinates."],
        "CustomFields": ["The value is not valid for CustomFields."],
    }
    # "dueDate" must be a timestamp in ISO UTC format.
    for due in ("2021-07-22", "2021-07-22T23:59:59.997+05:30", "2021-07-22T18:29:59", "soon"):
        answer = await api("POST", "/api/actions", json={**MINIMAL, "dueDate": due})
        assert answer.body["errors"] == [
            {"field": "DueDate", "messages": ["DueDate must be a timestamp in ISO UTC format."]}
        ], due
    for raw in (b"{not json", b"[]", b""):
        answer = await api(
            "POST",
            "/api/actions",
            data=raw,
            headers={**api.auth, "Content-Type": "application/json"},
        )
        assert answer.status == 400
        assert answer.body == {
            "message": VALIDATION,
            "errors": [{"field": "", "messages": ["The request body must be a JSON object."]}],
        }
    assert fake.actions() == []


async def test_no_risk_is_kept_as_sent(start: Start) -> None:
    # "To pass no-risk value … Pass it with "likelihoodCode" and "consequenceCode" being -1 …
    # or just pass null".
    _, api = await start()
    body = {
        **MINIMAL,
        "residualRisk": {"consequenceCode": -1, "likelihoodCode": -1},
        "inherentRisk": None,
    }
    found = await api.get(await api.create(body))
    assert found["residualRisk"] == {"consequenceCode": -1, "likelihoodCode": -1}
    assert found["inherentRisk"] is None


async def test_the_due_date_rule(start: Start) -> None:
    # "to anywhere within the last second of that date … Action Due Date for July 22nd, 2021
    # should be … 2021-07-22T18:29:59.997Z" (India Standard Time).
    _, api = await start()
    # Not checked by default: stored as sent.
    assert (await api.get(await api.create({**MINIMAL, "dueDate": "2021-07-22T10:00:00Z"})))[
        "dueDate"
    ] == "2021-07-22T10:00:00Z"

    _, api = await start(due_date_end_of_day=True)
    for due in (
        "2021-07-22T18:29:59.997Z",
        "2021-07-22T18:29:59Z",
        "2021-07-22T18:29:59.000+00:00",
    ):
        assert (await api.get(await api.create({**MINIMAL, "dueDate": due})))["dueDate"] == due
    for due in ("2021-07-22T18:29:58.999Z", "2021-07-22T18:30:00Z", "2021-07-02T13:59:59.997Z"):
        answer = await api("POST", "/api/actions", json={**MINIMAL, "dueDate": due})
        assert answer.status == 400, due
        assert answer.body["errors"] == [
            {
                "field": "DueDate",
                "messages": [
                    "DueDate must point to the last second of a day in the company's time "
                    "zone (Asia/Kolkata)."
                ],
            }
        ]
    # The document's POST example is the end of a day at UTC+10.
    _, api = await start(due_date_end_of_day=True, company_time_zone="Australia/Brisbane")
    assert (await api("POST", "/api/actions", json=POST_EXAMPLE)).status == 200
    with pytest.raises(ZoneInfoNotFoundError):
        FakeCmo(behaviour=FakeCmoBehaviour(company_time_zone="Mars/Olympus_Mons"))


async def test_request_only_fields_are_shown_when_told(start: Start) -> None:
    _, api = await start()
    found = await api.get(await api.create(POST_EXAMPLE))
    assert not {"attachmentRequired", "confidential", "geocortexFeature"} & found.keys()
    _, api = await start(
        get_extra_fields=("attachmentRequired", "confidential", "geocortexFeature")
    )
    found = await api.get(await api.create(POST_EXAMPLE))
    assert (found["attachmentRequired"], found["confidential"], found["geocortexFeature"]) == (
        True,
        False,
        None,
    )
    found = await api.get(await api.create())
    assert (found["attachmentRequired"], found["confidential"]) == (False, False)


# --------------------------------------------------------------------------- PUT and DELETE


async def test_update_answers_an_empty_200_and_changes_what_was_sent(start: Start) -> None:
    fake, api = await start()
    action_id = await api.create(POST_EXAMPLE)
    before = await api.get(action_id)
    answer = await api(
        "PUT",
        f"/api/actions/{action_id}",
        json={
            "progress": 90,
            "customFields": [{"customFieldId": 3590, "value": "not so high score"}],
        },
    )
    # "HTTP 200 OK response code with empty response body".
    assert (answer.status, answer.raw) == (200, b"")
    after = await api.get(action_id)
    assert after["progress"] == 90
    assert after["customFields"][0]["value"] == "not so high score"
    assert {k: v for k, v in after.items() if k not in ("progress", "customFields")} == {
        k: v for k, v in before.items() if k not in ("progress", "customFields")
    }
    # The document's PUT example; an explicit null clears an optional field.
    answer = await api(
        "PUT",
        f"/api/actions/{action_id}",
        json={**PUT_EXAMPLE, "inherentRisk": None, "entityName": None},
    )
    assert (answer.status, answer.raw) == (200, b"")
    after = await api.get(action_id)
    assert after["actionText"] == "Action Updated via public API #3"
    assert after["orgUnit"] == {"id": 12480, "name": "Albama"}
    assert after["category"] == {"id": 2233, "name": "Act"}
    assert after["entity"] is None and after["inherentRisk"] is None
    assert (after["id"], after["uniqueID"], after["createdDateTime"]) == (
        before["id"],
        before["uniqueID"],
        before["createdDateTime"],
    )
    # A required field cannot be cleared; an unknown name is the same 400 as for a create.
    answer = await api("PUT", f"/api/actions/{action_id}", json={"orgUnitName": None})
    assert answer.body["errors"] == [
        {"field": "OrgUnitName", "messages": ["The OrgUnitName field is required."]}
    ]
    answer = await api("PUT", f"/api/actions/{action_id}", json={"actionCategoryName": "Nope"})
    assert answer.status == 400 and answer.body["errors"][0]["field"] == "ActionCategoryName"
    assert [(c.method, c.action, c.action_id) for c in fake.calls] == [
        ("POST", "create", action_id),
        ("PUT", "update", action_id),
        ("PUT", "update", action_id),
    ]
    assert fake.calls[1].json["progress"] == 90 and fake.calls[1].auth == ("jwt",)


async def test_update_can_replace_the_whole_action(start: Start) -> None:
    _, api = await start(update_mode="replace")
    action_id = await api.create(POST_EXAMPLE)
    answer = await api("PUT", f"/api/actions/{action_id}", json={"progress": 90})
    assert answer.status == 400 and len(answer.body["errors"]) == 5
    assert (await api("PUT", f"/api/actions/{action_id}", json=MINIMAL)).status == 200
    after = await api.get(action_id)
    assert after["actionText"] == MINIMAL["actionText"]
    assert after["entity"] is None and after["customFields"] == [] and after["progress"] is None
    assert after["uniqueID"] == "6142" and after["status"]["code"] == 1
    assert list(after) == GET_KEYS


async def test_delete_answers_an_empty_200_and_unknown_ids_are_404(start: Start) -> None:
    fake, api = await start()
    action_id = await api.create()
    answer = await api("DELETE", f"/api/actions/{action_id}")
    assert (answer.status, answer.raw) == (200, b"")
    assert fake.get_action(action_id) is None
    for method in ("GET", "PUT", "DELETE"):
        answer = await api(method, f"/api/actions/{action_id}", json={"progress": 1})
        assert (answer.status, answer.raw) == (404, b""), method
    assert (await api("GET", "/api/actions/not-a-uuid")).status == 404
    assert fake.calls[-1].action == "delete" and fake.calls[-1].json is None

    _, api = await start(not_found_status=410)
    assert (await api("GET", f"/api/actions/{uuid.uuid4()}")).status == 410


async def test_an_action_of_an_event_workflow_cannot_be_deleted(start: Start) -> None:
    # "In case if action cannot be deleted due to some restriction unrelated to user
    # permissions - it responds with HTTP 400".
    fake, api = await start()
    action_id = fake.create_action(MINIMAL, created_by_event_workflow=True)
    answer = await api("DELETE", f"/api/actions/{action_id}")
    assert (answer.status, answer.body) == (
        400,
        {"message": "You cannot delete Actions created by Event Workflow"},
    )
    assert fake.get_action(action_id) is not None
    # It can still be read and changed.
    assert (await api("PUT", f"/api/actions/{action_id}", json={"progress": 5})).status == 200
    fake.set_created_by_event_workflow(action_id, False)
    assert (await api("DELETE", f"/api/actions/{action_id}")).status == 200
    other = await api.create()
    fake.set_created_by_event_workflow(other)
    assert (await api("DELETE", f"/api/actions/{other}")).status == 400
    with pytest.raises(KeyError):
        fake.set_created_by_event_workflow(str(uuid.uuid4()))


async def test_paths_and_methods(start: Start) -> None:
    _, api = await start()
    action_id = await api.create()
    assert (await api("GET", "/api/actions")).status == 405
    assert (await api("PATCH", f"/api/actions/{action_id}", json={})).status == 405
    assert (await api("GET", "/api/token")).status == 405
    assert (await api("GET", "/api/other")).status == 404
    assert (await api("GET", f"/api/actions/{action_id}/history")).status == 404
    # ASP.NET routing: case-insensitive, a trailing slash is the same path.
    assert (await api("GET", f"/API/Actions/{action_id.upper()}/")).status == 200


# --------------------------------------------------------------------------- permissions


async def test_each_write_needs_its_role_permission(start: Start) -> None:
    # "The user performing the request has to have 'Allow Create via API' role permission
    # enabled" (and Edit, Delete); else "HTTP 403 Forbidden response code".
    fake, api = await start()
    action_id = await api.create()
    fake.set_permissions(DAN_JOHNSTON, create=False)
    answer = await api("POST", "/api/actions", json=MINIMAL)
    assert (answer.status, answer.raw) == (403, b"")
    assert (await api("PUT", f"/api/actions/{action_id}", json={"progress": 1})).status == 200
    fake.set_permissions(DAN_JOHNSTON, edit=False)
    assert (await api("PUT", f"/api/actions/{action_id}", json={"progress": 2})).status == 403
    # GET: "lacks the role permission to update Actions".
    assert (await api("GET", f"/api/actions/{action_id}")).status == 403
    fake.set_permissions(DAN_JOHNSTON, delete=False)
    # 403 comes before the id is looked at.
    assert (await api("DELETE", f"/api/actions/{uuid.uuid4()}")).status == 403
    assert (await api("DELETE", f"/api/actions/{action_id}")).status == 403
    assert fake.get_action(action_id)["progress"] == 1  # type: ignore[index]
    assert fake.requests[-1].user_id == DAN_JOHNSTON and fake.requests[-1].status == 403
    fake.set_permissions(DAN_JOHNSTON, create=True, edit=True, delete=True)
    assert (await api("DELETE", f"/api/actions/{action_id}")).status == 200


async def test_permissions_follow_the_credentials_user(start: Start) -> None:
    users = [
        CmoUser(1, "Ann", "Reader", "ann", "ann@example.com", permissions=set()),
        CmoUser(2, "Bob", "Writer", "bob", "bob@example.com"),
    ]
    fake, api = await start(
        static_token="always",
        fake_kwargs={
            "users": users,
            "static_tokens": {"ann-token": 1, "bob-token": 2},
            "logins": {},
        },
    )
    assert repr(users[0]).count("password") == 0
    body = {**MINIMAL, "responsibleUserLogin": "bob"}
    assert (await api("POST", "/api/actions", headers=bearer("ann-token"), json=body)).status == 403
    created = await api("POST", "/api/actions", headers=bearer("bob-token"), json=body)
    assert created.status == 200
    assert (
        await api("GET", f"/api/actions/{created.body}", headers=bearer("ann-token"))
    ).status == 403
    fake.set_password("ann", "ann-pw")
    token = await api.token("ann", "ann-pw")
    assert (await api("GET", f"/api/actions/{created.body}", headers=bearer(token))).status == 403
    with pytest.raises(KeyError):
        fake.set_password("nobody", "x")


async def test_the_read_permission_and_the_403_body_are_knobs(start: Start) -> None:
    fake, api = await start(get_permission="none", forbidden_message="Permission denied")
    action_id = await api.create()
    fake.set_permissions(DAN_JOHNSTON, create=False, edit=False, delete=False)
    assert (await api("GET", f"/api/actions/{action_id}")).status == 200
    answer = await api("POST", "/api/actions", json=MINIMAL)
    assert (answer.status, answer.body) == (403, {"message": "Permission denied"})

    fake, api = await start(get_permission="create")
    action_id = await api.create()
    fake.set_permissions(DAN_JOHNSTON, edit=False)
    assert (await api("GET", f"/api/actions/{action_id}")).status == 200
    fake.set_permissions(DAN_JOHNSTON, create=False, edit=True)
    assert (await api("GET", f"/api/actions/{action_id}")).status == 403


# --------------------------------------------------------------------------- hand changes


async def test_changes_by_hand_show_in_get(start: Start) -> None:
    fake, api = await start()
    action_id = fake.create_action(POST_EXAMPLE, action_id="14B44C76-B1D4-4DF1-84B6-2F2F583AE67D")
    assert action_id == "14b44c76-b1d4-4df1-84b6-2f2f583ae67d"
    with pytest.raises(ValueError):
        fake.create_action(POST_EXAMPLE, action_id=action_id)
    with pytest.raises(CmoValidationError) as raised:
        fake.create_action({"orgUnitName": "Nowhere"})
    assert "OrgUnitName" in raised.value.errors
    changed = fake.update_action(action_id, {"status": 3, "progress": 100, "id": "ignored"})
    assert changed["status"] == {"code": 3, "name": "Completed"} and changed["id"] == action_id
    found = await api.get(action_id)
    assert (found["status"], found["progress"]) == ({"code": 3, "name": "Completed"}, 100)
    fake.update_action(
        action_id, {"status": {"code": 7, "name": "Overdue"}, "verifications": [{"by": 1}]}
    )
    found = await api.get(action_id)
    assert found["status"] == {"code": 7, "name": "Overdue"} and found["verifications"] == [
        {"by": 1}
    ]
    assert fake.update_action(action_id, {"status": 42})["status"] == {"code": 42, "name": "42"}
    assert [a["id"] for a in fake.actions()] == [action_id]
    fake.delete_action(action_id)
    assert (await api("GET", f"/api/actions/{action_id}")).status == 404
    assert fake.get_action(action_id) is None
    with pytest.raises(KeyError):
        fake.update_action(action_id, {})
    with pytest.raises(KeyError):
        fake.delete_action(action_id)
    # Hand changes are not API calls.
    assert fake.calls == []


async def test_the_reference_data_can_be_changed(start: Start) -> None:
    fake, api = await start(fake_kwargs={"seed_reference": False})
    answer = await api("POST", "/api/actions", json=MINIMAL)
    assert answer.status == 400 and answer.body["errors"][0]["field"] == "OrgUnitName"
    fake.org_units[1] = "Albama"
    fake.categories[2] = "Act"
    fake.priorities["P-1"] = "High"
    fake.custom_fields[7] = ("mood", "Drop Down")
    fake.add_user(CmoUser(5, "Eve", "Extra", "eve", "eve@example.com"))
    body = {
        **MINIMAL,
        "actionPriorityId": "p-1",
        "responsibleUserId": 5,
        "responsibleUserLogin": None,
        "customFields": [{"customFieldName": "mood", "value": "ok"}],
    }
    found = await api.get(await api.create(body))
    assert found["orgUnit"] == {"id": 1, "name": "Albama"}
    assert found["priority"] == {"id": "P-1", "name": "High"}
    assert found["customFields"] == [
        {
            "customFieldID": 7,
            "customFieldName": "mood",
            "customFieldTypeName": "Drop Down",
            "value": "ok",
        }
    ]
    assert found["responsibleUser"]["loginName"] == "eve"


# --------------------------------------------------------------------------- logs and faults


async def test_the_logs_keep_no_credentials(start: Start) -> None:
    fake, api = await start(static_token="always")
    action_id = await api.create()
    await api("GET", f"/api/actions/{action_id}", headers=bearer(STATIC_TOKEN))
    await api("GET", f"/api/actions/{action_id}", headers={})
    assert [(r.method, r.status, r.auth) for r in fake.requests] == [
        ("POST", 200, ("login",)),
        ("POST", 200, ("jwt",)),
        ("GET", 200, ("static",)),
        ("GET", 401, ()),
    ]
    dump = msgspec.json.encode([fake.requests, fake.calls]).decode()
    token = api.auth["Authorization"].removeprefix("Bearer ")
    for secret in (PASSWORD, STATIC_TOKEN, token):
        assert secret not in dump
    assert all(r.at > 0 for r in fake.requests)


async def test_fail_next_and_delay_next(start: Start) -> None:
    fake, api = await start()
    fake.fail_next(1, 503, retry_after=2)
    answer = await api("POST", "/api/actions", json=MINIMAL)
    assert (answer.status, answer.body) == (503, {"message": "injected failure (503)"})
    assert answer.headers["Retry-After"] == "2"
    assert fake.requests[-1].injected and fake.actions() == []
    # Before authentication, the token endpoint included.
    fake.fail_next(1, 500)
    assert (await api("POST", "/api/token", headers={}, json={})).status == 500
    assert (await api("POST", "/api/actions", json=MINIMAL)).status == 200

    # A delayed create happens even when the client gives up waiting.
    fake.delay_next(1, 0.3)
    with pytest.raises(asyncio.TimeoutError):
        async with asyncio.timeout(0.05):
            await api("POST", "/api/actions", json=MINIMAL)
    await asyncio.sleep(0.4)
    assert len(fake.actions()) == 2


# --------------------------------------------------------------------------- control API


async def test_the_control_api(start: Start, http: aiohttp.ClientSession) -> None:
    fake, api = await start()
    ctl = fake.control_url

    async def call(method: str, path: str, json: Any = None) -> tuple[int, Any]:
        async with http.request(method, ctl + path, json=json) as response:
            raw = await response.read()
            try:
                return response.status, msgspec.json.decode(raw) if raw else None
            except msgspec.DecodeError:
                return response.status, raw.decode()

    status, created = await call(
        "POST", "/actions", {**MINIMAL, "createdByEventWorkflow": True, "id": DOCUMENT_ACTION_ID}
    )
    assert (status, created) == (200, {"id": DOCUMENT_ACTION_ID})
    assert (await call("POST", "/actions", {**MINIMAL, "id": DOCUMENT_ACTION_ID}))[0] == 409
    status, refused = await call("POST", "/actions", {"orgUnitName": "Nowhere"})
    assert status == 400 and refused["message"] == VALIDATION
    assert (await api("DELETE", f"/api/actions/{DOCUMENT_ACTION_ID}")).status == 400
    status, changed = await call("PATCH", f"/actions/{DOCUMENT_ACTION_ID}", {"status": 3})
    assert status == 200 and changed["status"] == {"code": 3, "name": "Completed"}
    assert (await api.get(DOCUMENT_ACTION_ID))["status"]["name"] == "Completed"
    status, listed = await call("GET", "/actions")
    assert status == 200 and [a["id"] for a in listed] == [DOCUMENT_ACTION_ID]
    assert (await call("GET", f"/actions/{DOCUMENT_ACTION_ID}"))[1]["status"]["code"] == 3
    assert (await call("DELETE", f"/actions/{DOCUMENT_ACTION_ID}"))[0] == 204
    for method in ("GET", "PATCH", "DELETE"):
        assert (await call(method, f"/actions/{DOCUMENT_ACTION_ID}", {}))[0] == 404
    status, reference = await call("GET", "/reference")
    assert {"id": 12480, "name": "Albama"} in reference["orgUnits"]
    assert {"id": 3590, "name": "happiness", "typeName": "Text Box"} in reference["customFields"]
    assert all("password" not in user for user in reference["users"])

    assert (await call("POST", "/fail_next", {"n": 1, "status": 502, "retry_after": 1}))[0] == 204
    assert (await api("POST", "/api/actions", json=MINIMAL)).status == 502
    assert (await call("POST", "/fail_next", {"n": "x"}))[0] == 400
    assert (await call("POST", "/delay_next", {"n": 1, "seconds": 0.01}))[0] == 204
    assert (await call("POST", "/delay_next", {}))[0] == 400
    await api.create()
    status, requests = await call("GET", "/requests")
    assert status == 200 and requests[-1]["status"] == 200
    status, calls = await call("GET", "/calls")
    assert [c["action"] for c in calls] == ["create"]
    assert (await call("POST", "/expire_tokens"))[0] == 204
    assert (await api("POST", "/api/actions", json=MINIMAL)).status == 401


# --------------------------------------------------------------------------- dev and main


async def test_the_dev_fake(http: aiohttp.ClientSession) -> None:
    dev = await start_dev()
    try:
        assert dev.base_url.startswith("http://")
        assert dev.settings["credentials"] == {"token": DEV_API_KEY}
        assert dev.settings["options"]["auth"] == "token"
        ids = dev.settings["options"]["tracked_ids"]
        assert ids[0] == DOCUMENT_ACTION_ID and len(ids) == 3
        assert dev.changing_resources == frozenset({"actions"})
        assert "/_fake/actions/" in dev.hints
        dev.subscribe("http://ignored")
        url = f"{dev.base_url}/api/actions/{DOCUMENT_ACTION_ID}"
        async with http.get(url, headers=bearer(DEV_API_KEY)) as response:
            assert response.status == 200
            action = await response.json()
        # The document's GET example, but for the made-up entity id and timestamps.
        assert action["orgUnit"] == {"id": 12480, "name": "Albama"}
        assert action["priority"] == {"id": "7cc13288-e9f9-46d4-bfc9-443e3ad00c9b", "name": "High"}
        assert action["gpsCoordinates"] == {"x": -30.442976, "y": 136.849222}
        assert action["residualRisk"] == {"consequenceCode": -1, "likelihoodCode": -1}
        assert action["customFields"][0]["value"] == "not so high score"
        assert action["uniqueID"] == "6142"
        async with http.post(
            f"{dev.base_url}/api/token", json={"login": "superadmin", "password": DEV_API_KEY}
        ) as response:
            assert response.status == 200
        fake = dev.fake
        assert isinstance(fake, FakeCmo)
        async with http.patch(
            f"{fake.control_url}/actions/{DOCUMENT_ACTION_ID}", json={"status": 3}
        ) as response:
            assert response.status == 200
        async with http.delete(
            f"{dev.base_url}/api/actions/{ids[2]}", headers=bearer(DEV_API_KEY)
        ) as response:
            assert response.status == 400  # created by an Event Workflow
    finally:
        await dev.fake.stop()


async def test_fake_main_builds_the_fake_the_command_line_asks_for(
    tls: TlsFiles, http: aiohttp.ClientSession
) -> None:
    args = parse_args(
        [
            "--static-token", "tok",
            "--static-token", "other=20519",
            "--login", "superadmin:pw",
            "--jwt-lifetime", "30",
            "--no-mutual",
            "--static-token-mode", "always",
            "--company-time-zone", "Europe/Berlin",
            "--seed",
        ]
    )  # fmt: skip
    assert main_static_tokens(args.static_token) == {"tok": 20518, "other": 20519}
    assert main_logins(args.login) == {"superadmin": "pw"}
    with pytest.raises(SystemExit):
        main_logins(["no-colon"])
    behaviour = main_behaviour(args)
    assert (behaviour.jwt_enabled, behaviour.mutual_enabled) == (True, False)
    assert (behaviour.static_token, behaviour.jwt_lifetime_s) == ("always", 30.0)
    assert behaviour.company_time_zone == "Europe/Berlin"
    assert main_behaviour(parse_args([])) == FakeCmoBehaviour()
    fake = main_build(args)
    assert len(fake.actions()) == 3 and fake.ssl_context is None
    with pytest.raises(SystemExit):
        parse_args(["--client-ca", "ca.pem"])

    key_file = tls.folder / "server.key"
    args = parse_args(
        [
            "--tls-cert",
            str(tls.server_cert_file),
            "--tls-key",
            str(key_file),
            "--client-ca",
            str(tls.ca_file),
            "--no-jwt",
            "--static-token",
            "tok",
        ]
    )
    fake = main_build(args)
    assert fake.ssl_context is not None
    async with fake:
        assert fake.base_url is not None
        async with http.post(
            f"{fake.base_url}/api/actions", json=MINIMAL, ssl=tls.client_context()
        ) as response:
            assert response.status == 200
        with pytest.raises(aiohttp.ClientError):
            async with http.post(
                f"{fake.base_url}/api/actions", json=MINIMAL, ssl=tls.client_context(cert="other")
            ):
                pass


def test_fake_main_prints_the_base_url_and_stops_on_sigterm() -> None:
    command = [sys.executable, "-m", "adapters.cmo.fake_main", "--port", "0"]
    with subprocess.Popen(
        [*command, "--static-token", "secret-token"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    ) as process:
        try:
            assert process.stdout is not None
            line = process.stdout.readline()
            assert line.startswith("fake CMO API at http://127.0.0.1:"), line
            assert "secret-token" not in line
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=10) == 0
        finally:
            if process.poll() is None:
                process.kill()


def test_parse_utc() -> None:
    assert parse_utc("2021-07-22T18:29:59.997Z") is not None
    assert parse_utc("2021-07-22T18:29:59.997+00:00") is not None
    assert parse_utc("2021-07-22T18:29:59.997") is None
    assert parse_utc("2021-07-22") is None
