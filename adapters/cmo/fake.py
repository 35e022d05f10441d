"""A fake Mitratech CMO server on aiohttp, for tests, demos and `workbridge dev`.

It follows CMO's document "Creating Standalone Actions via REST API"
(vendor-docs/003_727b092b2f7c1962.txt):

- `POST [cmo-base-url]/api/actions` creates a standalone action and answers 200 with the new
  id as a JSON string (`"68579fa4-…"`); `PUT …/api/actions/{action-id}` updates it and
  `DELETE` removes it, both answering 200 with an empty body; `GET` answers the action in the
  document's shape (`id`, `uniqueID`, `status: {code, name}`, `orgUnit: {id, name}`, …,
  `customFields: [{customFieldID, customFieldName, customFieldTypeName, value}]`).
- The `…Name` fields (`orgUnitName`, `entityName`, `actionCategoryName`, `actionPriorityName`,
  `customFieldName`) or their `…Id` alternatives, and `responsibleUserName` or
  `responsibleUserId`/`responsibleUserLogin`, resolve against the fake's reference data
  (seeded with the document's examples). An unknown name answers the document's 400:
  `{"message": "Model can't be processed due to following errors", "errors": [{"field":
  "OrgUnitName", "messages": ["System is unable to find object based on the provided name(s).
  (Values: Albama)"]}]}`. A risk is `null` or `{"consequenceCode": -1, "likelihoodCode": -1}`
  for "no risk", kept as sent. `dueDate` is "a timestamp in ISO UTC format" pointing into the
  last second of the due day in the company's time zone.
- A delete refused "due to some restriction unrelated to user permissions" is 400 `{"message":
  "You cannot delete Actions created by Event Workflow"}`; a missing role permission ("Allow
  Create via API", "Allow Edit via API", "Allow Delete via API") is 403.
- Authorization, "like any other CMO Public API": a JWT from `POST [cmo-base-url]/api/token`
  (`{"login", "password"}` -> the token as a JSON string, 20 minutes by default), mutual TLS
  (the fake serves HTTPS with client verification: `start(ssl_context=server_ssl_context(…))`),
  and a static user token (up to 200 characters), which "will be used only if JWT and Mutual
  authentication types are turned off". All three send `Authorization: Bearer …` but mTLS.

Wherever the document is silent the fake has to guess. Every guess that a client could tell
apart lives in ONE place, `FakeCmoBehaviour` just below, each marked `# not in the vendor
document`, so that a test can flip it. The behaviour is read on every request: a test may swap
`fake.behaviour` on a running fake.

Guesses that are not knobs (no client should depend on them): a request is judged in the order
authentication (401) -> role permission (403) -> action id (404) -> body (400); ids are
lower-case UUIDs and matched case-insensitively, as are the paths (ASP.NET routing is);
`uniqueID` counts up from the document's "6142"; unknown body fields are ignored (as model
binding does); a field of the wrong JSON type is a 400 field error "The value is not valid for
<Field>."; `gpsCoordinates` `{"X", "Y", "Z"}` is shown with lower-case keys, as in the
document's GET example; `actionValue` is shown as a float (`25.0`); a GET shows the custom
fields an action has a value for; other status codes than 1 "Pending" are guesses
(`STATUSES`); a method a path does not take answers 405; paths outside the API answer 404.

The shared parts come from the fake kit: `FakeTokenIssuer` and `TokenHandles`
(adapters/fakekit_auth.py) issue and expire the JWTs, `CmoErrors` (adapters/fakekit_errors.py)
is the error envelope, and `PipelineServer` (adapters/fakekit_pipeline.py) runs every request
through faults, the credentials check on arrival, the delay and the log.

Test handles: `fail_next`/`delay_next` (from `FakeServer`; an injected answer comes before
authentication, `{"message": "injected failure (<status>)"}`), the logs `requests` (every API
request with its status and the kinds of authentication that succeeded) and `calls` (accepted
writes), `tokens_issued`, `expire_tokens`, `revoke_token`; users and credentials (`add_user`,
`set_password`, `add_static_token`, `set_permissions`, `map_client_certificate`); reference
data (`org_units`, `entities`, `categories`, `priorities`, `custom_fields`: plain dicts); actions
by hand (`create_action`, `update_action`, `delete_action`, `get_action`, `actions`,
`set_created_by_event_workflow`); and an unauthenticated control API under `/_fake/` (the
kit's `fail_next`, `delay_next`, `requests`, `calls`, `expire_tokens`, and CMO's own actions
and reference data; see `_build_app`).
"""

from __future__ import annotations

import copy
import hashlib
import ssl
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

import msgspec
from aiohttp import web

from adapters.cmo.undocumented import (
    ACTIONS_PATH,
    JWT_DEFAULT_TTL_S,
    STATIC_TOKEN_MAX_CHARS,
    TOKEN_PATH,
)
from adapters.fakekit import json_response, read_json_object, retry_after_headers
from adapters.fakekit_auth import FakeTokenIssuer, TokenHandles
from adapters.fakekit_control import mount_control_routes
from adapters.fakekit_errors import CmoErrors
from adapters.fakekit_logs import CallLogEntry
from adapters.fakekit_logs import RequestLogEntry as BaseRequestLogEntry
from adapters.fakekit_pipeline import Arrival, PipelineServer, injected_reason

Action = dict[str, Any]
"""An action as `GET /api/actions/{id}` shows it (`id`, `uniqueID`, `actionText`, …)."""

Permission = Literal["create", "edit", "delete"]
"""A role permission of the document: "Allow Create/Edit/Delete via API"."""

AuthKind = Literal["jwt", "static", "mtls", "login"]
"""How a request authenticated: a JWT, a static user token, a client certificate, or (at
`/api/token`) a login and password."""

# The document's role permissions, by the fake's short names.
PERMISSION_NAMES: dict[str, str] = {
    "create": "Allow Create via API",
    "edit": "Allow Edit via API",
    "delete": "Allow Delete via API",
}
ALL_PERMISSIONS: frozenset[str] = frozenset(PERMISSION_NAMES)

# Documented: the 400 for a name that matches nothing, and the refused delete.
UNKNOWN_NAME_MESSAGE = (
    "System is unable to find object based on the provided name(s). (Values: {values})"
)
EVENT_WORKFLOW_MESSAGE = "You cannot delete Actions created by Event Workflow"

