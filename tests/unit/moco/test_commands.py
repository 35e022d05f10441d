"""MOCO command catalogue: models, requests built, custom properties merged."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestServer

from adapters.config import parse_config
from adapters.core.errors import Action, ErrorTable
from adapters.core.ratelimit import Unlimited
from adapters.core.vendor import PreparedCall, PrepareFailed
from adapters.core.vendor_call import RetryPolicy, call_with_retry
from adapters.core.vendor_http import VendorClient, VendorResponse
from adapters.moco import SPEC, auth_headers
from adapters.moco.commands import (
    COMMANDS,
    ActivityCreate,
    ActivityUpdate,
    CompanyCreate,
    Delete,
    ProjectCreate,
    ProjectUpdate,
    merge_custom_properties,
)


def build(type_: str, data: dict[str, Any]) -> PreparedCall:
    spec = COMMANDS[type_]
    return spec.build(msgspec.convert(data, spec.model))


def test_catalogue() -> None:
    expected = {
        f"workbridge.moco.{r}.{a}"
        for r in ("activity", "project", "company")
        for a in ("create", "update", "delete")
    }
    assert set(COMMANDS) == expected
    assert SPEC.commands is COMMANDS
    for type_, spec in COMMANDS.items():
        assert spec.type == type_
        assert spec.kind == type_.rsplit(".", 1)[1]
        assert spec.description


@pytest.mark.parametrize(
    ("type_", "method", "path", "model"),
    [
        ("workbridge.moco.activity.create", "POST", "/activities", ActivityCreate),
        ("workbridge.moco.activity.update", "PUT", "/activities/{id}", ActivityUpdate),
        ("workbridge.moco.activity.delete", "DELETE", "/activities/{id}", Delete),
        ("workbridge.moco.project.create", "POST", "/projects", ProjectCreate),
        ("workbridge.moco.project.update", "PUT", "/projects/{id}", ProjectUpdate),
        ("workbridge.moco.company.create", "POST", "/companies", CompanyCreate),
        ("workbridge.moco.company.delete", "DELETE", "/companies/{id}", Delete),
    ],
)
def test_spec_shape(type_: str, method: str, path: str, model: type) -> None:
    spec = COMMANDS[type_]
    assert (spec.method, spec.path, spec.model) == (method, path, model)


def test_updates_merge_custom_properties_and_others_do_not() -> None:
    for type_, spec in COMMANDS.items():
        if type_.endswith(".update"):  # activities too: MOCO does not say which have them
            assert spec.prepare is merge_custom_properties
        else:
            assert spec.prepare is None


@pytest.mark.parametrize(
    ("model", "data", "where"),
    [
        (ActivityCreate, {"date": "24.12.2024", "project_id": 1}, "$.date"),
        (ActivityCreate, {"date": "2024-1-5", "project_id": 1}, "$.date"),
        (ActivityCreate, {"date": "2024-01-05", "project_id": -1}, "$.project_id"),
        (ActivityCreate, {"date": "2024-01-05", "project_id": 0}, "$.project_id"),
        (ActivityCreate, {"date": "2024-01-05", "project_id": 1, "hours": -0.5}, "$.hours"),
        (
            ActivityCreate,
            {"date": "2024-01-05", "project_id": 1, "billabel": True},
            "unknown field `billabel`",
        ),
        (ActivityCreate, {"project_id": 1}, "missing required field `date`"),
        (ActivityCreate, {"date": "2024-01-05", "project_id": "1"}, "$.project_id"),
        (
            ActivityCreate,
            {"date": "2024-01-05", "project_id": 1, "impersonate_user_id": 0},
            "$.impersonate_user_id",
        ),
        (ActivityUpdate, {"id": -5}, "$.id"),
        (Delete, {"id": 1, "force": True}, "unknown field `force`"),
        (ProjectCreate, {"name": "", "customer_id": 1}, "$.name"),
        (ProjectCreate, {"name": "P", "customer_id": 1, "currency": "eur"}, "$.currency"),
        (
            ProjectCreate,
            {"name": "P", "customer_id": 1, "custom_properties": {"a": 1}},
            "$.custom_properties",
        ),
        (CompanyCreate, {"name": "C", "type": "partner"}, "$.type"),
    ],
)
def test_models_reject_bad_data(model: type, data: dict[str, Any], where: str) -> None:
    with pytest.raises(msgspec.ValidationError) as exc:
        msgspec.convert(data, model)
    assert where in str(exc.value)


@pytest.mark.parametrize("date", ["2024-13-01", "2024-02-30", "2024-00-10"])
def test_impossible_dates_are_rejected(date: str) -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"date": date, "project_id": 1}, ActivityCreate)


def test_trailing_newline_is_rejected() -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"date": "2024-01-05\n", "project_id": 1}, ActivityCreate)


def test_models_accept_good_data() -> None:
    data = {
        "name": "Website",
        "customer_id": 3,
        "currency": "CHF",
        "start_date": "2024-01-01",
        "tags": ["a"],
        "custom_properties": {"UID": "123-UID-456", "Line of business": ["Automotive", "Bank"]},
    }
    assert msgspec.to_builtins(msgspec.convert(data, ProjectCreate)) == data


def test_activity_create_with_impersonation() -> None:
    call = build(
        "workbridge.moco.activity.create",
        {
            "date": "2024-05-06",
            "project_id": 11,
            "task_id": 22,
            "hours": 1.5,
            "description": "Review",
            "impersonate_user_id": 123,
        },
    )
    assert call == PreparedCall(
        method="POST",
        path="/activities",
        json={
            "date": "2024-05-06",
            "project_id": 11,
            "task_id": 22,
            "hours": 1.5,
            "description": "Review",
        },
        headers={"X-IMPERSONATE-USER-ID": "123"},
    )


def test_activity_create_without_impersonation_has_no_header() -> None:
    call = build("workbridge.moco.activity.create", {"date": "2024-05-06", "project_id": 11})
    assert call.headers == {}
    assert call.json == {"date": "2024-05-06", "project_id": 11}


def test_activity_update_path_and_partial_body() -> None:
    call = build("workbridge.moco.activity.update", {"id": 5, "hours": 2, "billable": False})
    assert call.method == "PUT"
    assert call.path == "/activities/5"
    assert call.json == {"hours": 2.0, "billable": False}


def test_delete() -> None:
    call = build("workbridge.moco.project.delete", {"id": 9, "impersonate_user_id": 4})
    assert call == PreparedCall(
        method="DELETE", path="/projects/9", json=None, headers={"X-IMPERSONATE-USER-ID": "4"}
    )


def test_company_create() -> None:
    call = build("workbridge.moco.company.create", {"name": "Beispiel AG", "type": "customer"})
    assert call.path == "/companies"
    assert call.json == {"name": "Beispiel AG", "type": "customer"}


def test_auth_header() -> None:
    cfg = parse_config(
        {
            "kafka": {"bootstrap_servers": "k"},
            "instances": [
                {
                    "vendor": "moco",
                    "base_url": "https://acme.mocoapp.com/api/v1",
                    "api_key": "KEY",
                    "webhooks": {"enabled": False},
                }
            ],
        },
        env={},
    )
    assert auth_headers(cfg.instances[0]) == {"Authorization": "Token token=KEY"}


# --- merge_custom_properties against a local server -----------------------------------------

CURRENT = {
    "id": 5,
    "name": "Website",
    "custom_properties": {
        "UID": "123-UID-456",
        "Line of business": "Automotive",
        "Sectors": ["A", "B"],
    },
}


class Moco:
    def __init__(self) -> None:
        self.status = 200
        self.body: Any = CURRENT
        self.requests: list[tuple[str, str, dict[str, str]]] = []

    async def get(self, request: web.Request) -> web.Response:
        self.requests.append((request.method, request.path, dict(request.headers)))
        return web.json_response(self.body, status=self.status)


@pytest_asyncio.fixture
async def moco() -> AsyncIterator[tuple[Moco, VendorClient]]:
    fake = Moco()
    app = web.Application()
    app.router.add_get("/api/v1/{kind}/{id}", fake.get)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    client = VendorClient(
        base_url=str(server.make_url("/api/v1")),
        auth_headers={"Authorization": "Token token=KEY"},
        limiter=Unlimited(),
        timeout_s=5.0,
        user_agent="t",
    )
    try:
        yield fake, client
    finally:
        await client.close()
        await server.close()


class ClientReader:
    """The worker's Reader contract: one attempt, PrepareFailed on anything but success."""

    def __init__(self, client: VendorClient) -> None:
        self.client = client

    async def get(self, path: str, headers: Any) -> VendorResponse:
        outcome = await call_with_retry(
            self.client,
            "GET",
            path,
            errors=ErrorTable(),
            policy=RetryPolicy(max_attempts=1),
            headers=headers,
        )
        if outcome.action is not Action.SUCCESS or outcome.response is None:
            raise PrepareFailed(outcome)
        return outcome.response


