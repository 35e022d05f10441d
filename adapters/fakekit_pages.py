"""Fake vendors' pagination: how a listing is cut into pages and how the pages are announced.

Three styles, each following its vendor document to the letter:

- `LinkHeaderPages` (MOCO): `page`/`per_page` query, `X-Page`/`X-Per-Page`/`X-Total`
  headers and `Link: <…?page=N+1>; rel="next"` until the last page.
- `MetaPaginationPages` (Click Maint): `page`/`per_page` query, `meta.pagination` with
  `total`, `page`, `per_page` and `total_pages` in the body.
- `CursorPages` (CLOUDWORK|PRO): `cursor`/`limit` query, a `pagination` object with
  `hasNext`, `hasPrev`, `nextCursor`, `prevCursor`, `pageResults`, `totalResults`.

A fake filters and orders the full listing itself, then hands the ordered items and the
request's query to a style and gets back the page's items with the headers or body parts to
send. A paging parameter the vendor would refuse raises `PageQueryError`; the fake answers it
in its own error envelope (see `adapters.fakekit_errors`), since the status is its own too.
Whatever a document leaves open is a constructor field marked `# not in the vendor document`.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

import msgspec
from yarl import URL

T = TypeVar("T")

OnInvalid = Literal["reject", "default"]
"""What a style does with a malformed paging parameter: raise `PageQueryError`, or ignore it."""


class PageQueryError(ValueError):
    """A paging parameter the vendor refuses (`param` names it, `message` says why)."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param
        self.message = message


def _positive_int(query: Mapping[str, str], name: str, default: int, on_invalid: OnInvalid) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    # isascii: str.isdigit() accepts digits such as "²" that int() then refuses.
    if raw.isascii() and raw.isdigit() and int(raw) >= 1:
        return int(raw)
    if on_invalid == "default":
        return default
    raise PageQueryError(name, f"{name} must be an integer >= 1")


def _capped(value: int, maximum: int | None) -> int:
    return value if maximum is None else min(value, maximum)


@dataclass(frozen=True)
class PageWindow:
    """The page a request asks for, after defaults and caps: 1-based `page`, `per_page`."""

    page: int
    per_page: int

    @property
    def start(self) -> int:
        """Index of the page's first item in the full listing."""
        return (self.page - 1) * self.per_page

    @property
    def end(self) -> int:
        """Index just past the page's last item."""
        return self.page * self.per_page


@dataclass(frozen=True, kw_only=True)
class _NumberedPages:
    """Shared by the two page-number styles: reading `page`/`per_page` from the query."""

    default_per_page: int
    # Upper bound for per_page (a larger one is cut down to it); None = no bound.
    max_per_page: int | None = None  # not in the vendor document
    # A page or per_page that is not an integer >= 1 is refused (PageQueryError), or
    # "default" ignores it.
    on_invalid: OnInvalid = "reject"  # not in the vendor document
    page_param: str = "page"
    per_page_param: str = "per_page"

    def __post_init__(self) -> None:
        if self.default_per_page < 1:
            raise ValueError("default_per_page must be >= 1")
        if self.max_per_page is not None and self.max_per_page < 1:
            raise ValueError("max_per_page must be >= 1")

    def window(self, query: Mapping[str, str]) -> PageWindow:
        """The page `query` asks for; PageQueryError when the vendor would refuse it."""
        page = _positive_int(query, self.page_param, 1, self.on_invalid)
        per_page = _positive_int(query, self.per_page_param, self.default_per_page, self.on_invalid)
        return PageWindow(page, _capped(per_page, self.max_per_page))


LinkRel = Literal["next", "prev", "first", "last"]
"""A relation `LinkHeaderPages` can name in its `Link` header."""


@dataclass(frozen=True)
class LinkPage(Generic[T]):
    """One page of a Link-header listing: its items and the headers to answer with."""

    items: list[T]
    headers: dict[str, str]
    window: PageWindow