# Action statuses by code. Documented: 1 "Pending" (a new action, as in the GET example);
# the others are guesses, used only when a test changes a status by its code.
STATUSES: dict[int, str] = {
    1: "Pending",
    2: "In Progress",  # not in the vendor document
    3: "Completed",  # not in the vendor document
    4: "Verified",  # not in the vendor document
    5: "Cancelled",  # not in the vendor document
}

# Documented: the GET example's "uniqueID": "6142"; the fake counts up from it.
FIRST_UNIQUE_ID = 6142

# Documented: the user of the GET example (assignor and responsible user) ...
DOCUMENT_USER_ID = 20518

# --- reference data, seeded from the document's examples --------------------------------------
# Documented names and ids: "Albama" 12480, "Abs new test entity" 3c3e7dd6-…, "Some Entity
# Name" 0656ef56-…, "Act" 2233, "High" 7cc13288-…, "happiness" 3590 ("Text Box"). The other
# names are the document's too ("North America Operations", "Head Office", "ActionEntity",
# "Emergency Response"), their ids are made up. "Medium" and "Low" are guesses.
DEFAULT_ORG_UNITS: dict[int, str] = {12480: "Albama", 12481: "North America Operations"}
DEFAULT_ENTITIES: dict[str, str] = {
    "3c3e7dd6-469c-4ca6-8962-0c0bc0636ed6": "Abs new test entity",
    "0656ef56-f3e2-418b-9f47-1de3c889dd6f": "Some Entity Name",
    "5b0c2f4e-8d1a-4c52-9a57-2f1d7e3b6a10": "Head Office",
    "9e2d4c1b-3a5f-4e6d-8b7c-1f0a2b3c4d5e": "ActionEntity",
}
DEFAULT_CATEGORIES: dict[int, str] = {2233: "Act", 2234: "Emergency Response"}
DEFAULT_PRIORITIES: dict[str, str] = {
    "7cc13288-e9f9-46d4-bfc9-443e3ad00c9b": "High",
    "2f6b8a1c-0d3e-4f5a-9b7c-6d5e4f3a2b1c": "Medium",
    "8a9b0c1d-2e3f-4a5b-8c6d-7e8f9a0b1c2d": "Low",
}
DEFAULT_CUSTOM_FIELDS: dict[int, tuple[str, str]] = {3590: ("happiness", "Text Box")}


class FakeCmoBehaviour(msgspec.Struct, frozen=True, kw_only=True):
    """Every assumption the fake makes where CMO's document is silent, and its switches.

    The defaults are the fake's best guesses; pass another instance to `FakeCmo` (or assign
    `fake.behaviour`) to test a client against a different reading. Fields not marked are
    documented values or settings kept here only so that tests can change them.
    """

    # --- Authorization -----------------------------------------------------------------------
    # Documented switches ("Authentication.Jwt.Enabled", "Authentication.Mutual.Enabled").
    jwt_enabled: bool = True
    mutual_enabled: bool = True
    # Documented: "set the token's expiration time (default 20mins)".
    jwt_lifetime_s: float = JWT_DEFAULT_TTL_S
    # The document's example token carries `exp`; False issues tokens without it (a client
    # must then assume the lifetime, see CmoOptions.jwt_default_ttl_s).
    jwt_with_exp: bool = True
    # When a static user token is accepted. Documented: "used only if JWT and Mutual
    # authentication types are turned off" ("when_others_off"); "always" reads "all the
    # following types … are supported" as all at once; "never" switches it off.
    static_token: Literal["when_others_off", "always", "never"] = "when_others_off"
    # A verified client certificate is the credential: no Authorization header is needed.
    # False: it only admits the connection, a JWT or static token must come with it.
    mtls_alone_suffices: bool = True  # not in the vendor document
    # A verified certificate that no `map_client_certificate` maps to a user: it acts as the
    # fake's `mtls_user_id` ("default_user"), or it authenticates nobody ("refuse"). The
    # document names "client cert mappings" and gives no detail.
    mtls_unmapped_certificate: Literal["default_user", "refuse"] = (  # not in the vendor document
        "default_user"
    )
    # A wrong login or password at /api/token (the document shows only the success).
    token_refused_status: int = 401  # not in the vendor document
    # Body of that refusal: None = empty, else `{"message": …}`.
    token_refused_message: str | None = None  # not in the vendor document
    # /api/token while JWT is turned off.
    token_disabled_status: int = 404  # not in the vendor document
    # No, unknown or expired credentials on an API call (body empty).
    unauthorized_status: int = 401  # not in the vendor document

    # --- Role permissions ---------------------------------------------------------------------
    # The permission a GET needs. The document's 403 text for GET: "lacks the role permission
    # to update Actions" ("edit"); "none" = any authenticated user may read.
    get_permission: Literal["edit", "create", "none"] = "edit"
    # Body of a 403: None = empty (the document shows none), else `{"message": …}`.
    forbidden_message: str | None = None  # not in the vendor document

    # --- Actions -------------------------------------------------------------------------------
    # An unknown action id (the document shows no such answer); the body is empty.
    not_found_status: int = 404  # not in the vendor document
    # Both a name and its id alternative given (e.g. orgUnitName and orgUnitId), or more than
    # one of responsibleUserName/Id/Login: "reject" (400 field error), or take the id ("id_wins",
    # then the login) or the name ("name_wins", then the login).
    name_and_id: Literal["reject", "id_wins", "name_wins"] = "reject"  # not in the vendor document
    # What a create must carry (a 400 "The <Field> field is required." otherwise): the groups
    # "orgUnit", "entity", "actionCategory", "actionPriority", "responsibleUser" (by any of
    # their alternatives) and plain fields ("actionText", "dueDate", …).
    required_on_create: tuple[str, ...] = (  # not in the vendor document
        "orgUnit",
        "actionCategory",
        "actionText",
        "responsibleUser",
        "dueDate",
    )
    # PUT: "partial" changes only the fields sent (custom fields merge by id); "replace" makes
    # the action what the body says (absent fields are cleared, required ones must be there).
    update_mode: Literal["partial", "replace"] = "partial"  # not in the vendor document
    # How names are compared with the reference data.
    name_match: Literal["exact", "case_insensitive"] = "exact"  # not in the vendor document
    # An unknown `…Id` (the document shows only the message for names).
    unknown_id_message: str = (  # not in the vendor document
        "System is unable to find object based on the provided id(s). (Values: {values})"
    )
    # Refuse a dueDate outside the last second of a day in `company_time_zone` (400). The
    # document says it "should point to the end of the desired Action Due Date"; whether CMO
    # refuses other times it does not say. Off: any ISO UTC timestamp is stored as sent.
    due_date_end_of_day: bool = False  # not in the vendor document
    # The company's time zone (Admin / Business Rules), an IANA name. The document's example:
    # "India Standard Time - (UTC+05:30) Chennai, Kolkata, Mumbai, New Delhi".
    company_time_zone: str = "Asia/Kolkata"
    # Fields of the request that the GET shows too; the document's GET example has none of
    # "attachmentRequired", "confidential", "geocortexFeature".
    get_extra_fields: tuple[str, ...] = ()  # not in the vendor document


