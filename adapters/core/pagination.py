"""Paginators: how a vendor's listing asks for its next page, read from request and response.

A paginator is a small declared object, one per pagination style a vendor documents:

- `HeaderLinkPaginator`: RFC 8288 `Link: <url>; rel="next"` (MOCO), as aiohttp parses it;
- `PageNumberPaginator`: `page`/`per_page` and a page count in the body (Click Maint's
  `meta.pagination.total_pages`);
- `CursorPaginator`: an opaque token in the body (CLOUDWORK|PRO's
  `pagination.hasNext/nextCursor`, sent back as `cursor`).

Each keeps the first request's query on every page, so a next page never belongs to another
listing (one without the `updated_after` filter or the requested order). `PageWalk` runs one
pass: it refuses a request it has already sent (a loop) and counts pages against a cap.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlencode

import msgspec
from yarl import URL

from adapters.core.vendor_http import VendorResponse

JsonPath = tuple[str, ...]
"""Keys from the top of a JSON body down to a value; `()` is the body itself."""


def dig(body: Any, path: JsonPath) -> Any:
    """The value at `path` in a decoded JSON body, or None when any step is missing."""
    for key in path:
        if not isinstance(body, dict):
            return None
        body = body.get(key)
    return body


def as_count(value: Any) -> int | None:
    """A non-negative integer from a header or body value, else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


class PageRequest(msgspec.Struct, frozen=True):
    """One listing request: a path below the base URL (or a same-origin URL) and its query."""

    url: str
    params: dict[str, str] = msgspec.field(default_factory=dict)

    def fingerprint(self) -> str:
        """The request as one string, whatever the order of its query parameters."""
        return f"{self.url}?{urlencode(sorted(self.params.items()))}"


class Paginator(Protocol):
    """A vendor's pagination style: the first request, the next one, the listing's total."""

    def first(self, path: str, params: Mapping[str, str], page_size: int) -> PageRequest:
        """The first page's request for `path` with the listing's own query."""
        ...

    def next(self, sent: PageRequest, response: VendorResponse, body: Any) -> PageRequest | None:
        """The request for the page after `sent`, or None when `response` was the last page."""
        ...

    def total(self, response: VendorResponse, body: Any) -> int | None:
        """How many records the whole listing holds, when the vendor says so."""
        ...


def _sized(params: Mapping[str, str], size_param: str | None, page_size: int) -> dict[str, str]:
    out = dict(params)
    if size_param:
        out[size_param] = str(page_size)
    return out


@dataclass(frozen=True)
class HeaderLinkPaginator:
    """`Link: <url>; rel="next"`: there is a next page while the vendor links one.

    The link comes from aiohttp's own Link parsing (`VendorResponse.links`), resolved against
    the request URL. The first request's query is kept: a parameter the link leaves out is
    added back, one it carries (the page) wins.
    """

    size_param: str | None = "per_page"
    rel: str = "next"
    # A response header with the listing's total record count (MOCO: X-Total).
    total_header: str | None = None

    def first(self, path: str, params: Mapping[str, str], page_size: int) -> PageRequest:
        """The listing's query plus the page size."""
        return PageRequest(path, _sized(params, self.size_param, page_size))

    def next(self, sent: PageRequest, response: VendorResponse, body: Any) -> PageRequest | None:
        """The linked page, with the first request's query kept."""
        link = response.links.get(self.rel.lower())
        if not link:
            return None
        url = URL(link)
        linked = {key: url.query[key] for key in url.query}
        return PageRequest(str(url.with_query(None)), {**sent.params, **linked})

    def total(self, response: VendorResponse, body: Any) -> int | None:
        """The total header, when declared and a number."""
        if self.total_header is None:
            return None
        return as_count(response.headers.get(self.total_header.lower()))