async def prepare(client: VendorClient, type_: str, data: dict[str, Any]) -> PreparedCall:
    spec = COMMANDS[type_]
    model = msgspec.convert(data, spec.model)
    assert spec.prepare is not None
    return await spec.prepare(ClientReader(client), model, spec.build(model))


async def test_merge_keeps_omitted_custom_properties(moco: tuple[Moco, VendorClient]) -> None:
    fake, client = moco
    call = await prepare(
        client,
        "workbridge.moco.project.update",
        {
            "id": 5,
            "name": "New name",
            "custom_properties": {"Line of business": "Banking"},
            "impersonate_user_id": 7,
        },
    )
    assert call == PreparedCall(
        method="PUT",
        path="/projects/5",
        json={
            "name": "New name",
            "custom_properties": {
                "UID": "123-UID-456",
                "Line of business": "Banking",
                "Sectors": ["A", "B"],
            },
        },
        headers={"X-IMPERSONATE-USER-ID": "7"},
    )
    [(method, path, headers)] = fake.requests
    assert (method, path) == ("GET", "/api/v1/projects/5")
    assert headers["Authorization"] == "Token token=KEY"
    assert headers["X-IMPERSONATE-USER-ID"] == "7"


async def test_merge_when_the_record_has_none(moco: tuple[Moco, VendorClient]) -> None:
    fake, client = moco
    fake.body = {"id": 5, "custom_properties": None}
    call = await prepare(
        client, "workbridge.moco.company.update", {"id": 5, "custom_properties": {"UID": "x"}}
    )
    assert call.path == "/companies/5"
    assert call.json == {"custom_properties": {"UID": "x"}}