@dataclass
class CmoUser:
    """A CMO user: what `responsibleUser`/`assignorUser` show, a password for `/api/token`,
    and the role permissions ("create", "edit", "delete") the user's role grants."""

    id: int
    first_name: str
    last_name: str
    login_name: str
    email: str
    # None: the user cannot get a JWT. Kept out of repr so that a failing test shows none.
    password: str | None = field(default=None, repr=False)
    permissions: set[str] = field(default_factory=lambda: set(ALL_PERMISSIONS))

    @property
    def full_name(self) -> str:
        """`responsibleUserName`'s form: "Dan Johnson"."""
        return f"{self.first_name} {self.last_name}"

    def render(self) -> dict[str, Any]:
        """The document's user object: `{id, firstName, lastName, loginName, email}`."""
        return {
            "id": self.id,
            "firstName": self.first_name,
            "lastName": self.last_name,
            "loginName": self.login_name,
            "email": self.email,
        }


def default_users() -> list[CmoUser]:
    """The document's users: 20518 "Dan Johnston" (`superadmin`, the GET example) and "Dan
    Johnson" (the request examples' `responsibleUserName`; its id, login and email are made
    up: the document spells the name both ways)."""
    return [
        CmoUser(DOCUMENT_USER_ID, "Dan", "Johnston", "superadmin", "pavel.pargachev@mitratech.com"),
        CmoUser(20519, "Dan", "Johnson", "djohnson", "dan.johnson@example.com"),
    ]


class RequestLogEntry(BaseRequestLogEntry, kw_only=True):
    """One API request with its status; `auth` lists the kinds of authentication that
    succeeded (empty when none did), `user_id` whom the request acted as, `injected` whether
    `fail_next` answered it. No credential is kept."""

    auth: tuple[str, ...]
    user_id: int | None
    injected: bool = False


class RecordedCall(CallLogEntry, kw_only=True):
    """One accepted write through the API, with the body as sent (None for a delete)."""

    action: Literal["create", "update", "delete"]
    action_id: str
    user_id: int
    auth: tuple[str, ...]


class CmoValidationError(ValueError):
    """A hand-made action (`create_action`) that CMO would refuse: field -> messages."""

    def __init__(self, errors: Mapping[str, Sequence[str]]) -> None:
        super().__init__(f"invalid action: {dict(errors)}")
        self.errors = {key: list(value) for key, value in errors.items()}


def certificate_thumbprint(der: bytes) -> str:
    """A certificate's thumbprint as Windows (and CMO's web.config) shows it: the SHA-1 of
    its DER form, upper-case hex."""
    return hashlib.sha1(der, usedforsecurity=False).hexdigest().upper()


def server_ssl_context(
    cert_file: str,
    key_file: str | None = None,
    *,
    client_ca_file: str | None = None,
    require_client_cert: bool = True,
    key_password: str | None = None,
) -> ssl.SSLContext:
    """An SSL context for `FakeCmo.start(ssl_context=…)`: HTTPS with this certificate.

    With `client_ca_file` it verifies client certificates against that CA only (not the
    system's): `require_client_cert` makes it mutual TLS (a client without a certificate
    from that CA fails the handshake), else a certificate is optional.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file, password=lambda: key_password or "")
    if client_ca_file is not None:
        context.load_verify_locations(cafile=client_ca_file)
        context.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL
    return context


def format_created(moment: datetime) -> str:
    """`createdDateTime`'s form: UTC with milliseconds, `2021-06-29T06:57:37.233Z`."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_utc(value: str) -> datetime | None:
    """A timestamp "in ISO UTC format" (`…Z` or `+00:00`), or None.

    A time without an offset, or with another one, is not UTC: refused.
    """
    if "T" not in value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    offset = parsed.utcoffset()
    if offset is None or offset.total_seconds() != 0:
        return None
    return parsed


def _pascal(name: str) -> str:
    """A body field as the 400 names it: `orgUnitName` -> `OrgUnitName` (the document's)."""
    return name[:1].upper() + name[1:]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class _Ref:
    """A reference field group: `orgUnitName` or `orgUnitId`, shown as `orgUnit: {id, name}`."""

    group: str
    shown_as: str
    name_field: str
    id_field: str
    table: str
    int_ids: bool


REFS = (
    _Ref("orgUnit", "orgUnit", "orgUnitName", "orgUnitId", "org_units", True),
    _Ref("entity", "entity", "entityName", "entityId", "entities", False),
    _Ref(
        "actionCategory", "category", "actionCategoryName", "actionCategoryId", "categories", True
    ),
    _Ref(
        "actionPriority", "priority", "actionPriorityName", "actionPriorityId", "priorities", False
    ),
)

# The request's other fields and how each is checked (see `_convert`).
PLAIN_FIELDS: dict[str, str] = {
    "actionText": "string",
    "guidanceText": "string",
    "carbonCopyEmail": "string",
    "dueDate": "due",
    "hoursTaken": "number",
    "actionValue": "number",
    "progress": "number",
    "gpsCoordinates": "gps",
    "geocortexFeature": "any",
    "residualRisk": "risk",
    "inherentRisk": "risk",
    "attachmentRequired": "bool",
    "confidential": "bool",
}

# Values of fields an action is created without (None for the others).
FIELD_DEFAULTS: dict[str, Any] = {"attachmentRequired": False, "confidential": False}

# Request fields the document's GET example does not show (see `get_extra_fields`).
HIDDEN_FIELDS = ("geocortexFeature", "attachmentRequired", "confidential")

# What PUT "replace" keeps: the action's identity and history.
SYSTEM_FIELDS = ("id", "uniqueID", "status", "assignorUser", "createdDateTime", "verifications")

_BAD_JSON = object()


@dataclass(frozen=True)
class _Who:
    user_id: int
    auth: tuple[str, ...]


@dataclass
class _Outcome:
    response: web.Response
    who: _Who | None = None


@dataclass
class _Seen:
    """A request's credentials: as judged on arrival, and whom its answer acted as (logged)."""

    credentials: _Who | None
    acted: _Who | None = None


