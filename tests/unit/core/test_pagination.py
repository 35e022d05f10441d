"""Paginators, with the examples of the vendors' documents (vendor-docs/INDEX.md):
MOCO's `Link` header, Click Maint's `meta.pagination`, CLOUDWORK|PRO's `pagination`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
from aiohttp import web

from adapters.core.pagination import (
    CursorPaginator,
    HeaderLinkPaginator,
    PageNumberPaginator,
    PageRequest,
    PageWalk,
    PaginationBroken,
    PaginationLoop,
    dig,
)
from adapters.core.ratelimit import Unlimited
from adapters.core.vendor_http import VendorClient, VendorResponse


def answer(body: Any = None, *, headers: dict[str, str] | None = None, **links: str) -> Any:
    raw = msgspec.json.encode(body) if body is not None else b""
    return VendorResponse(200, headers or {}, raw, dict(links)), body


# --- MOCO: "Link - <https://{domain}.mocoapp.com/api/v1/projects.json?page=4>; rel="next"" ---

MOCO = HeaderLinkPaginator(size_param="per_page", total_header="x-total")
MOCO_HEADERS = {"x-page": "3", "x-per-page": "100", "x-total": "415"}
MOCO_NEXT = "https://acme.mocoapp.com/api/v1/projects.json?page=4"


def test_moco_first_request_carries_the_query_and_the_page_size() -> None:
    first = MOCO.first("/projects", {"updated_after": "2024-01-01T00:00:00Z"}, 100)
    assert first == PageRequest(
        "/projects", {"updated_after": "2024-01-01T00:00:00Z", "per_page": "100"}
    )


def test_moco_next_is_the_documents_link_with_the_first_query_kept() -> None:
    sent = PageRequest(
        "https://acme.mocoapp.com/api/v1/projects.json",
        {"updated_after": "2024-01-01T00:00:00Z", "sort_by": "updated_at desc", "page": "3"},
    )
    response, body = answer([], headers=MOCO_HEADERS, next=MOCO_NEXT)
    assert MOCO.next(sent, response, body) == PageRequest(
        "https://acme.mocoapp.com/api/v1/projects.json",
        {"updated_after": "2024-01-01T00:00:00Z", "sort_by": "updated_at desc", "page": "4"},
    )
    assert MOCO.total(response, body) == 415


def test_moco_without_a_next_link_the_page_is_the_last() -> None:
    # "If there is not Link header with rel="next", the current page is the last page."
    response, body = answer([], headers=MOCO_HEADERS, prev="https://acme.mocoapp.com/p?page=2")
    assert MOCO.next(PageRequest("/projects"), response, body) is None


def test_a_link_repeating_the_query_keeps_its_own_values() -> None:
    sent = PageRequest("/projects", {"per_page": "100", "page": "1"})
    link = "https://acme.mocoapp.com/api/v1/projects?per_page=50&page=2"
    response, body = answer([], next=link)
    nxt = MOCO.next(sent, response, body)
    assert nxt is not None and nxt.params == {"per_page": "50", "page": "2"}


@pytest.mark.parametrize("total", [None, "", "many", "-1"])
def test_moco_odd_totals_are_no_total(total: str | None) -> None:
    headers = {} if total is None else {"x-total": total}
    response, body = answer([], headers=headers)
    assert MOCO.total(response, body) is None


# --- Click Maint: "meta": {"pagination": {"total": 50, "page": 1, "per_page": 25,
#                                           "total_pages": 2}} ---

CLICKMAINT = PageNumberPaginator()
CLICKMAINT_PAGE_1 = {
    "status": "success",
    "data": [{"id": 102, "name": "Air Purifier"}],
    "meta": {"pagination": {"total": 50, "page": 1, "per_page": 25, "total_pages": 2}},
}


def test_clickmaint_pages_by_number_until_total_pages() -> None:
    first = CLICKMAINT.first("/api/v1/assets", {"sort": "updated_at desc"}, 25)
    assert first.params == {"sort": "updated_at desc", "per_page": "25", "page": "1"}
    response, body = answer(CLICKMAINT_PAGE_1)
    second = CLICKMAINT.next(first, response, body)
    assert second == PageRequest(
        "/api/v1/assets", {"sort": "updated_at desc", "per_page": "25", "page": "2"}
    )
    assert CLICKMAINT.total(response, body) == 50
    last = {**CLICKMAINT_PAGE_1, "meta": {"pagination": {"page": 2, "total_pages": 2}}}
    response, body = answer(last)
    assert second is not None and CLICKMAINT.next(second, response, body) is None


def test_clickmaint_without_a_page_count_a_short_page_is_the_last() -> None:
    sent = PageRequest("/api/v1/parts", {"per_page": "2", "page": "1"})
    full, body = answer({"data": [{"id": 1}, {"id": 2}]})
    assert CLICKMAINT.next(sent, full, body) is not None
    short, body = answer({"data": [{"id": 3}]})
    assert CLICKMAINT.next(sent, short, body) is None
    empty, body = answer({"data": []})
    assert CLICKMAINT.next(sent, empty, body) is None


# --- CLOUDWORK|PRO: "pagination": {"hasNext", "nextCursor", "totalResults", ...} ---

CWP = CursorPaginator()
CURSOR = "next_X2lkfDYzMWFkZGM5M2M5YTgwMGIwYTQxMTM5OXwtMeKVoQ=="
CWP_PAGE = {
    "code": 200,
    "reason": "",
    "data": [],
    "pagination": {
        "hasNext": True,
        "hasPrev": False,
        "nextCursor": CURSOR,
        "prevCursor": "prev_X2lkfDYzMWFkZGM5M2M5YTgwMGIwYTQxMTM5OXwtMeKVoQ==",
        "pageResults": 10,
        "totalResults": 100,
    },
    "options": {"limit": 10},
    "success": True,
}


def test_cloudworkpro_sends_the_next_cursor_back_with_the_first_query() -> None:
    first = CWP.first("/workorders", {"sortBy": "updated_date:desc"}, 10)
    assert first.params == {"sortBy": "updated_date:desc", "limit": "10"}
    response, body = answer(CWP_PAGE)
    assert CWP.next(first, response, body) == PageRequest(
        "/workorders", {"sortBy": "updated_date:desc", "limit": "10", "cursor": CURSOR}
    )
    assert CWP.total(response, body) == 100


def test_cloudworkpro_has_next_false_is_the_last_page() -> None:
    body = {**CWP_PAGE, "pagination": {**CWP_PAGE["pagination"], "hasNext": False}}
    response, decoded = answer(body)
    assert CWP.next(PageRequest("/workorders"), response, decoded) is None
    # A next page announced without a cursor: the pass is broken, not complete.
    no_token = {**CWP_PAGE, "pagination": {"hasNext": True, "nextCursor": ""}}
    response, decoded = answer(no_token)
    with pytest.raises(PaginationBroken):
        CWP.next(PageRequest("/workorders"), response, decoded)


# --- one pass: loops and the page cap ---


def test_a_cursor_handed_out_twice_is_a_loop() -> None:
    walk = PageWalk(max_pages=10)
    first = CWP.first("/workorders", {}, 10)
    walk.send(first)
    response, body = answer(CWP_PAGE)
    second = CWP.next(first, response, body)
    assert second is not None
    walk.send(second)
    third = CWP.next(second, response, body)  # the vendor hands out the same cursor again
    assert third == second
    with pytest.raises(PaginationLoop):
        walk.send(third)


def test_a_link_back_to_a_page_already_read_is_a_loop_whatever_the_query_order() -> None:
    walk = PageWalk(max_pages=10)
    walk.send(PageRequest("https://a.example/p", {"page": "1", "per_page": "2"}))
    walk.send(PageRequest("https://a.example/p", {"page": "2", "per_page": "2"}))
    with pytest.raises(PaginationLoop):
        walk.send(PageRequest("https://a.example/p", {"per_page": "2", "page": "1"}))


def test_pages_are_capped_per_pass() -> None:
    walk = PageWalk(max_pages=2)
    walk.send(PageRequest("/p", {"page": "1"}))
    assert not walk.capped
    walk.send(PageRequest("/p", {"page": "2"}))
    assert walk.capped


def test_a_rewind_may_read_pages_again() -> None:
    pages = [PageRequest("/p", {"page": str(n)}) for n in (1, 2, 3)]
    walk = PageWalk(max_pages=10, sent=pages)
    walk.rewind_to(pages[1])
    walk.send(pages[1])
    walk.send(pages[2])
    with pytest.raises(PaginationLoop):
        walk.send(pages[0])


def test_dig() -> None:
    assert dig(CLICKMAINT_PAGE_1, ("meta", "pagination", "total_pages")) == 2
    assert dig(CLICKMAINT_PAGE_1, ("meta", "missing", "x")) is None
    assert dig([1, 2], ()) == [1, 2]
    assert dig([1, 2], ("data",)) is None


# --- the Link header as aiohttp parses it, through the vendor client ---


@pytest.fixture
async def linking_server() -> AsyncIterator[str]:
    headers = {
        "/moco": '<https://acme.mocoapp.com/api/v1/projects.json?page=4>; rel="next"',
        "/many": (
            '<https://a.example/p?page=1>; rel="first", <https://a.example/p?page=2>; '
            'rel="prev", <https://a.example/p?page=4>; rel="Next last"'
        ),
        "/relative": '</api/v1/projects?page=2>; title="page 2, next"; rel=next',
    }

    async def handler(request: web.Request) -> web.Response:
        return web.json_response([], headers={"Link": headers[request.path]})

    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


async def _links(base: str, path: str) -> dict[str, str]:
    client = VendorClient(base_url=base, limiter=Unlimited(), timeout_s=5, user_agent="t")
    try:
        return (await client.request("GET", path)).links
    finally:
        await client.close()


async def test_the_documents_link_header_reaches_the_response(linking_server: str) -> None:
    assert await _links(linking_server, "/moco") == {
        "next": "https://acme.mocoapp.com/api/v1/projects.json?page=4"
    }


async def test_several_and_multi_valued_relations_case_insensitively(linking_server: str) -> None:
    links = await _links(linking_server, "/many")
    assert links["next"] == links["last"] == "https://a.example/p?page=4"
    assert links["first"] == "https://a.example/p?page=1"
    assert links["prev"] == "https://a.example/p?page=2"


async def test_a_relative_link_is_resolved_against_the_request(linking_server: str) -> None:
    links = await _links(linking_server, "/relative")
    assert links == {"next": f"{linking_server}/api/v1/projects?page=2"}


@pytest.mark.parametrize(
    ("pagination", "follows"),
    [
        ({"hasNext": True, "nextCursor": "next_a"}, True),
        ({"nextCursor": "next_a"}, True),  # no flag: a cursor means a next page
        ({"hasNext": "true", "nextCursor": "next_a"}, True),  # the flag as a string
        ({"hasNext": False, "nextCursor": "next_a"}, False),
        ({"hasNext": "false", "nextCursor": "next_a"}, False),
        ({"hasNext": False, "nextCursor": None}, False),
        ({}, False),
    ],
)
def test_the_cursor_is_followed_unless_the_vendor_says_there_is_no_next_page(
    pagination: dict[str, object], follows: bool
) -> None:
    paginator = CursorPaginator()
    sent = paginator.first("/workorders", {"sortBy": "updated_date:desc"}, 2)
    body = {"data": [], "pagination": pagination}
    following = paginator.next(sent, VendorResponse(200, {}, b""), body)
    assert (following is not None) is follows
    if following is not None:
        assert following.params["cursor"] == "next_a"


@pytest.mark.parametrize("cursor", [None, ""])
def test_a_next_page_without_a_cursor_breaks_the_pass(cursor: object) -> None:
    paginator = CursorPaginator()
    sent = paginator.first("/workorders", {}, 2)
    body = {"pagination": {"hasNext": True, "nextCursor": cursor}}
    with pytest.raises(PaginationBroken):
        paginator.next(sent, VendorResponse(200, {}, b""), body)
