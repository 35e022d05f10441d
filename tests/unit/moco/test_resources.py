"""MOCO listings: pages, totals and timestamps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import msgspec
import pytest

from adapters.core.vendor import Page
from adapters.core.vendor_http import VendorResponse
from adapters.moco.resources import POLL, format_since, parse_time, read_page

RECORDS = [{"id": 1, "updated_at": "2018-10-17T09:33:46Z"}, {"id": 2, "x": [1]}]


def response(headers: dict[str, str], body: object = RECORDS) -> VendorResponse:
    return VendorResponse(200, headers, msgspec.json.encode(body))


def test_read_page_with_link_and_total() -> None:
    page = read_page(
        response(
            {
                "x-page": "3",
                "x-per-page": "100",
                "x-total": "415",
                "link": '<https://acme.mocoapp.com/api/v1/projects.json?page=4>; rel="next"',
            }
        )
    )
    assert page == Page(
        records=RECORDS,
        next_url="https://acme.mocoapp.com/api/v1/projects.json?page=4",
        total=415,
    )


def test_last_page_has_no_next() -> None:
    link = '<https://acme.mocoapp.com/api/v1/projects.json?page=3>; rel="prev"'
    page = read_page(response({"x-total": "2", "link": link}))
    assert page.next_url is None
    assert page.total == 2


@pytest.mark.parametrize("total", [None, "", "many", "-1"])
def test_missing_or_odd_total(total: str | None) -> None:
    headers = {} if total is None else {"x-total": total}
    assert read_page(response(headers)).total is None


def test_empty_listing() -> None:
    assert read_page(response({"x-total": "0"}, [])) == Page(records=[], next_url=None, total=0)


def test_not_an_array() -> None:
    with pytest.raises(ValueError, match="not a JSON array"):
        read_page(response({}, {"error": "x"}))


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
    projects = POLL.resources["projects"]
    assert projects.path == "/projects"
    assert projects.event_resource == "project"
    assert projects.since_param == "updated_after"
    assert projects.replication_key == "updated_at"
    assert POLL.resources["companies"].event_resource == "company"
    assert POLL.resources["activities"].event_resource == "activity"
    assert POLL.page_size_param == "per_page"
