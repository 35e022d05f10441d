"""The fake kit's pagination styles, against the examples in the vendor documents.

MOCO (002): `X-Page` 3, `X-Per-Page` 100, `X-Total` 415,
`Link<https://{domain}.mocoapp.com/api/v1/projects.json?page=4>; rel="next"`.
Click Maint (001): `"pagination": {"total": 50, "page": 1, "per_page": 25, "total_pages": 2}`.
CLOUDWORK|PRO (004): `cursor`, `limit` (default 100), `hasNext`, `hasPrev`, `nextCursor`,
`prevCursor`, `pageResults`, `totalResults`.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest
from yarl import URL

from adapters.fakekit_pages import (
    CursorPages,
    LinkHeaderPages,
    MetaPaginationPages,
    PageQueryError,
)

MOCO = URL("https://acme.mocoapp.com/api/v1/projects.json")
NOTHING: list[int] = []


def _next_link(headers: dict[str, str]) -> URL | None:
    link = headers.get("Link")
    if link is None:
        return None
    assert link.endswith('>; rel="next"')
    return URL(link[1 : link.index(">")])


# --------------------------------------------------------------------------- MOCO: Link


def test_link_pages_answer_the_documents_example() -> None:
    page = LinkHeaderPages().paginate(list(range(415)), MOCO.with_query(page="3"))
    assert page.headers == {
        "X-Page": "3",
        "X-Per-Page": "100",
        "X-Total": "415",
        "Link": '<https://acme.mocoapp.com/api/v1/projects.json?page=4>; rel="next"',
    }
    assert page.items == list(range(200, 300))


def test_the_last_page_has_no_next_link_also_when_exactly_full() -> None:
    pages = LinkHeaderPages()
    last = pages.paginate(list(range(415)), MOCO.with_query(page="5"))
    assert last.items == list(range(400, 415)) and "Link" not in last.headers
    full = pages.paginate(list(range(200)), MOCO.with_query(page="2"))
    assert len(full.items) == 100 and "Link" not in full.headers


def test_an_empty_listing_and_a_page_beyond_the_end_are_empty_with_headers() -> None:
    pages = LinkHeaderPages()
    empty = pages.paginate(NOTHING, MOCO)
    assert empty.items == []
    assert empty.headers == {"X-Page": "1", "X-Per-Page": "100", "X-Total": "0"}
    beyond = pages.paginate([1, 2, 3], MOCO.with_query(page="9"))
    assert beyond.items == [] and beyond.headers["X-Total"] == "3"
    assert "Link" not in beyond.headers


def test_following_next_links_reads_every_item_once() -> None:
    items = list(range(7))
    pages = LinkHeaderPages()
    url: URL | None = MOCO.with_query(per_page="3", sort_by="id")
    seen: list[int] = []
    numbers: list[str] = []
    while url is not None:
        page = pages.paginate(items, url)
        seen += page.items
        numbers.append(page.headers["X-Page"])
        url = _next_link(page.headers)
        if url is not None:
            # The other parameters are kept (the default; the document's example has none).
            assert url.query["per_page"] == "3" and url.query["sort_by"] == "id"
    assert seen == items and numbers == ["1", "2", "3"]


def test_per_page_is_capped_and_the_cap_is_what_x_per_page_says() -> None:
    page = LinkHeaderPages(max_per_page=2).paginate(list(range(5)), MOCO.with_query(per_page="10"))
    assert page.items == [0, 1] and page.headers["X-Per-Page"] == "2"
    assert _next_link(page.headers) == MOCO.with_query(per_page="10", page="2")


def test_the_next_link_may_carry_the_page_only() -> None:
    pages = LinkHeaderPages(link_keeps_query=False)
    page = pages.paginate(list(range(5)), MOCO.with_query(per_page="2", updated_after="x"))
    assert _next_link(page.headers) == MOCO.with_query(page="2")


def test_more_relations_when_configured() -> None:
    pages = LinkHeaderPages(rels=("first", "prev", "next", "last"))
    page = pages.paginate(list(range(10)), MOCO.with_query(per_page="3", page="2"))
    assert page.headers["Link"] == ", ".join(
        [
            f'<{MOCO.with_query(per_page="3", page="1")}>; rel="first"',
            f'<{MOCO.with_query(per_page="3", page="1")}>; rel="prev"',
            f'<{MOCO.with_query(per_page="3", page="3")}>; rel="next"',
            f'<{MOCO.with_query(per_page="3", page="4")}>; rel="last"',
        ]
    )


@pytest.mark.parametrize("query", [{"page": "0"}, {"page": "x"}, {"per_page": "-1"}, {"page": "²"}])
def test_bad_paging_parameters_are_refused_or_ignored(query: dict[str, str]) -> None:
    with pytest.raises(PageQueryError) as refused:
        LinkHeaderPages().paginate([1], MOCO.with_query(query))
    assert refused.value.param == next(iter(query))
    lenient = LinkHeaderPages(on_invalid="default").paginate([1], MOCO.with_query(query))
    assert lenient.window.page == 1 and lenient.window.per_page == 100


# --------------------------------------------------------------------------- Click Maint: meta


def test_meta_pagination_answers_the_documents_example() -> None:
    page = MetaPaginationPages().paginate(list(range(50)), {"per_page": "25"})
    assert page.pagination == {"total": 50, "page": 1, "per_page": 25, "total_pages": 2}
    entity = {"id": 1, "name": "Main Facility"}
    assert page.body({"entity": entity}) == {
        "status": "success",
        "data": list(range(25)),
        "meta": {"entity": entity, "pagination": page.pagination},
    }


def test_meta_pagination_defaults_last_page_and_beyond() -> None:
    pages = MetaPaginationPages()
    first = pages.paginate(list(range(120)), {})
    assert first.pagination["per_page"] == 50 and first.pagination["total_pages"] == 3
    last = pages.paginate(list(range(120)), {"page": "3"})
    assert last.items == list(range(100, 120))
    assert last.pagination["page"] == last.pagination["total_pages"]
    beyond = pages.paginate(list(range(120)), {"page": "4"})
    assert beyond.items == [] and beyond.pagination["total"] == 120


def test_meta_pagination_of_an_empty_listing_and_a_capped_per_page() -> None:
    assert MetaPaginationPages().paginate([], {}).pagination == {
        "total": 0,
        "page": 1,
        "per_page": 50,
        "total_pages": 0,
    }
    one_empty_page = MetaPaginationPages(total_pages_when_empty=1).paginate(NOTHING, {})
    assert one_empty_page.pagination["total_pages"] == 1
    capped = MetaPaginationPages(max_per_page=10).paginate(list(range(30)), {"per_page": "100"})
    assert capped.pagination["per_page"] == 10 and capped.pagination["total_pages"] == 3
    with pytest.raises(PageQueryError):
        MetaPaginationPages().paginate([], {"per_page": "0"})


# --------------------------------------------------------------------------- CLOUDWORK|PRO: cursor


def _by_id(item: dict[str, Any]) -> Any:
    return item["_id"]


def _records(ids: range | list[int]) -> list[dict[str, Any]]:
    return [{"_id": f"{n:04d}"} for n in ids]


def _ids(items: list[dict[str, Any]]) -> list[int]:
    return [int(item["_id"]) for item in items]


def test_the_first_cursor_page_uses_the_documented_default_limit() -> None:
    page = CursorPages(key=_by_id).paginate(_records(range(250)), {})
    assert page.pagination["hasNext"] is True and page.pagination["hasPrev"] is False
    assert page.pagination["pageResults"] == 100
    assert page.pagination["totalResults"] == 250
    assert page.pagination["nextCursor"].startswith("next_")
    assert page.pagination["prevCursor"] is None
    body = page.body({"sortBy": {"field": "_id", "value": "asc"}})
    assert body["code"] == 200 and body["success"] is True and body["reason"] == ""
    assert body["options"] == {"limit": 100, "sortBy": {"field": "_id", "value": "asc"}}
    assert list(body) == ["code", "reason", "data", "pagination", "options", "success"]


@pytest.mark.parametrize("cursor_format", ["keyset", "offset"])
def test_following_next_cursors_reads_every_item_once(cursor_format: Any) -> None:
    pages = CursorPages(key=_by_id, cursor_format=cursor_format)
    items = _records(range(25))
    query = {"limit": "10"}
    seen: list[int] = []
    results: list[int] = []
    while True:
        page = pages.paginate(items, query)
        seen += _ids(page.items)
        results.append(page.pagination["pageResults"])
        if not page.pagination["hasNext"]:
            break
        query = {"limit": "10", "cursor": page.pagination["nextCursor"]}
    assert seen == list(range(25)) and results == [10, 10, 5]
    assert page.pagination["nextCursor"] is None and page.pagination["hasPrev"] is True
    # Back from the last page: prevCursor answers the page before it.
    back = pages.paginate(items, {"limit": "10", "cursor": page.pagination["prevCursor"]})
    assert _ids(back.items) == list(range(10, 20))
    assert back.pagination["hasNext"] is True and back.pagination["hasPrev"] is True


def test_an_empty_cursor_listing_and_a_capped_limit() -> None:
    empty = CursorPages(key=_by_id, no_cursor="").paginate(NOTHING, {})
    assert empty.items == []
    assert empty.pagination == {
        "hasNext": False,
        "hasPrev": False,
        "nextCursor": "",
        "prevCursor": "",
        "pageResults": 0,
        "totalResults": 0,
    }
    capped = CursorPages(key=_by_id, max_limit=5).paginate(_records(range(8)), {"limit": "50"})
    assert capped.pagination["pageResults"] == 5 and capped.options == {"limit": 5}


def test_a_keyset_cursor_resumes_after_its_item_however_the_list_changed() -> None:
    pages = CursorPages(key=_by_id)
    items = _records(range(0, 20, 2))  # 0, 2, …, 18
    first = pages.paginate(items, {"limit": "4"})
    assert _ids(first.items) == [0, 2, 4, 6]
    # Between the pages: an item of page 1 is deleted, one is inserted before the cursor's
    # edge (6) and one after it.
    changed = sorted([r for r in items if r["_id"] != "0002"] + _records([3, 9]), key=_by_id)
    second = pages.paginate(changed, {"limit": "4", "cursor": first.pagination["nextCursor"]})
    # Resumes right after 6: the deletion shifts nothing, 3 is not seen in this pass, 9 is.
    assert _ids(second.items) == [8, 9, 10, 12]
    assert second.pagination["totalResults"] == 11


def test_an_offset_cursor_shifts_when_the_list_changes_before_it() -> None:
    pages = CursorPages(cursor_format="offset")
    items = _records(range(0, 20, 2))
    first = pages.paginate(items, {"limit": "4"})
    changed = [r for r in items if r["_id"] != "0002"]
    second = pages.paginate(changed, {"limit": "4", "cursor": first.pagination["nextCursor"]})
    # Resumes at position 4: item 8 moved onto page 1's positions and is skipped.
    assert _ids(second.items) == [10, 12, 14, 16]


def test_a_descending_keyset_listing() -> None:
    pages = CursorPages(key=_by_id)
    items = list(reversed(_records(range(7))))
    first = pages.paginate(items, {"limit": "3"}, descending=True)
    cursor = first.pagination["nextCursor"]
    second = pages.paginate(items, {"limit": "3", "cursor": cursor}, descending=True)
    assert _ids(first.items) == [6, 5, 4] and _ids(second.items) == [3, 2, 1]


def test_a_tuple_key_round_trips_through_the_cursor() -> None:
    pages = CursorPages(key=lambda item: (item["name"], item["_id"]))
    items = sorted(
        ({"name": name, "_id": f"{n}"} for n, name in enumerate("bbaac")),
        key=lambda item: (item["name"], item["_id"]),
    )
    first = pages.paginate(items, {"limit": "2"})
    second = pages.paginate(items, {"limit": "2", "cursor": first.pagination["nextCursor"]})
    assert [i["_id"] for i in first.items + second.items] == ["2", "3", "0", "1"]


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.mark.parametrize(
    "cursor",
    [
        "nonsense",
        "next_!!!",
        "next_" + _b64("not json"),
        "next_" + _b64('{"offset": 3}'),  # another format's cursor
        "next_" + _b64('{"keyset": 3}'),  # a key unlike the items' (int against str)
        "prev_" + _b64('{"keyset": "0001", "x": 1}'),
    ],
)
def test_an_unreadable_cursor_is_refused_or_restarts(cursor: str) -> None:
    items = _records(range(5))
    with pytest.raises(PageQueryError) as refused:
        CursorPages(key=_by_id).paginate(items, {"cursor": cursor})
    assert refused.value.param == "cursor"
    restart = CursorPages(key=_by_id, invalid_cursor="first_page")
    assert _ids(restart.paginate(items, {"cursor": cursor, "limit": "2"}).items) == [0, 1]


def test_the_documents_cursor_example_is_not_one_of_the_fakes() -> None:
    # The example `next_X2lk…` decodes to "_id|631addc93c9a800b0a411399|-1╡", a format the
    # document does not define: the fake's own cursors are base64 JSON.
    example = "next_X2lkfDYzMWFkZGM5M2M5YTgwMGIwYTQxMTM5OXwtMeKVoQ=="
    with pytest.raises(PageQueryError):
        CursorPages(key=_by_id).paginate(_records(range(3)), {"cursor": example})


def test_a_keyset_cursor_needs_a_key_and_limits_are_checked() -> None:
    with pytest.raises(ValueError, match="key"):
        CursorPages()
    with pytest.raises(PageQueryError) as refused:
        CursorPages(key=_by_id).paginate([], {"limit": "0"})
    assert refused.value.param == "limit"
    assert CursorPages(key=_by_id, on_invalid="default").limit({"limit": "x"}) == 100
