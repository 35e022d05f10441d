"""MOCO listings: the document's pagination headers and timestamps, as declared."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import msgspec
import pytest

from adapters.core.change_source import PolledRecord
from adapters.core.list_source import ListByReplicationKey
from adapters.core.pagination import PageRequest
from adapters.core.vendor_http import VendorResponse
from adapters.moco import SPEC
from adapters.moco.resources import PAGINATOR, POLL, format_since, parse_time
from adapters.moco.undocumented import MocoOptions
from adapters.settings import InstanceConfig, OptionsError
from adapters.validation import check_options

RECORDS = [{"id": 1, "updated_at": "2018-10-17T09:33:46Z"}, {"id": 2, "x": [1]}]
# The document's example: X-Page 3, X-Per-Page 100, X-Total 415 and the next page's Link.
DOC_HEADERS = {"x-page": "3", "x-per-page": "100", "x-total": "415"}
DOC_NEXT = "https://acme.mocoapp.com/api/v1/projects.json?page=4"


def response(headers: dict[str, str], body: object = RECORDS, **links: str) -> VendorResponse:
    return VendorResponse(200, headers, msgspec.json.encode(body), dict(links))


def test_the_documents_next_page_and_total() -> None:
    sent = PageRequest("/projects", {"per_page": "100", "sort_by": "updated_at desc"})
    page = response(DOC_HEADERS, next=DOC_NEXT)
    assert PAGINATOR.next(sent, page, RECORDS) == PageRequest(
        "https://acme.mocoapp.com/api/v1/projects.json",
        {"per_page": "100", "sort_by": "updated_at desc", "page": "4"},
    )
    assert PAGINATOR.total(page, RECORDS) == 415


def test_no_next_link_is_the_last_page() -> None:
    page = response({"x-total": "2"}, prev="https://acme.mocoapp.com/api/v1/projects.json?page=3")
    assert PAGINATOR.next(PageRequest("/projects"), page, RECORDS) is None


@pytest.mark.parametrize("total", [None, "", "many", "-1"])
def test_missing_or_odd_total(total: str | None) -> None:
    headers = {} if total is None else {"x-total": total}
    assert PAGINATOR.total(response(headers), RECORDS) is None


def test_poll_params_override_names_known_resources_only() -> None:
    assert MocoOptions.decode({"poll_params": {"deals": {"sort_by": None}}}).poll_params == {
        "deals": {"sort_by": None}
    }
    inst = InstanceConfig(
        vendor="moco",
        base_url="https://x.mocoapp.com/api/v1",
        options={"poll_params": {"dealz": {"sort_by": None}}},
    )
    with pytest.raises(OptionsError, match="poll_params: unknown resource 'dealz'"):
        check_options(inst, SPEC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2018-10-17T09:33:46Z", datetime(2018, 10, 17, 9, 33, 46, tzinfo=UTC)),
        ("2018-10-17T09:33:46.123Z", datetime(2018, 10, 17, 9, 33, 46, 123000, tzinfo=UTC)),
        ("2018-10-17T11:33:46+02:00", datetime(2018, 10, 17, 9, 33, 46, tzinfo=UTC)),
        ("2018-10-17T09:33:46", datetime(2018, 10, 17, 9, 33, 46, tzinfo=UTC)),
    ],
)
def test_parse_time(text: str, expected: datetime) -> None:
    parsed = parse_time(text)
    assert parsed == expected
    assert parsed.tzinfo is not None


def test_format_since() -> None:
    assert format_since(datetime(2018, 10, 17, 9, 33, 46, tzinfo=UTC)) == "2018-10-17T09:33:46Z"
    cest = timezone(timedelta(hours=2))
    assert format_since(datetime(2018, 10, 17, 11, 33, 46, tzinfo=cest)) == "2018-10-17T09:33:46Z"
    # Sub-second precision is dropped downwards: the poll reads a little more, never less.
    assert format_since(datetime(2018, 10, 17, 9, 33, 46, 999999, tzinfo=UTC)) == (
        "2018-10-17T09:33:46Z"
    )


@pytest.mark.parametrize("text", ["2018-10-17T09:33:46Z", "2024-02-29T23:59:59Z"])
def test_round_trip(text: str) -> None:
    assert format_since(parse_time(text)) == text
    assert parse_time(format_since(parse_time(text))) == parse_time(text)


def test_poll_resources() -> None:
    assert set(POLL.resources) == {
        "projects",
        "offers",
        "companies",
        "activities",
        "users",
        "deals",
        "invoices",
    }
    projects = POLL.resources["projects"].source
    assert isinstance(projects, ListByReplicationKey)
    assert projects.path == "/projects"
    assert projects.since_param == "updated_after"
    assert projects.replication_key == "updated_at"
    assert projects.records_at == ()  # the body is the array
    assert PAGINATOR.size_param == "per_page"
    assert not any(r.scoped for r in POLL.resources.values())
    assert POLL.scopes is None
    first = PAGINATOR.first(projects.path, projects.params, 100)
    assert first == PageRequest("/projects", {"sort_by": "updated_at desc", "per_page": "100"})
    company = POLL.resources["companies"].source
    activity = POLL.resources["activities"].source
    assert isinstance(company, ListByReplicationKey)
    assert isinstance(activity, ListByReplicationKey)
    sample = {"id": 3, "created_at": "2018-10-17T09:33:46Z", "updated_at": "2018-10-17T09:33:46Z"}
    seen = PolledRecord(
        instance="moco",
        resource="companies",
        scope=None,
        id="3",
        changed=datetime(2018, 10, 17, 9, 33, 46, tzinfo=UTC),
        record=sample,
    )
    assert company.to_event(seen).subject == "company/3"
    assert activity.to_event(seen).type == "workbridge.moco.activity.created"