async def test_update_without_custom_properties_still_sends_the_current_ones(
    moco: tuple[Moco, VendorClient],
) -> None:
    # MOCO's warning may mean any update erases the custom fields it does not send.
    fake, client = moco
    call = await prepare(client, "workbridge.moco.project.update", {"id": 5, "name": "N"})
    assert call.json == {"name": "N", "custom_properties": CURRENT["custom_properties"]}
    assert [r[:2] for r in fake.requests] == [("GET", "/api/v1/projects/5")]


async def test_activity_updates_are_merged_too(moco: tuple[Moco, VendorClient]) -> None:
    # Which resources carry custom fields is not documented ("many of its resources").
    fake, client = moco
    fake.body = {"id": 5, "hours": 1.0, "custom_properties": {"Ticket": "T-1"}}
    call = await prepare(client, "workbridge.moco.activity.update", {"id": 5, "hours": 2})
    assert call == PreparedCall(
        method="PUT",
        path="/activities/5",
        json={"hours": 2.0, "custom_properties": {"Ticket": "T-1"}},
    )
    assert [r[:2] for r in fake.requests] == [("GET", "/api/v1/activities/5")]


async def test_an_activity_without_custom_fields_is_updated_as_built(
    moco: tuple[Moco, VendorClient],
) -> None:
    fake, client = moco
    fake.body = {"id": 5, "hours": 1.0}  # no custom_properties at all
    call = await prepare(client, "workbridge.moco.activity.update", {"id": 5, "hours": 2})
    assert call.json == {"hours": 2.0}


async def test_merge_read_failure_carries_the_vendor_answer(
    moco: tuple[Moco, VendorClient],
) -> None:
    fake, client = moco
    fake.status = 404
    fake.body = {"message": "Project not found"}
    with pytest.raises(PrepareFailed) as exc:
        await prepare(
            client, "workbridge.moco.project.update", {"id": 5, "custom_properties": {"UID": "x"}}
        )
    assert exc.value.outcome.action is Action.FAIL
    assert exc.value.outcome.response is not None
    assert exc.value.outcome.response.json() == {"message": "Project not found"}
