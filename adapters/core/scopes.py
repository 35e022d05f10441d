"""Scopes listed by the vendor: the accounts-within-an-account a fanned-out resource runs in.

Click Maint scopes every request to an entity (`X-Entity-Id`) and lists the entities at
`GET /entities`; each of its resources is then polled once per entity, and each
(entity, resource) is a task of its own, with one owner and one state.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from adapters.core.change_source import Fetch, PollError
from adapters.core.pagination import JsonPath, PageRequest, PageWalk, Paginator, dig
from adapters.settings import VendorOptions


@dataclass(frozen=True)
class ListedScopes:
    """Scopes from a listing: the `id_field` of each record, sent back in `header`."""

    path: str
    paginator: Paginator
    header: str
    id_field: str = "id"
    records_at: JsonPath = ("data",)
    params: Mapping[str, str] = field(default_factory=dict)
    page_size: int = 100
    max_pages: int = 100
    # How often the list is read again (a new entity starts its tasks then).
    refresh_every_s: float = 300.0

    def refresh_s(self, options: VendorOptions | None = None) -> float:
        """How often the list is read again (`refresh_every_s`, whatever the options)."""
        return self.refresh_every_s

    async def discover(self, fetch: Fetch, options: VendorOptions | None = None) -> list[str]:
        """Every scope the listing holds, in the vendor's order."""
        walk = PageWalk(self.max_pages)
        request: PageRequest | None = self.paginator.first(self.path, self.params, self.page_size)
        found: list[str] = []
        while request is not None and not walk.capped:
            walk.send(request)
            response = await fetch(request)
            if not 200 <= response.status < 300:
                raise PollError(f"GET {request.url}: {response.status}")
            body = response.json()
            records = dig(body, self.records_at)
            if not isinstance(records, list):
                raise PollError(f"GET {request.url}: no array of scopes")
            for record in records:
                value = record.get(self.id_field) if isinstance(record, dict) else None
                if value is not None and str(value) not in found:
                    found.append(str(value))
            request = self.paginator.next(request, response, body)
        return found

    def headers(self, scope: str) -> Mapping[str, str]:
        """The header that puts a request in `scope`."""
        return {self.header: scope}
