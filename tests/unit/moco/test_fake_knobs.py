"""Every assumption knob of the fake MOCO, flipped: the fake behaves differently, and
Workbridge's code that meets the behaviour still does the right thing.

`FakeMocoBehaviour` holds what MOCO's document leaves open. Each test below sets one knob
(sometimes two that only make sense together) away from its default, shows that the fake's
answer changed, and then runs Workbridge's own code against it without a broker: commands
through the real validation, decision and executor (`run_command`), webhooks through the real
webhook server with a recording publisher (`Bridge.events`), listings through the real list
source (`Bridge.poller`). tests/unit/test_fake_knobs_covered.py keeps a new knob from being
added without such a test.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

import aiohttp
import msgspec
import pytest
from aiokafka.structs import ConsumerRecord
from cloudevents.core.v1.event import CloudEvent

from adapters.config import parse_config
from adapters.core.change_source import PollError
from adapters.core.cloudevents_codec import from_record, make_event, to_kafka
from adapters.core.command_result import CommandResult
from adapters.core.commands.decision import Answer, Facts, decide
from adapters.core.commands.executor import Executor
from adapters.core.commands.model import Checked, decode_command
from adapters.core.commands.validation import check
from adapters.core.errors import Action
from adapters.core.instance import Instance, build_instance
from adapters.core.metrics import Metrics
from adapters.core.publisher import NotAcknowledged
from adapters.core.vendor_call import RetryPolicy, call_with_retry
from adapters.moco import SPEC
from adapters.moco.fake import FakeMoco, FakeMocoBehaviour
from adapters.moco.resources import POLL
from adapters.moco.undocumented import MocoOptions
from tests.unit.core.poll_harness import Runner, client_fetch
from tests.unit.core.webhook_harness import FakePublisher, served
from tests.vendor_clock import VendorClock

KEY = "moco-test-key"
SECRET = "1d608b9d72219b90ff2393a1d3ee0ac0"
AUTH = {"Authorization": f"Token token={KEY}"}
DEFAULTS = FakeMocoBehaviour()

COMPANY_CREATE = "workbridge.moco.company.create"
COMPANY_UPDATE = "workbridge.moco.company.update"
COMPANY_DELETE = "workbridge.moco.company.delete"
PROJECT_UPDATE = "workbridge.moco.project.update"
ACTIVITY_CREATE = "workbridge.moco.activity.create"
ACTIVITY_UPDATE = "workbridge.moco.activity.update"


# --------------------------------------------------------------------------- harness


@contextlib.asynccontextmanager
async def moco(
    *,
    rate_limit: tuple[int, float] | None = None,
    clock: Callable[[], datetime] | None = None,
    **knobs: Any,
) -> AsyncIterator[FakeMoco]:
    """A started fake MOCO with `knobs` flipped (webhook retries fast, as tests need)."""
    settings: dict[str, Any] = {"webhook_retry_initial_s": 0.02, "webhook_retry_max_s": 0.05}
    settings.update(knobs)
    fake = FakeMoco(
        api_key=KEY,
        webhook_secret=SECRET,
        rate_limit=rate_limit,
        clock=clock,
        behaviour=FakeMocoBehaviour(**settings),
    )
    async with fake:
        yield fake


def instance(
    fake: FakeMoco,
    *,
    budget: tuple[int, float] = (100, 1.0),
    http_timeout_s: float = 5.0,
    options: dict[str, Any] | None = None,
) -> Instance:
    """A Workbridge MOCO instance on the fake, with fast command retries.

    `budget` is the instance's own rate limit: after a 429 without Retry-After the client
    sits out one window of it (plus its margin), so tests keep it short.
    """
    assert fake.base_url is not None
    cfg = parse_config(
        {
            "kafka": {"bootstrap_servers": "127.0.0.1:1"},
            "instances": [
                {
                    "vendor": "moco",
                    "name": "acme",
                    "base_url": fake.base_url,
                    "api_key": KEY,
                    "webhook_secret": SECRET,
                    "http_timeout_s": http_timeout_s,
                    "rate_limit": {
                        "requests": budget[0],
                        "per_seconds": budget[1],
                        "above_documented": True,
                    },
                    "commands": {
                        "enabled": True,
                        "deadline_s": 10,
                        "max_attempts": 5,
                        "backoff_base_s": 0.01,
                        "backoff_max_s": 0.02,
                    },
                    "options": options or {},
                }
            ],
        },
        env={},
    )
    return build_instance(cfg.instances[0], SPEC, "workbridge")


def command_record(type_: str, data: Any, subject: str) -> ConsumerRecord[bytes, bytes]:
    """A command as it arrives from the commands topic."""
    event = make_event(
        id=str(uuid.uuid4()),
        source="/tests",
        type=type_,
        subject=subject,
        partitionkey=subject,
        data=msgspec.json.encode(data),
    )
    key, value, headers = to_kafka(event)
    return ConsumerRecord(
        "workbridge.acme.commands",
        0,
        1,
        0,
        0,
        key,
        value,
        None,
        len(key or b""),
        len(value),
        headers,
    )


async def run_command(inst: Instance, type_: str, data: dict[str, Any]) -> CommandResult:
    """The result Workbridge commits for a new command: decoded, validated and decided as
    the worker does, then carried out by the real executor (no ledger, no Kafka)."""
    command = decode_command(command_record(type_, data, f"test/{data.get('id', 'new')}"))
    checked = check(inst, command)
    verdict = decide(command, Facts(), checked)
    if isinstance(verdict, Answer):
        return verdict.result
    assert isinstance(checked, Checked)

    async def before_send() -> None:
        return None

    return await Executor(inst, Metrics()).run(
        command, checked, replay=False, before_send=before_send, after_attempt=lambda _: None
    )


class Bridge:
    """A Workbridge instance on the fake: commands, its webhook endpoint, its poller."""

    def __init__(self, fake: FakeMoco, inst: Instance, publisher: FakePublisher) -> None:
        self.fake, self.inst, self.publisher = fake, inst, publisher
        self.url = ""
        self._clients: list[Any] = []

    async def command(self, type_: str, data: dict[str, Any]) -> CommandResult:
        return await run_command(self.inst, type_, data)

    def events(self) -> list[CloudEvent]:
        """The CloudEvents the webhook endpoint published."""
        return [
            from_record(key, value, list(headers))
            for topic, key, value, headers in self.publisher.records
            if topic == self.inst.topics.events
        ]

    def poller(self, resource: str = "companies", options: MocoOptions | None = None) -> Runner:
        """A poll task of `resource` through the instance's listing source."""
        assert self.fake.base_url is not None
        client, fetch = client_fetch(self.fake.base_url, AUTH)
        self._clients.append(client)
        return Runner(
            POLL.resources[resource].source,
            fetch,
            resource=resource,
            page_size=10,
            options=options or MocoOptions(),
        )

    async def close(self) -> None:
        for client in self._clients:
            await client.close()