@dataclass(frozen=True, kw_only=True)
class LinkHeaderPages(_NumberedPages):
    """MOCO's pages: `X-Page`, `X-Per-Page`, `X-Total` and `Link: <…>; rel="next"`.

    The document: "a common default of 100 entries per page", the example headers `X-Page`
    3, `X-Per-Page` 100, `X-Total` 415, `Link<…/projects.json?page=4>; rel="next"`, and "If
    there is not Link header with rel="next", the current page is the last page." A page
    beyond the end is empty and still carries the headers.
    """

    default_per_page: int = 100
    # The next link repeats the request's other query parameters (the document's example has
    # none); False links with page=N+1 only.
    link_keeps_query: bool = True  # not in the vendor document
    # The relations the Link header names. The document shows only "next"; "prev", "first"
    # and "last" are what other Link-paging servers add.
    rels: tuple[LinkRel, ...] = ("next",)  # not in the vendor document

    def paginate(self, items: Sequence[T], url: URL) -> LinkPage[T]:
        """Cut the page that `url` (the request URL, whose query it reads) asks for."""
        return self.cut(items, self.window(url.query), url)

    def cut(self, items: Sequence[T], window: PageWindow, url: URL) -> LinkPage[T]:
        """The page `window` of `items`, linked relative to the request `url`.

        Separate from `window` so that a fake can check the paging parameters before its own
        (sorting, filtering) and answer the first bad one, as it would in one pass.
        """
        total = len(items)
        headers = {
            "X-Page": str(window.page),
            "X-Per-Page": str(window.per_page),
            "X-Total": str(total),
        }
        last = max(1, math.ceil(total / window.per_page))
        targets = {
            "next": window.page + 1 if window.end < total else None,
            "prev": window.page - 1 if window.page > 1 else None,
            "first": 1,
            "last": last,
        }
        links = [
            f'<{self._link(url, number)}>; rel="{rel}"'
            for rel in self.rels
            if (number := targets[rel]) is not None
        ]
        if links:
            headers["Link"] = ", ".join(links)
        return LinkPage(list(items[window.start : window.end]), headers, window)

    def _link(self, url: URL, page: int) -> URL:
        if self.link_keeps_query:
            return url.update_query({self.page_param: str(page)})
        return url.with_query({self.page_param: str(page)})