class FakeCmo(TokenHandles, PipelineServer[None, _Seen]):
    """A fake Mitratech CMO server; see the module docstring and `FakeCmoBehaviour`.

    `base_url` (after `start`) is the cmo-base-url `http://host:port` (or `https://…` with an
    SSL context); the API lives at `/api/actions`, `/api/actions/{id}` and `/api/token`, the
    control API at `/_fake/` on the same server (so under mutual TLS it needs the client
    certificate too).
    """

    _server_name = "FakeCmo"
    _base_path = ""

    def __init__(
        self,
        *,
        behaviour: FakeCmoBehaviour | None = None,
        users: Sequence[CmoUser] | None = None,
        logins: Mapping[str, str] | None = None,
        static_tokens: Mapping[str, int] | None = None,
        mtls_user_id: int = DOCUMENT_USER_ID,
        seed_reference: bool = True,
        clock: Callable[[], datetime] | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """Create the fake (not yet listening; call `start` or use `async with`).

        `users` default to the document's (`default_users`); `logins` give passwords to
        users by login name (login -> password) for `/api/token`; `static_tokens` map static
        user tokens to user ids; `mtls_user_id` is whom a verified client certificate without
        a mapping acts as. `seed_reference=False` starts with no org units, entities,
        categories, priorities or custom fields. `clock` gives `createdDateTime` and the time
        JWTs expire by. `ssl_context` (see `server_ssl_context`) makes `start` serve HTTPS.
        """
        super().__init__()
        self.behaviour = behaviour or FakeCmoBehaviour()
        ZoneInfo(self.behaviour.company_time_zone)  # an unknown zone fails here, not later
        self._clock: Callable[[], datetime] = clock or (lambda: datetime.now(UTC))
        self.ssl_context = ssl_context
        self._issuer = FakeTokenIssuer(
            lifetime_s=self.behaviour.jwt_lifetime_s,
            with_exp=self.behaviour.jwt_with_exp,
            clock=lambda: self._aware_now().timestamp(),
        )
        self.users: dict[int, CmoUser] = {}
        for user in users if users is not None else default_users():
            self.add_user(user)
        self.mtls_user_id = mtls_user_id
        self._static_tokens: dict[str, int] = {}
        self._cert_users: dict[str, int] = {}
        seed = seed_reference
        self.org_units: dict[int, str] = dict(DEFAULT_ORG_UNITS) if seed else {}
        self.entities: dict[str, str] = dict(DEFAULT_ENTITIES) if seed else {}
        self.categories: dict[int, str] = dict(DEFAULT_CATEGORIES) if seed else {}
        self.priorities: dict[str, str] = dict(DEFAULT_PRIORITIES) if seed else {}
        self.custom_fields: dict[int, tuple[str, str]] = dict(DEFAULT_CUSTOM_FIELDS) if seed else {}
        self._actions: dict[str, Action] = {}
        self._event_workflow: set[str] = set()
        self._next_unique_id = FIRST_UNIQUE_ID
        self.requests: list[RequestLogEntry] = []
        self.calls: list[RecordedCall] = []
        for login, password in (logins or {}).items():
            self.set_password(login, password)
        for token, user_id in (static_tokens or {}).items():
            self.add_static_token(token, user_id)

    # ------------------------------------------------------------------ lifecycle

    async def start(
        self, host: str = "127.0.0.1", port: int = 0, ssl_context: ssl.SSLContext | None = None
    ) -> str:
        """Listen on host:port (0 = any free port) and return the cmo-base-url.

        `ssl_context` (or the constructor's) serves HTTPS; see `server_ssl_context`.
        """
        if ssl_context is not None:
            self.ssl_context = ssl_context
        return await super().start(host, port)

    def _build_app(self) -> web.Application:
        app = web.Application()
        mount_control_routes(app, self, tokens=self._issuer)
        app.router.add_get("/_fake/actions", self._ctl_actions)
        app.router.add_post("/_fake/actions", self._ctl_create)
        app.router.add_get("/_fake/actions/{id}", self._ctl_get)
        app.router.add_route("PATCH", "/_fake/actions/{id}", self._ctl_update)
        app.router.add_delete("/_fake/actions/{id}", self._ctl_delete)
        app.router.add_get("/_fake/reference", self._ctl_reference)
        app.router.add_route("*", "/{tail:(?!_fake/).*}", self._api)
        return app

    # ------------------------------------------------------------------ test handles: users

    def add_user(self, user: CmoUser) -> None:
        """Add (or replace) a user."""
        self.users[user.id] = user

    def set_password(self, login: str, password: str) -> None:
        """Let the user with `login` get JWTs with `password`. KeyError if no such user."""
        self._user_by_login(login).password = password

    def set_permissions(
        self,
        user_id: int,
        *,
        create: bool | None = None,
        edit: bool | None = None,
        delete: bool | None = None,
    ) -> None:
        """Grant (True) or take (False) a user's role permissions; None leaves one as is."""
        permissions = self.users[user_id].permissions
        for name, value in (("create", create), ("edit", edit), ("delete", delete)):
            if value is True:
                permissions.add(name)
            elif value is False:
                permissions.discard(name)

    def add_static_token(self, token: str, user_id: int) -> None:
        """Set a user's static API token (the document: "any string up to 200 characters").

        Several tokens may map to different users, each with its user's permissions.
        """
        if not token or len(token) > STATIC_TOKEN_MAX_CHARS:
            raise ValueError(f"a static token has 1 to {STATIC_TOKEN_MAX_CHARS} characters")
        if user_id not in self.users:
            raise KeyError(f"no user {user_id}")
        self._static_tokens[token] = user_id

    def map_client_certificate(self, thumbprint: str, user_id: int) -> None:
        """Map a client certificate (by `certificate_thumbprint`) to a user."""
        if user_id not in self.users:
            raise KeyError(f"no user {user_id}")
        self._cert_users[thumbprint.replace(":", "").upper()] = user_id

    # ------------------------------------------------------------------ test handles: actions

    def actions(self) -> list[Action]:
        """Every action as GET shows it, in the order they were created."""
        return [self._render(action) for action in self._actions.values()]

    def get_action(self, action_id: str) -> Action | None:
        """One action as GET shows it, or None."""
        action = self._actions.get(action_id.lower())
        return self._render(action) if action is not None else None

    def create_action(
        self,
        fields: Mapping[str, Any],
        *,
        action_id: str | None = None,
        assignor_user_id: int = DOCUMENT_USER_ID,
        created_by_event_workflow: bool = False,
    ) -> str:
        """Create an action as a CMO user would, from fields in the API's request shape
        (names or ids resolved as for `POST /api/actions`, no permission needed); its id.

        `action_id` picks the id (e.g. the document's `14b44c76-…`); `created_by_event_workflow`
        makes it one that the API refuses to delete. CmoValidationError if CMO would refuse
        the fields.
        """
        changes, errors = self._changes(fields, full=True, current=None)
        if errors:
            raise CmoValidationError(errors)
        new_id = (action_id or str(uuid.uuid4())).lower()
        if new_id in self._actions:
            raise ValueError(f"action {new_id} exists")
        self._insert(new_id, self.users[assignor_user_id], changes)
        if created_by_event_workflow:
            self._event_workflow.add(new_id)
        return new_id

    def update_action(self, action_id: str, fields: Mapping[str, Any]) -> Action:
        """Change an action as a CMO user would, in GET's shape: each key is set as given
        (`{"progress": 100, "orgUnit": {"id": 1, "name": "x"}}`), with no check, so that a
        test can build any state. `status` may be a code (`3`, named from `STATUSES`) or
        `{"code", "name"}`. `id` cannot change. The action as GET shows it; KeyError if none.
        """
        action = self._actions[action_id.lower()]
        for key, value in fields.items():
            if key == "id":
                continue
            if key == "status" and _is_int(value):
                action[key] = {"code": value, "name": STATUSES.get(value, str(value))}
            else:
                action[key] = copy.deepcopy(value)
        return self._render(action)

    def delete_action(self, action_id: str) -> None:
        """Delete an action as a CMO user would (Event Workflow or not). KeyError if none."""
        del self._actions[action_id.lower()]
        self._event_workflow.discard(action_id.lower())

    def set_created_by_event_workflow(self, action_id: str, value: bool = True) -> None:
        """Mark an action as created by an Event Workflow (the API refuses to delete it)."""
        key = action_id.lower()
        if key not in self._actions:
            raise KeyError(action_id)
        if value:
            self._event_workflow.add(key)
        else:
            self._event_workflow.discard(key)

    # ------------------------------------------------------------------ store

    def _aware_now(self) -> datetime:
        moment = self._clock()
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment

    def _user_by_login(self, login: str) -> CmoUser:
        for user in self.users.values():
            if user.login_name == login:
                return user
        raise KeyError(f"no user with login {login!r}")

    def _insert(self, action_id: str, assignor: CmoUser, changes: Mapping[str, Any]) -> Action:
        unique_id = self._next_unique_id
        self._next_unique_id += 1
        action = _blank_action(
            {
                "id": action_id,
                "uniqueID": str(unique_id),
                "status": {"code": 1, "name": STATUSES[1]},
                "assignorUser": assignor.render(),
                "createdDateTime": format_created(self._aware_now()),
                "verifications": [],
            }
        )
        action.update(copy.deepcopy(dict(changes)))
        self._actions[action_id] = action
        return action

    def _render(self, action: Action) -> Action:
        shown = copy.deepcopy(action)
        for name in HIDDEN_FIELDS:
            if name not in self.behaviour.get_extra_fields:
                shown.pop(name, None)
        return shown

    # ------------------------------------------------------------------ body: names and ids

    def _same_name(self, left: str, right: str) -> bool:
        if self.behaviour.name_match == "case_insensitive":
            return left.casefold() == right.casefold()
        return left == right

    def _pick(self, body: Mapping[str, Any], by_preference: Sequence[str]) -> tuple[str, ...]:
        """The alternatives given (not null), in `by_preference` order."""
        return tuple(name for name in by_preference if body.get(name) is not None)

    def _ref_change(
        self,
        ref: _Ref,
        body: Mapping[str, Any],
        *,
        full: bool,
        changes: dict[str, Any],
        errors: dict[str, list[str]],
    ) -> None:
        behaviour = self.behaviour
        name_field, id_field = ref.name_field, ref.id_field
        preference = (
            (name_field, id_field)
            if behaviour.name_and_id == "name_wins"
            else (id_field, name_field)
        )
        given = self._pick(body, preference)
        mentioned = name_field in body or id_field in body
        if not given:
            if ref.group in behaviour.required_on_create and (full or mentioned):
                _fail(errors, _pascal(name_field), f"The {_pascal(name_field)} field is required.")
            elif full or mentioned:
                changes[ref.shown_as] = None
            return
        if len(given) > 1 and behaviour.name_and_id == "reject":
            _fail(
                errors,
                _pascal(name_field),
                f"Only one of {_pascal(name_field)} and {_pascal(id_field)} may be given.",
            )
            return
        chosen = given[0]
        value = body[chosen]
        table: Mapping[Any, str] = getattr(self, ref.table)
        if chosen == name_field:
            if not isinstance(value, str):
                _fail(errors, _pascal(chosen), f"The value is not valid for {_pascal(chosen)}.")
                return
            found = next((k for k, v in table.items() if self._same_name(v, value)), None)
            if found is None:
                _fail(errors, _pascal(chosen), UNKNOWN_NAME_MESSAGE.format(values=value))
                return
            changes[ref.shown_as] = {"id": found, "name": table[found]}
            return
        key: Any = None
        if ref.int_ids:
            valid = _is_int(value)
            key = value if value in table else None
        else:
            # A GUID, compared as .NET does: case-insensitively.
            valid = isinstance(value, str)
            if valid:
                key = next((k for k in table if str(k).lower() == value.lower()), None)
        if not valid:
            _fail(errors, _pascal(chosen), f"The value is not valid for {_pascal(chosen)}.")
        elif key is None:
            _fail(errors, _pascal(chosen), behaviour.unknown_id_message.format(values=value))
        else:
            changes[ref.shown_as] = {"id": key, "name": table[key]}

    def _user_change(
        self,
        body: Mapping[str, Any],
        *,
        full: bool,
        changes: dict[str, Any],
        errors: dict[str, list[str]],
    ) -> None:
        behaviour = self.behaviour
        names = ("responsibleUserName", "responsibleUserLogin", "responsibleUserId")
        preference = names if behaviour.name_and_id == "name_wins" else names[::-1]
        given = self._pick(body, preference)
        mentioned = any(name in body for name in names)
        field_name = _pascal(names[0])
        if not given:
            if "responsibleUser" in behaviour.required_on_create and (full or mentioned):
                _fail(errors, field_name, f"The {field_name} field is required.")
            elif full or mentioned:
                changes["responsibleUser"] = None
            return
        if len(given) > 1 and behaviour.name_and_id == "reject":
            listed = ", ".join(_pascal(name) for name in names)
            _fail(errors, field_name, f"Only one of {listed} may be given.")
            return
        chosen = given[0]
        value = body[chosen]
        user: CmoUser | None = None
        if chosen == "responsibleUserId":
            if not _is_int(value):
                _fail(errors, _pascal(chosen), f"The value is not valid for {_pascal(chosen)}.")
                return
            user = self.users.get(value)
            if user is None:
                _fail(errors, _pascal(chosen), behaviour.unknown_id_message.format(values=value))
                return
        else:
            if not isinstance(value, str):
                _fail(errors, _pascal(chosen), f"The value is not valid for {_pascal(chosen)}.")
                return
            by_login = chosen == "responsibleUserLogin"
            user = next(
                (
                    candidate
                    for candidate in self.users.values()
                    if self._same_name(
                        candidate.login_name if by_login else candidate.full_name, value
                    )
                ),
                None,
            )
            if user is None:
                _fail(errors, _pascal(chosen), UNKNOWN_NAME_MESSAGE.format(values=value))
                return
        changes["responsibleUser"] = user.render()

    def _custom_fields_change(
        self,
        body: Mapping[str, Any],
        *,
        full: bool,
        current: Action | None,
        changes: dict[str, Any],
        errors: dict[str, list[str]],
    ) -> None:
        if "customFields" not in body:
            if full:
                changes["customFields"] = []
            return
        items = body["customFields"]
        if items is None:
            changes["customFields"] = []
            return
        if not isinstance(items, list):
            _fail(errors, "CustomFields", "The value is not valid for CustomFields.")
            return
        behaviour = self.behaviour
        resolved: list[dict[str, Any]] = []
        for item in items:
            if not isinstance(item, dict):
                _fail(errors, "CustomFields", "The value is not valid for CustomFields.")
                continue
            preference = (
                ("customFieldName", "customFieldId")
                if behaviour.name_and_id == "name_wins"
                else ("customFieldId", "customFieldName")
            )
            given = self._pick(item, preference)
            if not given:
                _fail(errors, "CustomFieldName", "The CustomFieldName field is required.")
                continue
            if len(given) > 1 and behaviour.name_and_id == "reject":
                _fail(
                    errors,
                    "CustomFieldName",
                    "Only one of CustomFieldName and CustomFieldId may be given.",
                )
                continue
            chosen, value = given[0], item[given[0]]
            found: int | None = None
            if chosen == "customFieldName":
                if isinstance(value, str):
                    found = next(
                        (
                            k
                            for k, (n, _) in self.custom_fields.items()
                            if self._same_name(n, value)
                        ),
                        None,
                    )
                message = UNKNOWN_NAME_MESSAGE.format(values=value)
            else:
                found = value if _is_int(value) and value in self.custom_fields else None
                message = behaviour.unknown_id_message.format(values=value)
            if found is None:
                _fail(errors, _pascal(chosen), message)
                continue
            name, type_name = self.custom_fields[found]
            resolved.append(
                {
                    "customFieldID": found,
                    "customFieldName": name,
                    "customFieldTypeName": type_name,
                    "value": copy.deepcopy(item.get("value")),
                }
            )
        if full or current is None:
            changes["customFields"] = resolved
            return
        # "partial": the fields sent replace theirs, the others keep their values.
        merged = {entry["customFieldID"]: entry for entry in current.get("customFields") or []}
        merged.update({entry["customFieldID"]: entry for entry in resolved})
        changes["customFields"] = list(merged.values())

    # ------------------------------------------------------------------ body: plain fields

    def _convert(self, name: str, kind: str, value: Any) -> tuple[Any, str | None]:
        """(stored value, None) or (None, the field's error message)."""
        invalid = f"The value is not valid for {_pascal(name)}."
        if kind == "string":
            return (value, None) if isinstance(value, str) else (None, invalid)
        if kind == "bool":
            return (value, None) if isinstance(value, bool) else (None, invalid)
        if kind == "number":
            if not _is_number(value):
                return None, invalid
            # The document's GET shows `"actionValue": 25.0` for a sent 25.
            return (float(value) if name == "actionValue" else value), None
        if kind == "risk":
            if (
                isinstance(value, dict)
                and _is_int(value.get("consequenceCode"))
                and _is_int(value.get("likelihoodCode"))
            ):
                return copy.deepcopy(value), None
            return None, invalid
        if kind == "gps":
            if not isinstance(value, dict) or not all(_is_number(v) for v in value.values()):
                return None, invalid
            lowered = {str(key).lower(): number for key, number in value.items()}
            if not {"x", "y"} <= lowered.keys():
                return None, invalid
            return lowered, None
        if kind == "due":
            return self._due_date(value)
        return copy.deepcopy(value), None

    def _due_date(self, value: Any) -> tuple[Any, str | None]:
        if not isinstance(value, str):
            return None, "The value is not valid for DueDate."
        parsed = parse_utc(value)
        if parsed is None:
            return None, "DueDate must be a timestamp in ISO UTC format."
        behaviour = self.behaviour
        if behaviour.due_date_end_of_day:
            local = parsed.astimezone(ZoneInfo(behaviour.company_time_zone))
            if (local.hour, local.minute, local.second) != (23, 59, 59):
                return None, (
                    "DueDate must point to the last second of a day in the company's time zone "
                    f"({behaviour.company_time_zone})."
                )
        # Stored as sent: a client reads back exactly its own value.
        return value, None

    def _changes(
        self, body: Mapping[str, Any], *, full: bool, current: Action | None
    ) -> tuple[dict[str, Any], dict[str, list[str]]]:
        """What a request body changes (GET-shape keys), and the errors by field.

        `full`: a create or a "replace" update, where absent fields take their defaults and
        the required ones must be there; else only the fields sent change.
        """
        changes: dict[str, Any] = {}
        errors: dict[str, list[str]] = {}
        for ref in REFS:
            self._ref_change(ref, body, full=full, changes=changes, errors=errors)
        self._user_change(body, full=full, changes=changes, errors=errors)
        required = self.behaviour.required_on_create
        for name, kind in PLAIN_FIELDS.items():
            value = body.get(name)
            if value is None:
                if name in required and (full or name in body):
                    _fail(errors, _pascal(name), f"The {_pascal(name)} field is required.")
                elif full or name in body:
                    changes[name] = FIELD_DEFAULTS.get(name)
                continue
            converted, message = self._convert(name, kind, value)
            if message is not None:
                _fail(errors, _pascal(name), message)
            else:
                changes[name] = converted
        self._custom_fields_change(body, full=full, current=current, changes=changes, errors=errors)
        return changes, errors

    # ------------------------------------------------------------------ API: transport

    def _errors(self) -> CmoErrors:
        behaviour = self.behaviour
        return CmoErrors(
            forbidden_message=behaviour.forbidden_message,
            unauthorized_status=behaviour.unauthorized_status,
        )

    def _static_tokens_accepted(self) -> bool:
        behaviour = self.behaviour
        if behaviour.static_token == "when_others_off":
            return not behaviour.jwt_enabled and not behaviour.mutual_enabled
        return behaviour.static_token == "always"

    @staticmethod
    def _peer_thumbprint(request: web.Request) -> str | None:
        """The thumbprint of the verified client certificate of the connection, if any."""
        transport = request.transport
        if transport is None:
            return None
        ssl_object = transport.get_extra_info("ssl_object")
        if not isinstance(ssl_object, ssl.SSLObject | ssl.SSLSocket):
            return None
        der = ssl_object.getpeercert(binary_form=True)
        return certificate_thumbprint(der) if der else None

    def _bearer_user(self, token: str) -> _Who | None:
        if self.behaviour.jwt_enabled:
            subject = self._issuer.subject(token)
            if subject is not None and int(subject) in self.users:
                return _Who(int(subject), ("jwt",))
        if self._static_tokens_accepted():
            user_id = self._static_tokens.get(token)
            if user_id is not None and user_id in self.users:
                return _Who(user_id, ("static",))
        return None

    def _authenticate(self, request: web.Request) -> _Who | None:
        """Whom a request acts as, or None (401)."""
        behaviour = self.behaviour
        cert_user: int | None = None
        if behaviour.mutual_enabled:
            thumbprint = self._peer_thumbprint(request)
            if thumbprint is not None:
                cert_user = self._cert_users.get(thumbprint)
                if cert_user is None and behaviour.mtls_unmapped_certificate == "default_user":
                    cert_user = self.mtls_user_id
        header = request.headers.get("Authorization")
        bearer: _Who | None = None
        if header is not None:
            scheme, _, token = header.strip().partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                bearer = self._bearer_user(token.strip())
            # A credential sent and wrong is refused, not silently replaced by the certificate.
            if bearer is None:
                return None
        if bearer is not None:
            return _Who(bearer.user_id, (("mtls",) if cert_user is not None else ()) + bearer.auth)
        if cert_user is not None and behaviour.mtls_alone_suffices and cert_user in self.users:
            return _Who(cert_user, ("mtls",))
        return None

    def _arrive(self, request: web.Request, at: float) -> _Seen:
        # Credentials are judged on arrival: a token that expires during a delay still counts.
        return _Seen(self._authenticate(request))

    def _injected(self, status: int, retry_after: float | None) -> web.Response:
        return json_response(
            {"message": injected_reason(status)}, status, retry_after_headers(retry_after)
        )

    async def _dispatch(self, request: web.Request, arrival: Arrival[_Seen]) -> web.Response:
        seen = arrival.state
        outcome = self._route(request.method, request.path, arrival.body, seen.credentials)
        seen.acted = outcome.who
        return outcome.response

    def _log_request(
        self, request: web.Request, arrival: Arrival[_Seen], response: web.Response
    ) -> None:
        acted = arrival.state.acted
        self.requests.append(
            RequestLogEntry(
                method=request.method,
                path=request.path,
                status=response.status,
                auth=acted.auth if acted else (),
                user_id=acted.user_id if acted else None,
                at=arrival.at,
                injected=arrival.injected is not None,
            )
        )

    # ------------------------------------------------------------------ API: routing

    def _route(self, method: str, path: str, raw: bytes, who: _Who | None) -> _Outcome:
        normalized = path.rstrip("/").lower()
        if normalized == TOKEN_PATH:
            if method != "POST":
                return _Outcome(web.Response(status=405, headers={"Allow": "POST"}))
            return self._token(raw)
        if normalized == ACTIONS_PATH:
            if method != "POST":
                return _Outcome(web.Response(status=405, headers={"Allow": "POST"}))
            return self._guarded(who, "create", lambda user: self._create(path, raw, user, who))
        prefix = ACTIONS_PATH + "/"
        if normalized.startswith(prefix) and "/" not in normalized.removeprefix(prefix):
            action_id = normalized.removeprefix(prefix)
            if method == "GET":
                needed = self.behaviour.get_permission
                return self._guarded(
                    who, None if needed == "none" else needed, lambda _: self._read(action_id)
                )
            if method == "PUT":
                return self._guarded(
                    who, "edit", lambda user: self._update(path, action_id, raw, user, who)
                )
            if method == "DELETE":
                return self._guarded(
                    who, "delete", lambda user: self._delete(path, action_id, user, who)
                )
            return _Outcome(web.Response(status=405, headers={"Allow": "GET, PUT, DELETE"}))
        return _Outcome(web.Response(status=404))

    def _guarded(
        self,
        who: _Who | None,
        permission: str | None,
        handler: Callable[[CmoUser], web.Response],
    ) -> _Outcome:
        """401 without credentials, 403 without the role permission, else the handler."""
        if who is None:
            return _Outcome(self._errors().unauthorized())
        user = self.users[who.user_id]
        if permission is not None and permission not in user.permissions:
            return _Outcome(self._errors().forbidden(), who)
        return _Outcome(handler(user), who)

    def _token(self, raw: bytes) -> _Outcome:
        behaviour = self.behaviour
        if not behaviour.jwt_enabled:
            return _Outcome(web.Response(status=behaviour.token_disabled_status))
        body = _decode(raw)
        login = body.get("login") if isinstance(body, dict) else None
        password = body.get("password") if isinstance(body, dict) else None
        user = next(
            (
                candidate
                for candidate in self.users.values()
                if isinstance(login, str)
                and candidate.login_name == login
                and candidate.password is not None
                and candidate.password == password
            ),
            None,
        )
        if user is None:
            # A body without login or password is as wrong as a wrong password.
            status = behaviour.token_refused_status
            if behaviour.token_refused_message is None:
                return _Outcome(web.Response(status=status))
            return _Outcome(json_response({"message": behaviour.token_refused_message}, status))
        # The lifetime and `exp` are read per issue, so that a test can change them live.
        self._issuer.lifetime_s = behaviour.jwt_lifetime_s
        self._issuer.with_exp = behaviour.jwt_with_exp
        token = self._issuer.issue(str(user.id))
        return _Outcome(json_response(token), _Who(user.id, ("login",)))

    def _not_found(self) -> web.Response:
        return web.Response(status=self.behaviour.not_found_status)

    def _body_or_error(self, raw: bytes) -> dict[str, Any] | web.Response:
        body = _decode(raw)
        if not isinstance(body, dict):
            # ASP.NET's model binding names the whole body with an empty field.
            return self._errors().validation({"": ["The request body must be a JSON object."]})
        return body

    def _create(self, path: str, raw: bytes, user: CmoUser, who: _Who | None) -> web.Response:
        body = self._body_or_error(raw)
        if isinstance(body, web.Response):
            return body
        changes, errors = self._changes(body, full=True, current=None)
        if errors:
            return self._errors().validation(errors)
        action_id = str(uuid.uuid4())
        self._insert(action_id, user, changes)
        self._record("POST", path, "create", action_id, body, user, who)
        # Documented: "the created Action ID JSON string in the response body".
        return json_response(action_id)

    def _read(self, action_id: str) -> web.Response:
        action = self._actions.get(action_id)
        if action is None:
            return self._not_found()
        return json_response(self._render(action))

    def _update(
        self, path: str, action_id: str, raw: bytes, user: CmoUser, who: _Who | None
    ) -> web.Response:
        action = self._actions.get(action_id)
        if action is None:
            return self._not_found()
        body = self._body_or_error(raw)
        if isinstance(body, web.Response):
            return body
        replace = self.behaviour.update_mode == "replace"
        changes, errors = self._changes(body, full=replace, current=action)
        if errors:
            return self._errors().validation(errors)
        if replace:
            kept = {name: action.get(name) for name in SYSTEM_FIELDS}
            action.clear()
            action.update(_blank_action(kept))
        action.update(changes)
        self._record("PUT", path, "update", action_id, body, user, who)
        return web.Response(status=200)

    def _delete(self, path: str, action_id: str, user: CmoUser, who: _Who | None) -> web.Response:
        if action_id not in self._actions:
            return self._not_found()
        if action_id in self._event_workflow:
            return self._errors().refused(EVENT_WORKFLOW_MESSAGE)
        del self._actions[action_id]
        self._record("DELETE", path, "delete", action_id, None, user, who)
        return web.Response(status=200)

    def _record(
        self,
        method: str,
        path: str,
        action: Literal["create", "update", "delete"],
        action_id: str,
        body: Any,
        user: CmoUser,
        who: _Who | None,
    ) -> None:
        self.calls.append(
            RecordedCall(
                method=method,
                path=path,
                action=action,
                action_id=action_id,
                json=copy.deepcopy(body),
                user_id=user.id,
                auth=who.auth if who else (),
            )
        )

    # ------------------------------------------------------------------ control API (/_fake)

    async def _ctl_actions(self, request: web.Request) -> web.Response:
        """GET /_fake/actions: every action as GET shows it."""
        return json_response(self.actions())

    async def _ctl_get(self, request: web.Request) -> web.Response:
        """GET /_fake/actions/<id>: one action."""
        action = self.get_action(request.match_info["id"])
        if action is None:
            raise web.HTTPNotFound(text="no such action")
        return json_response(action)

    async def _ctl_create(self, request: web.Request) -> web.Response:
        """POST /_fake/actions {request-shape fields, "id"?, "createdByEventWorkflow"?}:
        create as a CMO user would; answers {"id"}, or CMO's 400 body."""
        fields = await read_json_object(request)
        event_workflow = bool(fields.pop("createdByEventWorkflow", False))
        action_id = fields.pop("id", None)
        try:
            created = self.create_action(
                fields,
                action_id=action_id if isinstance(action_id, str) else None,
                created_by_event_workflow=event_workflow,
            )
        except CmoValidationError as error:
            return self._errors().validation(error.errors)
        except ValueError as error:
            raise web.HTTPConflict(text=str(error)) from None
        return json_response({"id": created})

    async def _ctl_update(self, request: web.Request) -> web.Response:
        """PATCH /_fake/actions/<id> {GET-shape fields, "status": 3 allowed}: change as a CMO
        user would; answers the action."""
        fields = await read_json_object(request)
        try:
            return json_response(self.update_action(request.match_info["id"], fields))
        except KeyError:
            raise web.HTTPNotFound(text="no such action") from None

    async def _ctl_delete(self, request: web.Request) -> web.Response:
        """DELETE /_fake/actions/<id>: delete as a CMO user would."""
        try:
            self.delete_action(request.match_info["id"])
        except KeyError:
            raise web.HTTPNotFound(text="no such action") from None
        return web.Response(status=204)

    async def _ctl_reference(self, request: web.Request) -> web.Response:
        """GET /_fake/reference: the names and ids a request body may use."""
        return json_response(
            {
                "orgUnits": [{"id": k, "name": v} for k, v in self.org_units.items()],
                "entities": [{"id": k, "name": v} for k, v in self.entities.items()],
                "categories": [{"id": k, "name": v} for k, v in self.categories.items()],
                "priorities": [{"id": k, "name": v} for k, v in self.priorities.items()],
                "customFields": [
                    {"id": k, "name": name, "typeName": type_name}
                    for k, (name, type_name) in self.custom_fields.items()
                ],
                "users": [user.render() for user in self.users.values()],
            }
        )


def _blank_action(system: Mapping[str, Any]) -> Action:
    """An action with the `SYSTEM_FIELDS` given and every other field unset, its keys in the
    order of the document's GET example (the request-only fields last)."""
    return {
        "id": system["id"],
        "uniqueID": system["uniqueID"],
        "actionText": None,
        "status": system["status"],
        "guidanceText": None,
        "carbonCopyEmail": None,
        "orgUnit": None,
        "entity": None,
        "category": None,
        "priority": None,
        "assignorUser": system["assignorUser"],
        "responsibleUser": None,
        "createdDateTime": system["createdDateTime"],
        "dueDate": None,
        "verifications": system["verifications"],
        "gpsCoordinates": None,
        "actionValue": None,
        "hoursTaken": None,
        "progress": None,
        "residualRisk": None,
        "inherentRisk": None,
        "customFields": [],
        "geocortexFeature": None,
        **FIELD_DEFAULTS,
    }


def _fail(errors: dict[str, list[str]], field_name: str, message: str) -> None:
    errors.setdefault(field_name, []).append(message)


def _decode(raw: bytes) -> Any:
    if not raw.strip():
        return None
    try:
        return msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return _BAD_JSON