@contextlib.asynccontextmanager
async def bridge(
    fake: FakeMoco, publisher: FakePublisher | None = None, **inst_args: Any
) -> AsyncIterator[Bridge]:
    """Workbridge on `fake`, its webhook endpoint subscribed to every MOCO webhook."""
    inst = instance(fake, **inst_args)
    wb = Bridge(fake, inst, publisher or FakePublisher())
    async with served({inst.name: inst}, wb.publisher, max_body_bytes=1 << 20) as (client, _):
        wb.url = str(client.make_url(f"/webhooks/{inst.name}"))
        fake.subscribe("*", "*", wb.url)
        try:
            yield wb
        finally:
            await fake.wait_deliveries_idle(5)
            await wb.close()


async def raw(
    fake: FakeMoco,
    method: str,
    path: str,
    *,
    body: Any = None,
    data: bytes | None = None,
    headers: dict[str, str] | None = None,
    key: str = KEY,
) -> tuple[int, Any, dict[str, str]]:
    """One request to the fake's API as any client would send it: (status, JSON, headers)."""
    assert fake.base_url is not None
    sent = {"Authorization": f"Token token={key}", **(headers or {})}
    async with (
        aiohttp.ClientSession() as http,
        http.request(
            method, f"{fake.base_url}{path}", json=body, data=data, headers=sent
        ) as response,
    ):
        text = await response.read()
        answer = msgspec.json.decode(text) if text else None
        return response.status, answer, dict(response.headers)


def company(fake: FakeMoco, name: str = "ACME", **fields: Any) -> dict[str, Any]:
    """A company made in MOCO's UI."""
    return fake.create_record("companies", {"name": name, "type": "customer", **fields})


def project(fake: FakeMoco, **fields: Any) -> dict[str, Any]:
    """A project (of a new company) made in MOCO's UI."""
    return fake.create_record(
        "projects", {"name": "Website", "customer_id": company(fake)["id"], **fields}
    )


# --------------------------------------------------------------------------- status codes


