"""Scopes listed by the vendor, with Click Maint's `GET /entities` answer as its document shows."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from adapters.core.change_source import PollError
from adapters.core.pagination import PageNumberPaginator, PageRequest
from adapters.core.scopes import ListedScopes
from adapters.core.vendor_http import VendorResponse

ENTITIES = ListedScopes(path="/entities", paginator=PageNumberPaginator(), header="X-Entity-Id")


def entities_page(ids: list[int], page: int, pages: int) -> dict[str, Any]:
    return {
        "status": "success",
        "data": [{"id": i, "name": "Main Facility", "timezone": "Etc/UTC: +00:00"} for i in ids],
        "meta": {
            "entity": {"id": None, "name": None},
            "pagination": {"total": 3, "page": page, "per_page": 2, "total_pages": pages},
        },
    }


class Pages:
    def __init__(self, *bodies: Any, status: int = 200) -> None:
        self.bodies = list(bodies)
        self.status = status
        self.sent: list[PageRequest] = []

    async def __call__(self, request: PageRequest) -> VendorResponse:
        self.sent.append(request)
        return VendorResponse(self.status, {}, msgspec.json.encode(self.bodies.pop(0)))


async def test_every_entity_on_every_page_is_a_scope() -> None:
    fetch = Pages(entities_page([2, 7], 1, 2), entities_page([9, 7], 2, 2))
    assert await ENTITIES.discover(fetch) == ["2", "7", "9"]
    assert [r.params["page"] for r in fetch.sent] == ["1", "2"]
    assert fetch.sent[0].url == "/entities"


def test_a_scope_is_sent_as_the_entity_header() -> None:
    assert ENTITIES.headers("7") == {"X-Entity-Id": "7"}


async def test_a_failed_listing_is_a_poll_error() -> None:
    with pytest.raises(PollError, match="401"):
        await ENTITIES.discover(
            Pages({"status": "error", "message": "Invalid API key"}, status=401)
        )
    with pytest.raises(PollError, match="no array"):
        await ENTITIES.discover(Pages({"status": "success", "data": {}}))