@dataclass(frozen=True)
class PageNumberPaginator:
    """`page=N&per_page=M`, with the page count in the body (Click Maint: `meta.pagination`).

    Without a page count, a page shorter than asked for is the last.
    """

    page_param: str = "page"
    size_param: str = "per_page"
    first_page: int = 1
    total_pages_at: JsonPath | None = ("meta", "pagination", "total_pages")
    total_at: JsonPath | None = ("meta", "pagination", "total")
    # Where the page's records are, to tell a short page when no page count is given.
    records_at: JsonPath = ("data",)

    def first(self, path: str, params: Mapping[str, str], page_size: int) -> PageRequest:
        """The listing's query, the first page number and the page size."""
        sized = _sized(params, self.size_param, page_size)
        return PageRequest(path, {**sized, self.page_param: str(self.first_page)})

    def next(self, sent: PageRequest, response: VendorResponse, body: Any) -> PageRequest | None:
        """Page N+1 while N is below the page count (or while pages come back full)."""
        current = as_count(sent.params.get(self.page_param)) or self.first_page
        pages = as_count(dig(body, self.total_pages_at)) if self.total_pages_at else None
        if pages is not None:
            if current >= pages:
                return None
        else:
            records = dig(body, self.records_at)
            asked = as_count(sent.params.get(self.size_param))
            count = len(records) if isinstance(records, list) else 0
            if count == 0 or (asked is not None and count < asked):
                return None
        return PageRequest(sent.url, {**sent.params, self.page_param: str(current + 1)})

    def total(self, response: VendorResponse, body: Any) -> int | None:
        """The body's record total, when declared and a number."""
        return as_count(dig(body, self.total_at)) if self.total_at else None


@dataclass(frozen=True)
class CursorPaginator:
    """An opaque next-page token in the body, sent back as a query parameter
    (CLOUDWORK|PRO: `pagination.hasNext` and `pagination.nextCursor`, as `cursor`)."""

    cursor_param: str = "cursor"
    size_param: str | None = "limit"
    next_at: JsonPath = ("pagination", "nextCursor")
    # A flag that says whether there is a next page; None: a token means there is.
    has_next_at: JsonPath | None = ("pagination", "hasNext")
    total_at: JsonPath | None = ("pagination", "totalResults")

    def first(self, path: str, params: Mapping[str, str], page_size: int) -> PageRequest:
        """The listing's query and the page size, no cursor."""
        return PageRequest(path, _sized(params, self.size_param, page_size))

    def next(self, sent: PageRequest, response: VendorResponse, body: Any) -> PageRequest | None:
        """The same query with the vendor's next cursor, unless the vendor says there is no
        next page. A next page said to exist without a cursor to reach it is an error (the
        pass must not count as complete)."""
        flag = dig(body, self.has_next_at) if self.has_next_at is not None else None
        if isinstance(flag, str):
            flag = {"true": True, "false": False}.get(flag.strip().lower(), flag)
        token = dig(body, self.next_at)
        if flag is False:
            return None
        if not isinstance(token, str) or not token:
            if flag is True:
                raise PaginationBroken(f"GET {sent.url}: a next page is announced without a cursor")
            return None
        return PageRequest(sent.url, {**sent.params, self.cursor_param: token})

    def total(self, response: VendorResponse, body: Any) -> int | None:
        """The body's result total, when declared and a number."""
        return as_count(dig(body, self.total_at)) if self.total_at else None


class PaginationBroken(Exception):
    """The vendor announced a next page it gave no way to reach: the pass cannot be
    complete (its mark stays)."""


class PaginationLoop(Exception):
    """The vendor pointed at a page already read in this pass."""


class PageWalk:
    """One pass over a listing's pages: refuses repeats, counts pages against a cap.

    `rewind_to` re-reads an earlier page on purpose; the pages after it may then be asked
    for again without counting as a loop.
    """

    def __init__(self, max_pages: int, sent: Sequence[PageRequest] = ()) -> None:
        self.max_pages = max_pages
        self.pages = 0
        self._sent: list[str] = [request.fingerprint() for request in sent]

    def send(self, request: PageRequest) -> None:
        """Count `request` as sent; `PaginationLoop` if this pass already sent it."""
        fingerprint = request.fingerprint()
        if fingerprint in self._sent:
            raise PaginationLoop(f"the vendor linked a page already read: {request.url}")
        self._sent.append(fingerprint)
        self.pages += 1

    def rewind_to(self, request: PageRequest) -> None:
        """Forget `request` and everything sent after it, so they may be read again."""
        fingerprint = request.fingerprint()
        if fingerprint in self._sent:
            del self._sent[self._sent.index(fingerprint) :]

    @property
    def capped(self) -> bool:
        """Whether this pass has read as many pages as it may."""
        return self.pages >= self.max_pages