@pytest.mark.parametrize(
    ("knobs", "type_", "status"),
    [
        pytest.param(dict(create_status=201), COMPANY_CREATE, 201, id="create-201"),
        pytest.param(dict(create_status=204), COMPANY_CREATE, 204, id="create-204"),
        pytest.param(dict(update_status=204), COMPANY_UPDATE, 204, id="update-204"),
        pytest.param(dict(update_status=202), COMPANY_UPDATE, 202, id="update-202"),
        pytest.param(dict(delete_status=200), COMPANY_DELETE, 200, id="delete-200"),
    ],
)
async def test_any_2xx_for_a_write_is_a_succeeded_command(
    knobs: dict[str, Any], type_: str, status: int
) -> None:
    async with moco(**knobs) as fake:
        existing = company(fake)
        data: dict[str, Any] = {
            COMPANY_CREATE: {"name": "Beispiel AG", "type": "customer"},
            COMPANY_UPDATE: {"id": existing["id"], "name": "ACME 2"},
            COMPANY_DELETE: {"id": existing["id"]},
        }[type_]
        inst = instance(fake)
        try:
            result = await run_command(inst, type_, data)
        finally:
            await inst.client.close()
        # The fake answered the flipped status, not its default one.
        assert [call.status for call in fake.calls] == [status]
        [(knob, value)] = knobs.items()
        assert getattr(DEFAULTS, knob) != value
        assert (result.status, result.http_status, result.attempts) == ("succeeded", status, 1)
        assert result.accepted_async is (True if status == 202 else None)
        names = [r["name"] for r in fake.records("companies")]
        if type_ == COMPANY_CREATE:
            assert names == ["ACME", "Beispiel AG"]
        elif type_ == COMPANY_UPDATE:
            assert names == ["ACME 2"]
        else:
            assert names == []


@pytest.mark.parametrize("status", [403, 404, 422])
async def test_a_read_only_resource_is_a_failed_command_sent_once(status: int) -> None:
    async with moco(
        writable_resources=("activities", "projects"), read_only_resource_status=status
    ) as fake:
        assert (await raw(fake, "POST", "/companies", body={"name": "x"}))[0] == status
        existing = company(fake)
        inst = instance(fake)
        try:
            created = await run_command(inst, COMPANY_CREATE, {"name": "B", "type": "customer"})
            deleted = await run_command(inst, COMPANY_DELETE, {"id": existing["id"]})
        finally:
            await inst.client.close()
        for result in (created, deleted):
            assert (result.status, result.http_status, result.attempts) == ("failed", status, 1)
            assert result.error == {"message": "Method not allowed"}
        assert fake.calls == []
        assert [r["id"] for r in fake.records("companies")] == [existing["id"]]


# --------------------------------------------------------------------------- validation


async def test_stricter_validation_rules_fail_the_command_with_the_vendors_reason() -> None:
    rules = {
        **DEFAULTS.validation_rules,
        "activities": {
            "date": "date",
            "project_id": "ref:projects",
            "description": "string",
            "hours": "number",
        },
    }
    async with moco(validation_rules=rules) as fake:
        pid = project(fake)["id"]
        inst = instance(fake)
        try:
            missing = await run_command(
                inst, ACTIVITY_CREATE, {"date": "2026-11-23", "project_id": pid, "hours": 1.0}
            )
            complete = await run_command(
                inst,
                ACTIVITY_CREATE,
                {"date": "2026-11-23", "project_id": pid, "hours": 1.0, "description": "pump"},
            )
        finally:
            await inst.client.close()
    # Under the default rules the first one would have been created.
    assert "description" not in DEFAULTS.validation_rules["activities"]
    assert (missing.status, missing.http_status, missing.attempts) == ("failed", 422, 1)
    assert missing.error == {"message": "description is missing"}
    assert (complete.status, complete.http_status) == ("succeeded", 200)
    assert complete.response["description"] == "pump"