@dataclass(frozen=True)
class MetaPage(Generic[T]):
    """One page of a `meta.pagination` listing: its items and the pagination object."""

    items: list[T]
    pagination: dict[str, int]
    window: PageWindow

    def body(self, meta: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Click Maint's list answer: `{"status": "success", "data": […], "meta": {…}}`.

        `meta` holds the rest of the document's `meta` (`entity`, `customer`, `sort`, …);
        `pagination` is added to it.
        """
        return {
            "status": "success",
            "data": self.items,
            "meta": {**(meta or {}), "pagination": self.pagination},
        }


@dataclass(frozen=True, kw_only=True)
class MetaPaginationPages(_NumberedPages):
    """Click Maint's pages: `page` ("Default: 1"), `per_page` ("Default: 50") and
    `meta.pagination` = `{"total", "page", "per_page", "total_pages"}`, as in the document's
    example `{"total": 50, "page": 1, "per_page": 25, "total_pages": 2}`.
    """

    default_per_page: int = 50
    # total_pages of an empty listing: 0 (ceil(0 / per_page)) or 1 (one empty page).
    total_pages_when_empty: int = 0  # not in the vendor document

    def paginate(self, items: Sequence[T], query: Mapping[str, str]) -> MetaPage[T]:
        """Cut the page that `query` asks for; a page beyond the end is empty."""
        window = self.window(query)
        total = len(items)
        total_pages = math.ceil(total / window.per_page) if total else self.total_pages_when_empty
        pagination = {
            "total": total,
            "page": window.page,
            "per_page": window.per_page,
            "total_pages": total_pages,
        }
        return MetaPage(list(items[window.start : window.end]), pagination, window)


CursorFormat = Literal["keyset", "offset"]
"""What a cursor remembers: the sort key of the item at the page's edge, or its position."""


@dataclass(frozen=True)
class CursorPage(Generic[T]):
    """One page of a cursor listing: its items, the `pagination` and `options` objects."""

    items: list[T]
    pagination: dict[str, Any]
    options: dict[str, Any]

    def body(self, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """CLOUDWORK|PRO's list answer, with the document's keys: `code`, `reason`, `data`,
        `pagination`, `options` (`limit`, plus the fake's `sortBy`/`filterBy`), `success`."""
        return {
            "code": 200,
            "reason": "",
            "data": self.items,
            "pagination": self.pagination,
            "options": {**self.options, **(options or {})},
            "success": True,
        }


@dataclass(frozen=True, kw_only=True)
class CursorPages:
    """CLOUDWORK|PRO's pages: `cursor` and `limit` ("Default: 100") in the query.

    The document gives the answer's `pagination` object (`hasNext`, `hasPrev`, `nextCursor`,
    `prevCursor`, `pageResults` = items in this answer, `totalResults` = all items matching
    the filters) and cursors such as `next_X2lkfDYz…` / `prev_X2lkfDYz…`, whose payload is
    base64 of `_id|<id>|-1…`: a position by sort key. So by default a cursor here remembers
    the `key` of the item at the page's edge ("keyset"): the next page starts after that key
    however the listing changed meanwhile. Items that were inserted before the edge are then
    not seen in this pass; items deleted before it shift nothing. An item whose key changes
    (e.g. it is sorted by update time and is updated) can move across the edge: it is then
    seen twice or not at all. "offset" remembers the position instead, so an insertion or
    deletion before the edge shifts the following pages by one.
    """

    default_limit: int = 100
    # Upper bound for limit (a larger one is cut down to it); None = no bound.
    max_limit: int | None = None  # not in the vendor document
    cursor_format: CursorFormat = "keyset"  # not in the vendor document
    # keyset: the item's sort key, unique across items and ascending along the listing
    # (descending when `paginate` is told so), e.g. `lambda wo: (wo["name"], wo["_id"])`.
    # JSON values only (str, int, float, lists of them): it travels inside the cursor.
    key: Callable[[Any], Any] | None = None  # not in the vendor document
    # A cursor the fake cannot read (not base64, wrong prefix, stale format) is refused
    # (PageQueryError) or "first_page" answers the first page as if none were sent.
    invalid_cursor: Literal["reject", "first_page"] = "reject"  # not in the vendor document
    # A limit that is not an integer >= 1.
    on_invalid: OnInvalid = "reject"  # not in the vendor document
    # nextCursor/prevCursor when there is no such page (the document types them as string).
    no_cursor: str | None = None  # not in the vendor document
    next_prefix: str = "next_"
    prev_prefix: str = "prev_"
    cursor_param: str = "cursor"
    limit_param: str = "limit"

    def __post_init__(self) -> None:
        if self.default_limit < 1:
            raise ValueError("default_limit must be >= 1")
        if self.max_limit is not None and self.max_limit < 1:
            raise ValueError("max_limit must be >= 1")
        if self.cursor_format == "keyset" and self.key is None:
            raise ValueError("a keyset cursor needs `key`")

    def limit(self, query: Mapping[str, str]) -> int:
        """The page size `query` asks for; PageQueryError when the vendor would refuse it."""
        raw = _positive_int(query, self.limit_param, self.default_limit, self.on_invalid)
        return _capped(raw, self.max_limit)

    def paginate(
        self, items: Sequence[T], query: Mapping[str, str], *, descending: bool = False
    ) -> CursorPage[T]:
        """Cut the page that `query`'s `cursor` and `limit` ask for.

        `descending` says that `key` falls along `items` (a keyset cursor compares keys);
        an offset cursor ignores it.
        """
        limit = self.limit(query)
        start, end = self._bounds(items, query.get(self.cursor_param), limit, descending)
        page = list(items[start:end])
        has_next, has_prev = end < len(items), start > 0
        pagination = {
            "hasNext": has_next,
            "hasPrev": has_prev,
            "nextCursor": self._cursor(self.next_prefix, items, end - 1) if has_next else None,
            "prevCursor": self._cursor(self.prev_prefix, items, start) if has_prev else None,
            "pageResults": len(page),
            "totalResults": len(items),
        }
        for name in ("nextCursor", "prevCursor"):
            if pagination[name] is None:
                pagination[name] = self.no_cursor
        return CursorPage(page, pagination, {"limit": limit})

    # ------------------------------------------------------------------ cursors

    def _bounds(
        self, items: Sequence[T], cursor: str | None, limit: int, descending: bool
    ) -> tuple[int, int]:
        """[start, end) of the page a cursor (or no cursor) asks for."""
        if not cursor:
            return 0, min(limit, len(items))
        try:
            forward, edge = self._read(cursor, items, descending)
        except (ValueError, TypeError):
            if self.invalid_cursor == "first_page":
                return 0, min(limit, len(items))
            raise PageQueryError(self.cursor_param, "cursor is not valid") from None
        if forward:
            return edge, min(edge + limit, len(items))
        return max(0, edge - limit), edge

    def _read(self, cursor: str, items: Sequence[T], descending: bool) -> tuple[bool, int]:
        """(forward?, index the page starts after / ends before); ValueError if unreadable."""
        if cursor.startswith(self.next_prefix):
            forward, payload = True, cursor.removeprefix(self.next_prefix)
        elif cursor.startswith(self.prev_prefix):
            forward, payload = False, cursor.removeprefix(self.prev_prefix)
        else:
            raise ValueError("unknown cursor prefix")
        try:
            value = msgspec.json.decode(base64.b64decode(payload, validate=True))
        except (binascii.Error, msgspec.DecodeError):
            raise ValueError("unreadable cursor") from None
        if not isinstance(value, dict) or set(value) != {self.cursor_format}:
            raise ValueError("cursor of another format")
        edge = value[self.cursor_format]
        if self.cursor_format == "offset":
            if not isinstance(edge, int) or isinstance(edge, bool) or edge < 0:
                raise ValueError("bad offset")
            # next: the index of its page's last item; prev: of its page's first item.
            return forward, min(edge + 1 if forward else edge, len(items))
        # keyset: count the items on the near side of the edge key (the listing is ordered by
        # key, so they are a prefix). A comparison between unlike keys raises TypeError.
        keys = [self._key(item) for item in items]
        if forward:
            before = [k <= edge if not descending else k >= edge for k in keys]
        else:
            before = [k < edge if not descending else k > edge for k in keys]
        return forward, sum(before)

    def _cursor(self, prefix: str, items: Sequence[T], index: int) -> str:
        edge: Any = index if self.cursor_format == "offset" else self._key(items[index])
        payload = msgspec.json.encode({self.cursor_format: edge})
        return prefix + base64.b64encode(payload).decode("ascii")

    def _key(self, item: Any) -> Any:
        assert self.key is not None  # __post_init__ requires it for keyset cursors
        # Through JSON, as the key travels in the cursor: a tuple then compares as a list.
        return msgspec.json.decode(msgspec.json.encode(self.key(item)))
