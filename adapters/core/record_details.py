"""A listing whose new records are read once more, one by one (their detail answer).

Some listings leave out what the single-record endpoint returns: Click Maint's work orders
lack their `part_assignments`, CLOUDWORK|PRO's expand with `summary=full` only at
`GET /workorders/:id`. The listing's pages are then rewritten before the source reads them:
each record new to the task (not below the pass's floor, not the version already published)
is replaced by its own GET's record. A record deleted since it was listed keeps its listed
version; an unreadable detail answer fails the cycle, which is retried.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import msgspec

from adapters.core.change_source import PollContext, PollError
from adapters.core.list_source import ListByReplicationKey
from adapters.core.pagination import JsonPath, PageRequest, dig
from adapters.core.poll_state import ListState, pass_floor
from adapters.core.rest_command import PathFieldInvalid, path_segment
from adapters.core.vendor_http import VendorResponse


def with_details(
    ctx: PollContext,
    source: ListByReplicationKey,
    state: ListState,
    *,
    detail_path: str = "{collection}/{id}",
    params: Mapping[str, str] | None = None,
    records_at: JsonPath = ("data",),
) -> PollContext:
    """`ctx` whose listing pages hold each new record as its own GET answers it
    (`detail_path` with `{collection}` and `{id}`, `params` as its query)."""
    floor = pass_floor(state, ctx.settings.overlap)
    collection = ctx.path(source.path)

    async def detail(record: Any) -> Any:
        if not isinstance(record, dict):
            return record
        rid, raw = record.get(source.primary_key), record.get(source.replication_key)
        if rid is None or isinstance(rid, dict | list) or raw is None:
            return record  # the listing sends it to the DLQ
        try:
            changed = source.parse_time(str(raw))
            path = detail_path.format(collection=collection, id=path_segment(rid, "id"))
        except (TypeError, ValueError, PathFieldInvalid):
            return record
        if (floor is not None and changed < floor) or state.seen.get(str(rid)) == changed:
            return record  # published already: not published again, not worth a request
        answer = await ctx.fetch(PageRequest(path, dict(params or {})))
        if answer.status == 404:
            return record  # deleted since it was listed: the listed version is the last one
        try:
            data = dig(answer.json(), records_at)
        except msgspec.DecodeError:
            raise PollError(f"GET {path}: unreadable answer") from None
        if not isinstance(data, dict) or str(data.get(source.primary_key)) != str(rid):
            raise PollError(f"GET {path}: the answer holds no record {rid}")
        return data

    async def fetch(request: PageRequest) -> VendorResponse:
        response = await ctx.fetch(request)
        if not 200 <= response.status < 300:
            return response
        try:
            body = response.json()
        except msgspec.DecodeError:
            return response  # the listing reports it
        records = dig(body, source.records_at)
        if not isinstance(records, list) or not isinstance(body, dict):
            return response
        body[source.records_at[-1]] = [await detail(record) for record in records]
        return msgspec.structs.replace(response, body=msgspec.json.encode(body))

    return dataclasses.replace(ctx, fetch=fetch)