async def test_custom_fields_survive_an_update_that_erases_unsent_ones() -> None:
    custom = {"UID": "123-UID-456", "Line of business": ["Automotive", "Bank"]}
    async with moco(update_without_custom_erases=True) as fake:
        # The fake: a PUT without custom_properties now erases them.
        victim = company(fake, custom_properties=custom)
        status, answer, _ = await raw(fake, "PUT", f"/companies/{victim['id']}", body={"info": "x"})
        assert (status, answer["custom_properties"]) == (200, {})
        # Workbridge: updates of projects and companies send the current set along.
        proj = project(fake, custom_properties=custom)
        comp = company(fake, "Other", custom_properties=custom)
        inst = instance(fake)
        try:
            renamed = await run_command(inst, PROJECT_UPDATE, {"id": proj["id"], "name": "Web 2"})
            retyped = await run_command(
                inst, COMPANY_UPDATE, {"id": comp["id"], "type": "supplier"}
            )
            changed = await run_command(
                inst, COMPANY_UPDATE, {"id": comp["id"], "custom_properties": {"UID": "9"}}
            )
        finally:
            await inst.client.close()
        assert renamed.status == retyped.status == changed.status == "succeeded"
        assert fake.get_record("projects", proj["id"])["custom_properties"] == custom  # type: ignore[index]
        assert fake.get_record("companies", comp["id"])["custom_properties"] == {  # type: ignore[index]
            **custom,
            "UID": "9",
        }


async def test_an_activity_update_keeps_its_custom_fields_when_unsent_ones_are_erased() -> None:
    async with moco(update_without_custom_erases=True) as fake:
        pid = project(fake)["id"]
        activity = fake.create_record(
            "activities",
            {"date": "2026-11-23", "project_id": pid, "custom_properties": {"Ticket": "T-1"}},
        )
        inst = instance(fake)
        try:
            result = await run_command(inst, ACTIVITY_UPDATE, {"id": activity["id"], "hours": 2})
        finally:
            await inst.client.close()
        assert result.status == "succeeded"
        stored = fake.get_record("activities", activity["id"])
        assert stored is not None and stored["custom_properties"] == {"Ticket": "T-1"}
        assert stored["hours"] == 2
        # The current custom fields were read and sent along with the change.
        assert fake.calls[-1].json == {"hours": 2.0, "custom_properties": {"Ticket": "T-1"}}


async def test_lenient_custom_field_types_are_kept_by_a_merged_update() -> None:
    async with moco(strict_custom_property_types=False) as fake:
        owner = company(fake)
        body = {"name": "P", "customer_id": owner["id"], "custom_properties": {"Budget": 5}}
        status, created, _ = await raw(fake, "POST", "/projects", body=body)
        assert status == 200  # the default reading answers 422
        inst = instance(fake)
        try:
            merged = await run_command(
                inst, PROJECT_UPDATE, {"id": created["id"], "custom_properties": {"UID": "x"}}
            )
            # Workbridge itself only sends what the document says: strings.
            refused = await run_command(
                inst, PROJECT_UPDATE, {"id": created["id"], "custom_properties": {"Budget": 6}}
            )
        finally:
            await inst.client.close()
        assert merged.status == "succeeded"
        assert merged.response["custom_properties"] == {"Budget": 5, "UID": "x"}
        assert refused.status == "rejected"
        assert [call.method for call in fake.calls] == ["POST", "PUT"]


async def test_fields_the_vendor_ignores_are_reported_as_the_vendor_stored_them() -> None:
    read_only = (*DEFAULTS.read_only_fields, "billable")
    async with moco(read_only_fields=read_only) as fake:
        pid = project(fake)["id"]
        inst = instance(fake)
        try:
            result = await run_command(
                inst, ACTIVITY_CREATE, {"date": "2026-11-23", "project_id": pid, "billable": False}
            )
        finally:
            await inst.client.close()
        assert fake.calls[0].json["billable"] is False  # sent, and silently dropped
        assert result.status == "succeeded"
        assert "billable" not in result.response
        assert result.response == fake.get_record("activities", result.response["id"])


async def test_an_update_never_moves_a_record_even_where_no_field_is_read_only() -> None:
    async with moco(read_only_fields=()) as fake:
        existing = company(fake)
        # The fake now takes an id (and timestamps) from the body.
        status, moved, _ = await raw(
            fake, "PUT", f"/companies/{existing['id']}", body={"id": 99, "created_at": "x"}
        )
        assert (status, moved["id"], moved["created_at"]) == (200, 99, "x")
        other = company(fake, "Other")
        inst = instance(fake)
        try:
            result = await run_command(inst, COMPANY_UPDATE, {"id": other["id"], "name": "O2"})
        finally:
            await inst.client.close()
        assert result.status == "succeeded"
        assert result.response["id"] == other["id"]
        assert "id" not in fake.calls[-1].json and "created_at" not in fake.calls[-1].json


