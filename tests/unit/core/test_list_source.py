"""The list-by-replication-key source with a stub vendor: what no fake vendor shows."""

from __future__ import annotations

import dataclasses
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

from adapters.core.change_source import PollError, PollSettings, created_or_updated
from adapters.core.list_source import DEAD, ListByReplicationKey, bounded
from adapters.core.pagination import (
    CursorPaginator,
    HeaderLinkPaginator,
    PageNumberPaginator,
    PageRequest,
    Paginator,
)
from adapters.core.vendor_http import VendorResponse
from adapters.settings import PollingConfig
from tests.unit.core.poll_harness import Runner

T = datetime(2025, 9, 24, 14, 0, 0, tzinfo=UTC)


def at(seconds: float) -> str:
    return (T + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def source(paginator: Paginator, **changes: Any) -> ListByReplicationKey:
    base = ListByReplicationKey(
        path="/api/v1/work_orders",
        paginator=paginator,
        replication_key="updated_at",
        parse_time=parse,
        since_param="updated_after",
        to_event=created_or_updated(
            "testvendor", "work_order", replication_key="updated_at", created_key="created_at"
        ),
        records_at=("data",),
    )
    return ListByReplicationKey(**{**base.__dict__, **changes})


class Stub:
    """Answers requests from a list of (status, body, headers, links), and logs them."""

    def __init__(self, *answers: tuple[int, Any, dict[str, str], dict[str, str]]) -> None:
        self.answers = list(answers)
        self.sent: list[PageRequest] = []

    async def __call__(self, request: PageRequest) -> VendorResponse:
        self.sent.append(request)
        status, body, headers, links = self.answers.pop(0)
        return VendorResponse(status, headers, msgspec.json.encode(body), links)


ONE_PAGE = {"pagination": {"page": 1, "total_pages": 1}}


def work_order(rid: int, seconds: float) -> dict[str, Any]:
    return {"id": rid, "title": f"wo{rid}", "created_at": at(seconds), "updated_at": at(seconds)}


async def test_without_a_date_header_the_mark_is_the_local_clock_less_its_margin() -> None:
    stub = Stub((200, {"data": [work_order(1, 0)]}, {}, {}))
    local_now = T + timedelta(hours=1)
    run = Runner(source(PageNumberPaginator()), stub, now=lambda: local_now)
    await run.cycle()
    assert run.state.mark == local_now - timedelta(seconds=60)


async def test_clickmaint_style_pages_by_number_with_records_under_data() -> None:
    # Shaped like the document's list answers: {"status", "data", "meta": {"pagination"}}.
    def page(n: int, rows: list[dict[str, Any]]) -> Any:
        meta = {"pagination": {"total": 3, "page": n, "per_page": 2, "total_pages": 2}}
        return (200, {"status": "success", "data": rows, "meta": meta}, {}, {})

    stub = Stub(page(1, [work_order(3, 3), work_order(2, 2)]), page(2, [work_order(1, 1)]))
    newest_first = {"sort": "updated_at desc"}
    run = Runner(source(PageNumberPaginator(), params=newest_first, newest_first=True), stub)
    done = await run.cycle()
    assert sorted(done.subjects) == ["work_order/1", "work_order/2", "work_order/3"]
    assert [r.params["page"] for r in stub.sent] == ["1", "2"]
    assert all(r.params["sort"] == "updated_at desc" for r in stub.sent)
    assert done.events[0].type == "workbridge.testvendor.work_order.created"


async def test_cloudworkpro_style_follows_the_cursor() -> None:
    def page(rows: list[dict[str, Any]], cursor: str | None, total: int = 2) -> Any:
        pagination = {
            "hasNext": cursor is not None,
            "nextCursor": cursor or "",
            "totalResults": total,
        }
        return (200, {"code": 200, "data": rows, "pagination": pagination}, {}, {})

    stub = Stub(page([work_order(2, 2)], "next_abc"), page([work_order(1, 1)], None))
    run = Runner(source(CursorPaginator()), stub, page_size=1)
    done = await run.cycle()
    assert sorted(done.subjects) == ["work_order/1", "work_order/2"]
    assert stub.sent[1].params == {"limit": "1", "cursor": "next_abc"}


async def test_a_next_page_without_a_cursor_publishes_the_page_but_keeps_the_mark(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broken = {"hasNext": True, "nextCursor": None, "totalResults": 2}
    stub = Stub((200, {"code": 200, "data": [work_order(2, 2)], "pagination": broken}, {}, {}))
    run = Runner(source(CursorPaginator()), stub, page_size=1)
    with caplog.at_level(logging.ERROR):
        done = await run.cycle()
    assert "without a cursor" in caplog.text
    assert done.subjects == ["work_order/2"]
    # Even as a one-page pass it is not complete: the next pass reads from the same mark.
    assert run.state.mark is None and run.state.listing is None


async def test_a_link_back_to_a_page_already_read_ends_the_pass_and_keeps_the_cursor(
    caplog: pytest.LogCaptureFixture,
) -> None:
    base = "http://vendor/api/v1/work_orders"
    page_2 = {"next": f"{base}?page=2"}
    stub = Stub(
        (200, {"data": [work_order(2, 2)]}, {"x-total": "2"}, page_2),
        (200, {"data": [work_order(1, 1)]}, {"x-total": "2"}, page_2),  # links to itself
    )
    paginator = HeaderLinkPaginator(total_header="x-total")
    run = Runner(source(paginator, path=base), stub, page_size=1)
    with caplog.at_level(logging.ERROR):
        done = await run.cycle()
    assert "already read" in caplog.text
    assert sorted(done.subjects) == ["work_order/1", "work_order/2"]
    assert len(stub.sent) == 2
    # The rest of the listing was never read: the next pass starts from the same mark.
    assert run.state.mark is None and run.state.listing is None


async def test_a_vendor_error_fails_the_cycle_and_the_pass_resumes_there() -> None:
    pages = [
        (200, {"data": [work_order(2, 2)], "meta": {"pagination": {"total_pages": 2}}}, {}, {}),
        (500, {"status": "error", "message": "boom"}, {}, {}),
        (200, {"data": [work_order(1, 1)], "meta": {"pagination": {"total_pages": 2}}}, {}, {}),
    ]
    stub = Stub(*pages)
    run = Runner(source(PageNumberPaginator()), stub, page_size=1)
    with pytest.raises(PollError, match="500"):
        await run.cycle()
    assert run.state.listing is not None and run.state.listing.next.params["page"] == "2"
    done = await run.cycle()
    assert done.subjects == ["work_order/1"]


async def test_a_listing_that_is_not_an_array_fails_the_cycle() -> None:
    stub = Stub((200, {"data": {"not": "a list"}}, {}, {}))
    with pytest.raises(PollError, match="no array"):
        await Runner(source(PageNumberPaginator()), stub).cycle()


async def test_records_that_cannot_be_events_are_dead_letters_and_the_rest_goes_on() -> None:
    rows = ["not an object", {"title": "no id", "updated_at": at(1)}, work_order(7, 7)]
    stub = Stub((200, {"data": rows, "meta": ONE_PAGE}, {}, {}))
    done = await Runner(source(PageNumberPaginator()), stub).cycle()
    assert done.subjects == ["work_order/7"]
    assert [d.reason for d in done.dead] == [
        "a listed record is not an object",
        "the record has no id",
    ]


async def test_the_same_id_twice_on_one_page_is_published_once_in_its_newest_version() -> None:
    rows = [work_order(1, 1), {**work_order(1, 1), "updated_at": at(5)}, work_order(1, 1)]
    stub = Stub((200, {"data": rows, "meta": ONE_PAGE}, {}, {}))
    done = await Runner(source(PageNumberPaginator()), stub).cycle()
    assert done.subjects == ["work_order/1"]
    assert done.events[0].time == parse(at(5))


def test_bounded_evicts_what_the_next_pass_will_not_read_first() -> None:
    seen = {"old1": T, "dead": DEAD, "old2": T, "new1": T + timedelta(hours=1)}
    kept = bounded(seen, 2, protect_from=T + timedelta(minutes=1))
    assert kept == {"dead": DEAD, "new1": T + timedelta(hours=1)}
    assert bounded(seen, 10, T) is seen
    assert list(bounded(seen, 1, protect_from=T)) == ["new1"]


async def test_an_instances_date_margin_replaces_the_declared_one() -> None:
    vendor_date = "Wed, 24 Sep 2025 15:00:00 GMT"
    answer = (200, {**ONE_PAGE, "data": [work_order(1, 0)]}, {"date": vendor_date}, {})
    declared = Runner(source(PageNumberPaginator()), Stub(answer))
    await declared.cycle()
    assert declared.state.mark == T + timedelta(hours=1) - timedelta(seconds=1)

    configured = Runner(source(PageNumberPaginator()), Stub(answer))
    configured.ctx = dataclasses.replace(
        configured.ctx,
        settings=dataclasses.replace(configured.ctx.settings, date_margin=timedelta(seconds=7)),
    )
    await configured.cycle()
    assert configured.state.mark == T + timedelta(hours=1) - timedelta(seconds=7)

    none = Runner(source(PageNumberPaginator()), Stub(answer))
    none.ctx = dataclasses.replace(
        none.ctx, settings=dataclasses.replace(none.ctx.settings, date_margin=timedelta(0))
    )
    await none.cycle()
    assert none.state.mark == T + timedelta(hours=1)  # 0 is a setting, not "unset"


async def test_an_instances_seen_limit_bounds_the_remembered_versions() -> None:
    # Three versions inside the overlap: the declared limit keeps all, the instance's keeps 1.
    page = {**ONE_PAGE, "data": [work_order(i, 3599 + i / 2) for i in (1, 2, 3)]}
    answer = (200, page, {"date": "Wed, 24 Sep 2025 15:00:00 GMT"}, {})
    declared = Runner(source(PageNumberPaginator()), Stub(answer), overlap_s=3600, page_size=10)
    await declared.cycle()
    assert len(declared.state.seen) == 3

    configured = Runner(source(PageNumberPaginator()), Stub(answer), overlap_s=3600, page_size=10)
    configured.ctx = dataclasses.replace(
        configured.ctx, settings=dataclasses.replace(configured.ctx.settings, seen_limit=1)
    )
    await configured.cycle()
    assert len(configured.state.seen) == 1


def test_poll_settings_of_an_instance_carry_its_overrides() -> None:
    cfg = PollingConfig(max_pages=3, seen_limit=50, date_margin_s=2.5, overlap_s=4)
    settings = PollSettings.of(cfg)
    assert (settings.max_pages, settings.seen_limit) == (3, 50)
    assert settings.date_margin == timedelta(seconds=2.5)
    assert settings.overlap == timedelta(seconds=4)
    unset = PollSettings.of(PollingConfig())
    assert (unset.max_pages, unset.seen_limit, unset.date_margin) == (None, None, None)


async def test_a_listing_that_skips_published_leaves_out_what_is_on_the_topic() -> None:
    page = {**ONE_PAGE, "data": [work_order(1, 3610), work_order(2, 3620)]}
    date = {"date": "Wed, 24 Sep 2025 15:00:00 GMT"}
    answers = [(200, {**ONE_PAGE, "data": [work_order(3, 0)]}, date, {}), (200, page, date, {})]
    margin = timedelta(minutes=5)
    asked: list[datetime] = []

    def runner(skip: bool) -> Runner:
        run = Runner(
            source(PageNumberPaginator(), skip_published=margin), Stub(*answers), page_size=10
        )

        async def published_since(since: datetime) -> set[str]:
            asked.append(since)
            return {first_id}

        run.ctx = dataclasses.replace(
            run.ctx,
            published_since=published_since,
            settings=dataclasses.replace(run.ctx.settings, skip_published=skip),
        )
        return run

    probe = Runner(source(PageNumberPaginator()), Stub((200, page, date, {})), page_size=10)
    first_id = (await probe.cycle()).events[0].id  # the id work order 1's version gets

    run = runner(skip=True)
    # The first pass has no floor: nothing is read back, everything is published.
    assert (await run.cycle()).subjects == ["work_order/3"]
    assert asked == []
    second = await run.cycle()
    assert second.subjects == ["work_order/2"]
    # Read back once, from the oldest change on the page (not the floor), less the margin.
    assert asked == [T + timedelta(seconds=3610) - margin]
    assert run.state.seen  # what was left out still counts as seen by the next pass

    off = runner(skip=False)  # polling.skip_published: false publishes every version
    await off.cycle()
    assert sorted((await off.cycle()).subjects) == ["work_order/1", "work_order/2"]
    assert len(asked) == 1


async def test_a_quiet_pass_reads_nothing_back_and_a_failed_read_publishes_the_page(
    caplog: pytest.LogCaptureFixture,
) -> None:
    date = {"date": "Wed, 24 Sep 2025 15:00:00 GMT"}
    first = (200, {**ONE_PAGE, "data": [work_order(3, 0)]}, date, {})
    quiet = (200, {**ONE_PAGE, "data": []}, date, {})
    page = (200, {**ONE_PAGE, "data": [work_order(1, 3610)]}, date, {})
    asked: list[datetime] = []

    async def broken(since: datetime) -> set[str]:
        asked.append(since)
        raise TimeoutError("the events topic is not readable")

    src = source(PageNumberPaginator(), skip_published=timedelta(minutes=5))
    run = Runner(src, Stub(first, quiet, page), page_size=10)
    run.ctx = dataclasses.replace(run.ctx, published_since=broken)
    await run.cycle()
    assert (await run.cycle()).events == [] and asked == []  # nothing listed, nothing read
    with caplog.at_level(logging.WARNING):
        assert (await run.cycle()).subjects == ["work_order/1"]
    assert len(asked) == 1
    assert "cannot read back the events topic" in caplog.text