async def test_fields_no_rule_mentions_may_be_dropped_and_the_result_says_so() -> None:
    async with moco(store_unknown_fields=False) as fake:
        pid = project(fake)["id"]
        activity = {"date": "2026-11-23", "project_id": pid, "description": "pump", "hours": 1.5}
        status, stored, _ = await raw(fake, "POST", "/activities", body=activity)
        assert status == 200 and "description" not in stored and "hours" not in stored
        inst = instance(fake)
        try:
            result = await run_command(inst, ACTIVITY_CREATE, activity)
        finally:
            await inst.client.close()
        assert result.status == "succeeded"
        assert result.response == fake.get_record("activities", result.response["id"])
        assert "description" not in result.response


# --------------------------------------------------------------------------- bad requests


@pytest.mark.parametrize("status", [400, 404])
async def test_a_refused_listing_query_raises_and_moves_no_cursor(status: int) -> None:
    async with moco(invalid_query_status=status) as fake:
        assert (await raw(fake, "GET", "/companies?updated_after=yesterday"))[0] == status
        company(fake)
        inst = instance(fake)
        wb = Bridge(fake, inst, FakePublisher())
        bad = MocoOptions.decode({"poll_params": {"companies": {"sort_by": "updated_at sideways"}}})
        run = wb.poller(options=bad)
        try:
            with pytest.raises(PollError, match=str(status)):
                await run.cycle()
            assert run.state.mark is None and run.state.listing is None
            assert run.all_subjects == []
            # The instance's own query is valid: the same task lists the company.
            run.ctx = dataclasses.replace(run.ctx, options=MocoOptions())
            done = await run.cycle()
            assert len(done.subjects) == 1
        finally:
            await wb.close()
            await inst.client.close()


@pytest.mark.parametrize("status", [415, 422])
async def test_a_body_refused_as_not_json_fails_once_and_is_not_retried(status: int) -> None:
    async with moco(invalid_json_status=status) as fake:
        answer = await raw(
            fake, "POST", "/companies", data=b"[1, 2]", headers={"Content-Type": "application/json"}
        )
        assert answer[0] == status
        inst = instance(fake)
        try:
            outcome = await call_with_retry(
                inst.client,
                "POST",
                "/companies",
                errors=SPEC.errors,
                policy=RetryPolicy(max_attempts=5, base_s=0.01, cap_s=0.02),
                json=["not", "an", "object"],
            )
            good = await run_command(inst, COMPANY_CREATE, {"name": "B", "type": "customer"})
        finally:
            await inst.client.close()
        assert (outcome.action, outcome.attempts) == (Action.FAIL, 1)
        assert outcome.response is not None and outcome.response.status == status
        assert good.status == "succeeded"
        assert len(fake.requests) == 3  # the raw one, one attempt, the good command


@pytest.mark.parametrize("status", [400, 403])
async def test_impersonation_is_always_sent_as_an_integer(status: int) -> None:
    async with moco(invalid_impersonation_status=status) as fake:
        pid = project(fake)["id"]
        body = {"date": "2026-11-23", "project_id": pid}
        bad = {"X-IMPERSONATE-USER-ID": "jane"}
        assert (await raw(fake, "POST", "/activities", body=body, headers=bad))[0] == status
        inst = instance(fake)
        try:
            acted = await run_command(inst, ACTIVITY_CREATE, {**body, "impersonate_user_id": 42})
            wrong = await run_command(
                inst, ACTIVITY_CREATE, {**body, "impersonate_user_id": "jane"}
            )
        finally:
            await inst.client.close()
        assert acted.status == "succeeded" and acted.response["user_id"] == 42
        assert [call.impersonate_user_id for call in fake.calls] == ["42"]
        assert wrong.status == "rejected"  # never sent


# --------------------------------------------------------------------------- listings


@pytest.mark.parametrize("default", [3, 250])
async def test_a_poll_lists_every_record_once_whatever_the_default_page_size(default: int) -> None:
    # The document's "common default of 100 entries per page" need not hold for every
    # resource. Workbridge names its own page size, so the vendor's default never cuts it.
    async with moco(per_page_default=default) as fake:
        made = [company(fake, f"C{n}") for n in range(25)]
        status, page, headers = await raw(fake, "GET", "/companies")
        assert status == 200 and headers["X-Per-Page"] == str(default)
        assert len(page) == min(default, 25)
        assert ('rel="next"' in headers.get("Link", "")) == (default < 25)
        inst = instance(fake)
        wb = Bridge(fake, inst, FakePublisher())
        run = wb.poller()
        try:
            done = await run.cycle()
        finally:
            await wb.close()
            await inst.client.close()
        assert sorted(done.subjects) == sorted(f"company/{c['id']}" for c in made)
        polled = [r for r in fake.requests[1:] if r.path == "/api/v1/companies"]
        assert len(polled) >= 3 and all("per_page=10" in r.query for r in polled)


# --------------------------------------------------------------------------- identity and ids


async def test_the_api_users_id_reaches_the_webhook_events_of_its_own_commands() -> None:
    async with moco(api_key_user_id=933613686) as fake:
        assert (await raw(fake, "GET", "/session"))[1]["id"] == 933613686
        pid = project(fake)["id"]
        async with bridge(fake) as wb:
            result = await wb.command(ACTIVITY_CREATE, {"date": "2026-11-23", "project_id": pid})
            await fake.wait_deliveries_idle(5)
            assert result.status == "succeeded" and result.response["user_id"] == 933613686
            created = [e for e in wb.events() if e.get_type() == "workbridge.moco.activity.created"]
            assert len(created) == 1
            # Consumers tell the echo of Workbridge's own command by this user id.
            assert created[0].get_attributes()["vendoruserid"] == "933613686"


async def test_ids_from_another_start_are_the_same_subject_everywhere() -> None:
    clock = VendorClock()
    async with moco(first_id=4711, clock=clock) as fake:
        async with bridge(fake) as wb:
            run = wb.poller()
            await run.cycle()
            clock.tick(5)
            result = await wb.command(COMPANY_CREATE, {"name": "B", "type": "customer"})
            await fake.wait_deliveries_idle(5)
            clock.tick(5)
            polled = await run.cycle()
        assert result.status == "succeeded" and result.response["id"] == 4711
        assert [e.get_subject() for e in wb.events()] == ["company/4711"]
        assert polled.subjects == ["company/4711"]


# --------------------------------------------------------------------------- rate limit


async def test_a_429_without_retry_after_is_still_backed_off() -> None:
    async with moco(rate_limit=(2, 0.25), send_retry_after=False) as fake:
        answers = [await raw(fake, "GET", "/projects") for _ in range(3)]
        assert [a[0] for a in answers] == [200, 200, 429]
        assert "Retry-After" not in answers[2][2]
        inst = instance(fake, budget=(100, 0.25))
        try:
            result = await run_command(inst, COMPANY_CREATE, {"name": "B", "type": "customer"})
        finally:
            await inst.client.close()
        assert (result.status, result.attempts) == ("succeeded", 2)
        refused, admitted = fake.requests[-2:]
        assert (refused.status, admitted.status) == (429, 200)
        # Without Retry-After the client sits out a whole window of its budget.
        assert admitted.at - refused.at >= 0.25
        assert fake.rejected_429 == 2
        assert len(fake.records("companies")) == 1


@pytest.mark.parametrize("per_key", [True, False])
async def test_another_key_using_a_shared_budget_only_delays_a_command(per_key: bool) -> None:
    # Without Retry-After (flipped too) the wait is one window of the instance's budget.
    async with moco(
        rate_limit=(2, 0.25), rate_limit_per_key=per_key, send_retry_after=False
    ) as fake:
        fake.add_api_key("other", user_id=9)
        for _ in range(2):
            assert (await raw(fake, "GET", "/projects", key="other"))[0] == 200
        inst = instance(fake, budget=(100, 0.25))
        try:
            result = await run_command(inst, COMPANY_CREATE, {"name": "B", "type": "customer"})
        finally:
            await inst.client.close()
        assert result.status == "succeeded"
        # One limit for all keys: the other key's requests cost Workbridge a 429 and a wait.
        assert (result.attempts, fake.rejected_429) == ((1, 0) if per_key else (2, 1))
        assert len(fake.records("companies")) == 1


@pytest.mark.parametrize("counts_rejected", [False, True])
async def test_knocking_while_limited_keeps_a_client_out_when_429s_count(
    counts_rejected: bool,
) -> None:
    async with moco(rate_limit=(1, 0.3), rate_limit_counts_rejected=counts_rejected) as fake:
        statuses = []
        start = time.monotonic()
        for i in range(6):  # one every 0.066 s: the last one is past the first one's window
            await asyncio.sleep(max(0.0, start + 0.066 * i - time.monotonic()))
            statuses.append((await raw(fake, "GET", "/projects"))[0])
        assert statuses[:5] == [200, 429, 429, 429, 429]
        assert statuses[5] == (429 if counts_rejected else 200)


@pytest.mark.parametrize("retry_after", [True, False])
async def test_workbridge_gets_through_a_limit_that_counts_429s(retry_after: bool) -> None:
    async with moco(
        rate_limit=(2, 0.25), rate_limit_counts_rejected=True, send_retry_after=retry_after
    ) as fake:
        for _ in range(3):
            await raw(fake, "GET", "/projects")  # the budget used, and one 429 counted
        inst = instance(fake, budget=(100, 0.25))
        try:
            result = await run_command(inst, COMPANY_CREATE, {"name": "B", "type": "customer"})
        finally:
            await inst.client.close()
        # Workbridge waits (Retry-After, else a window) instead of knocking again at once.
        assert (result.status, result.attempts) == ("succeeded", 2)
        assert [r.status for r in fake.requests] == [200, 200, 429, 429, 200]


# --------------------------------------------------------------------------- updates


@pytest.mark.parametrize("bump", [True, False])
async def test_an_update_that_changes_nothing_is_published_only_if_the_vendor_bumps_it(
    bump: bool,
) -> None:
    clock = VendorClock()
    async with moco(bump_on_noop_update=bump, clock=clock) as fake:
        async with bridge(fake) as wb:
            existing = company(fake)
            run = wb.poller()
            first = await run.cycle()
            await fake.wait_deliveries_idle(5)
            clock.tick(10)
            result = await wb.command(COMPANY_UPDATE, {"id": existing["id"], "name": "ACME"})
            await fake.wait_deliveries_idle(5)
            clock.tick(10)
            second = await run.cycle()
        assert result.status == "succeeded"
        stored = fake.get_record("companies", existing["id"])
        assert stored is not None
        assert (stored["updated_at"] != existing["updated_at"]) is bump
        assert first.subjects == [f"company/{existing['id']}"]
        assert len(second.subjects) == (1 if bump else 0)
        updated = [e for e in wb.events() if e.get_type() == "workbridge.moco.company.updated"]
        assert len(updated) == (1 if bump else 0)


@pytest.mark.parametrize("honour", [False, True])
async def test_a_create_whose_answer_is_lost_is_ambiguous_whatever_the_vendor_does_with_keys(
    honour: bool,
) -> None:
    async with moco(honour_idempotency_key=honour) as fake:
        body = {"name": "Twice", "type": "customer"}
        for _ in range(2):
            await raw(fake, "POST", "/companies", body=body, headers={"Idempotency-Key": "k1"})
        assert len(fake.records("companies")) == (1 if honour else 2)
        inst = instance(fake, http_timeout_s=0.15)
        fake.delay_next(1, 0.3)
        try:
            result = await run_command(inst, COMPANY_CREATE, {"name": "Once", "type": "customer"})
        finally:
            await inst.client.close()
        for _ in range(60):  # the delayed write lands after Workbridge gave up waiting
            if any(c.json == {"name": "Once", "type": "customer"} for c in fake.calls):
                break
            await asyncio.sleep(0.05)
        # Workbridge relies on no vendor idempotency: one request, and "check at the vendor".
        assert result.status == "ambiguous"
        assert [r["name"] for r in fake.records("companies")].count("Once") == 1
        assert not fake.calls[-1].idempotency_key_sent


# --------------------------------------------------------------------------- webhooks


@pytest.mark.parametrize("api_webhooks", [True, False])
async def test_polling_finds_an_api_change_whether_or_not_it_fires_a_webhook(
    api_webhooks: bool,
) -> None:
    clock = VendorClock()
    async with moco(webhooks_for_api_changes=api_webhooks, clock=clock) as fake:
        async with bridge(fake) as wb:
            run = wb.poller()
            await run.cycle()
            clock.tick(5)
            result = await wb.command(COMPANY_CREATE, {"name": "B", "type": "customer"})
            await fake.wait_deliveries_idle(5)
            clock.tick(5)
            polled = await run.cycle()
        subject = f"company/{result.response['id']}"
        assert result.status == "succeeded"
        assert len(fake.webhooks) == (1 if api_webhooks else 0)
        assert [e.get_subject() for e in wb.events()] == ([subject] if api_webhooks else [])
        assert polled.subjects == [subject]
        assert polled.events[0].type == "workbridge.moco.company.created"


@pytest.mark.parametrize("body", ["record", "id_only"])
async def test_a_delete_webhook_is_an_event_about_the_record_whatever_its_body(body: str) -> None:
    async with moco(delete_webhook_body=body) as fake:
        async with bridge(fake) as wb:
            existing = company(fake)
            result = await wb.command(COMPANY_DELETE, {"id": existing["id"]})
            await fake.wait_deliveries_idle(5)
        assert result.status == "succeeded"
        [deleted] = [e for e in wb.events() if e.get_type() == "workbridge.moco.company.deleted"]
        assert deleted.get_subject() == f"company/{existing['id']}"
        data = deleted.get_data()
        assert data == ({"id": existing["id"]} if body == "id_only" else existing)


@pytest.mark.parametrize("target", ["Customer", "Company"])
async def test_a_company_is_one_subject_whichever_target_name_its_webhooks_carry(
    target: str,
) -> None:
    targets = {**DEFAULTS.webhook_targets, "companies": target}
    clock = VendorClock()
    async with moco(webhook_targets=targets, clock=clock) as fake:
        async with bridge(fake) as wb:
            run = wb.poller()
            await run.cycle()
            clock.tick(5)
            made = company(fake)
            await fake.wait_deliveries_idle(5)
            clock.tick(5)
            polled = await run.cycle()
        assert [d.target for d in fake.deliveries] == [target]
        [event] = wb.events()
        assert event.get_type() == "workbridge.moco.company.created"
        assert event.get_subject() == polled.subjects[0] == f"company/{made['id']}"


async def test_other_paths_are_reached_through_the_instances_options() -> None:
    paths = {"projects": "projects", "customers": "companies", "activities": "activities"}
    async with moco(resource_paths=paths) as fake:
        assert (await raw(fake, "GET", "/companies"))[0] == 404
        assert (await raw(fake, "GET", "/customers"))[0] == 200
        guessed = instance(fake)
        configured = instance(fake, options={"command_paths": {COMPANY_CREATE: "/customers"}})
        wb = Bridge(fake, configured, FakePublisher())
        try:
            lost = await run_command(guessed, COMPANY_CREATE, {"name": "A", "type": "customer"})
            made = await run_command(configured, COMPANY_CREATE, {"name": "B", "type": "customer"})
            options = MocoOptions.decode({"resource_paths": {"companies": "/customers"}})
            polled = await wb.poller(options=options).cycle()
        finally:
            await wb.close()
            await guessed.client.close()
            await configured.client.close()
        assert (lost.status, lost.http_status, lost.attempts) == ("failed", 404, 1)
        assert made.status == "succeeded"
        assert [r["name"] for r in fake.records("customers")] == ["B"]
        assert polled.subjects == [f"company/{made.response['id']}"]


class FlakyPublisher(FakePublisher):
    """Fails the first `failures` publishes (Kafka did not acknowledge), timing each one;
    `slow_s` delays the acknowledgement of the first one, which is on Kafka at once (as with
    the real publisher, a client hanging up meanwhile does not take it back)."""

    def __init__(self, failures: int = 0, slow_s: float = 0.0) -> None:
        super().__init__()
        self.failures = failures
        self.slow_s = slow_s
        self.times: list[float] = []

    async def publish(self, records: list[Any], *, timeout_s: float) -> None:
        self.times.append(time.monotonic())
        if len(self.times) <= self.failures:
            raise NotAcknowledged("not acknowledged")
        self.calls.append((records, timeout_s))
        if len(self.times) == 1 and self.slow_s:
            await asyncio.sleep(self.slow_s)


@pytest.mark.parametrize("factor", [1.0, 3.0])
async def test_webhook_retries_on_any_schedule_publish_the_event_once(factor: float) -> None:
    async with moco(
        webhook_retry_initial_s=0.1, webhook_retry_factor=factor, webhook_retry_max_s=5.0
    ) as fake:
        publisher = FlakyPublisher(failures=2)
        async with bridge(fake, publisher) as wb:
            company(fake)
            await fake.wait_deliveries_idle(5)
        assert [d.status for d in fake.deliveries] == [503, 503, 200]
        first, second = (b - a for a, b in zip(publisher.times, publisher.times[1:], strict=False))
        assert 0.1 <= first < 0.25
        if factor == 1.0:
            assert second < 0.25
        else:
            assert second >= 0.3
        [event] = wb.events()
        assert event.get_type() == "workbridge.moco.company.created"


async def test_a_vendor_that_gives_up_early_resends_an_event_with_the_same_id() -> None:
    async with moco(webhook_timeout_s=0.1) as fake:
        publisher = FlakyPublisher(slow_s=0.25)  # published, but after MOCO stopped waiting
        async with bridge(fake, publisher) as wb:
            company(fake)
            await fake.wait_deliveries_idle(5)
            await asyncio.sleep(0.2)  # the slow first acknowledgement ends
        assert fake.deliveries[0].status is None and fake.deliveries[0].error
        assert fake.deliveries[-1].ok
        events = wb.events()
        assert len(events) == 2
        assert len({e.get_id() for e in events}) == 1  # consumers drop the repeat
