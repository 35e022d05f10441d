"""Everything about Click Maint that its API document does not give: one place, each configurable.

The copy of the document this connector is built from lost most paths and the number of its
rate limit. What it shows: `Authorization: Bearer`, `X-Entity-Id` (entities from
`GET /entities`), `https://app.clickmaint.com/api/v1/assets` ("replace the .com with .ca" for
the Canadian region), `/api/v1/parts`, `PATCH /api/v1/parts/{id}/reconcile` (in the batch
example), the rate-limit headers, `page`/`per_page`/`sort`/`filter[field_matcher]`, the
envelopes and the request bodies. Paths here are relative to the base URL (`…/api/v1`).
Each guess below is marked `# not in the vendor document`; an instance overrides it under
`options` (`ClickMaintOptions`, at the end).
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from adapters.settings import PolledVendorOptions

# --- where the API is -------------------------------------------------------------------------

# The document's first request: `https://app.clickmaint.com/api/v1/assets`, and "Replace the
# .com with .ca if your account is in our Canadian region". The base URL is the API's root
# (`…/api/v1`, as MOCO's is), the paths below are relative to it. The batch example's op urls
# are server paths (`/api/v1/parts`): a batch op's url is the base URL's path plus the path.
REGION_BASE_URLS = {
    "com": "https://app.clickmaint.com/api/v1",
    "ca": "https://app.clickmaint.ca/api/v1",
}
API_ROOT_PATH = "/api/v1"

# "you must first make a call to the GET /entities API endpoint": read, like the other paths
# here, relative to the API root (`/api/v1/entities`); the server root is the other reading.
# Not per instance: the core takes one scope source per vendor (`PollSpec.scopes`).
ENTITIES_PATH = "/entities"  # not in the vendor document (relative to /api/v1)
# How often the entities are listed again, so that a new entity starts its poll tasks.
ENTITIES_REFRESH_S = 300.0  # not in the vendor document (a choice, not a vendor figure)

# --- listings ---------------------------------------------------------------------------------

# Collection paths of the polled resources. `{part_id}` is filled per part.
RESOURCE_PATHS = {
    "assets": "/assets",  # shown in the document
    "locations": "/locations",  # not in the vendor document
    "parts": "/parts",  # shown in the document
    "part_transactions": "/parts/{part_id}/transactions",  # not in the vendor document
    "pm_schedules": "/pm_schedules",  # not in the vendor document
    "procedures": "/procedures",  # not in the vendor document
    "work_order_requests": "/work_order_requests",  # not in the vendor document
    "users": "/users",  # not in the vendor document
    "vendors": "/vendors",  # not in the vendor document
    "work_orders": "/work_orders",  # not in the vendor document
}

# The listings' order: the document's `sort` syntax ("sort=created_at desc") with the change
# time, newest first (the order in which a change during paging cannot hide a record, see
# adapters/core/listing_guard.py). Only the part transactions document `updated_at desc` (as
# their default); that every listing sorts by `updated_at` is a guess. Whatever comes back
# is checked page by page; `options.poll_params` changes or drops (null) it per resource.
POLL_PARAMS = {"sort": "updated_at desc"}  # not in the vendor document (the field)

# "Filter using filter[field_matcher] syntax", with `name_cont` and `..._eq` as examples (the
# matchers of Ransack). The matcher for "changed at or after" is not given: Ransack's `gteq`
# on `updated_at` is the guess, sent as `filter[updated_at_gteq]=2025-09-24T14:20:25Z`.
# `options.updated_since_matcher` replaces it; null lists everything on every pass.
UPDATED_SINCE_MATCHER = "updated_at_gteq"  # not in the vendor document

# A part's transactions are listed only below the part (`/parts/{id}/transactions`), so they
# are read for the parts whose `updated_at` moved since the last pass: not in the vendor
# document is that a transaction (restock, adjustment, use on a work order) moves its part's
# `updated_at`. It changes the part's `on_hand_qty` or cost, which the part record carries.
# How far before the parts' floor a changed part's transactions are read again (each is
# published once, whatever is re-read): room for a part whose `updated_at` lags behind its
# transaction's. `options.part_transactions_margin_s` replaces it.
TRANSACTIONS_MARGIN_S = 3600.0  # not in the vendor document
# Pages of one part's transactions read at most in one go.
TRANSACTIONS_MAX_PAGES = 200  # not in the vendor document (a bound, not a vendor figure)

# The listing's work orders do not carry `part_assignments`; the single work order does. With
# `options.work_order_details` (default on) each changed work order is read once more, at its
# collection's path plus `/{id}` (the document gives the parameter `id`, not the path), and
# published as that record, part assignments included.
DETAIL_PATH = "{collection}/{id}"  # not in the vendor document

# --- commands ---------------------------------------------------------------------------------

# The collections commands create in: (path, guessed). Records are addressed as `{path}/{id}`.
COMMAND_PATHS = {
    "asset": ("/assets", False),  # shown in the document
    "location": ("/locations", True),  # not in the vendor document
    "part": ("/parts", False),  # shown in the document
    "work_order": ("/work_orders", True),  # not in the vendor document
    "work_order_request": ("/work_order_requests", True),  # not in the vendor document
}
CREATE_METHOD = "POST"  # not in the vendor document (the usual one for "to create")
# The document's request bodies are examples and mark no field required. The models in
# commands.py require `name` (asset, location, part) and `title` (work order, request) on
# create; any field the examples do not show goes in `data.extra`.
REQUIRED_ON_CREATE = {  # not in the vendor document
    "asset": "name",
    "location": "name",
    "part": "name",
    "work_order": "title",
    "work_order_request": "title",
}
# The document shows PATCH only for `reconcile` in its batch example; updates are taken to
# accept it too. `options.update_method: PUT` switches.
UPDATE_METHOD: Literal["PATCH", "PUT"] = "PATCH"  # not in the vendor document

# Part stock and cost: (path, guessed). The method is the batch example's PATCH.
PART_ACTION_METHOD = "PATCH"  # shown for reconcile only
PART_ACTION_PATHS = {
    "restock": ("/parts/{id}/restock", True),  # not in the vendor document
    # The document's adjustment (quantity +/-, note required) is the batch example's reconcile.
    "adjust": ("/parts/{id}/reconcile", False),
    # The document shows two cost operations with the same fields (cost, note); which path
    # each has is lost (the second may set the average cost). This one sets the unit cost.
    "set_cost": ("/parts/{id}/set_cost", True),  # not in the vendor document
}

# A work order's part assignments: the document gives the parameters (the work order `id`;
# `part_id` and `quantity` in the body to add or change; `part_id` in the path to remove).
PART_ASSIGNMENTS_PATH = "/work_orders/{id}/part_assignments"  # not in the vendor document
PART_ASSIGNMENT_ADD_METHOD = "POST"  # not in the vendor document
PART_ASSIGNMENT_CHANGE_METHOD = "PATCH"  # not in the vendor document
PART_ASSIGNMENT_PATH = "/work_orders/{id}/part_assignments/{part_id}"  # not in the vendor document

# A 2xx answer whose body is the error envelope (`{"status": "error", "message": …}`) is
# taken as a failure: the document shows the envelope only with its 401.
ERROR_ENVELOPE_IN_2XX_FAILS = True  # not in the vendor document

# --- batching (used by the core's command batching, not by this folder) ----------------------

# The batch endpoint: `{"ops": [{"method", "url", "params"}], "sequential": true}` answered
# `{"results": [{"status", "body"}]}`, 1..100 operations (documented); its path is lost. Op
# urls are server paths: API_ROOT_PATH + the command's path (`/api/v1/parts/24/reconcile`).
BATCH_PATH = "/batch"  # not in the vendor document (the batch_api gem's default is /batch)
BATCH_MAX_OPS = 100  # documented: "Array of objects [ 1 .. 100 ] items"
# How many commands go into one batch by default: fewer than the maximum, so that one slow
# or refused batch holds back few commands.
BATCH_SIZE_DEFAULT = 20  # not in the vendor document (a choice)

# --- rate limit -------------------------------------------------------------------------------

# "API requests are limited to:" — the number is lost from this copy. Click Maint's public
# documentation states 300 requests per 5 minutes per IP (FIELD-NOTES.md). The headers
# X-RateLimit-Remaining / X-RateLimit-Reset ("Unix timestamp when the limit resets") and
# retry-after are documented and honoured whatever the number.
RATE_LIMIT_REQUESTS = 300  # not in the vendor document
RATE_LIMIT_PER_SECONDS = 300.0  # not in the vendor document


EntityId = Annotated[int, msgspec.Meta(gt=0)]
# `$` and not `\Z`: the same pattern is in the chart's schema, which Go's regexp (helm) reads.
Matcher = Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_]*$")]


class BatchOptions(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """How commands are coalesced into the batch endpoint."""

    enabled: Annotated[
        bool,
        msgspec.Meta(description="coalesce commands queued behind the rate budget into batches"),
    ] = True
    path: Annotated[
        str,
        msgspec.Meta(
            description="the batch endpoint, relative to base_url (not in the vendor document)"
        ),
    ] = BATCH_PATH
    max_ops: Annotated[
        int,
        msgspec.Meta(
            ge=1,
            le=BATCH_MAX_OPS,
            description="most commands per batch; a lost batch answer makes that many "
            "creates ambiguous",
        ),
    ] = BATCH_SIZE_DEFAULT
    chain_subjects: Annotated[
        bool,
        msgspec.Meta(
            description="let a record's later commands join its earlier ones' batch (the "
            "vendor runs a batch in order); off: one command per record per batch"
        ),
    ] = True


class ClickMaintOptions(PolledVendorOptions, kw_only=True, forbid_unknown_fields=True):
    """Click Maint's `options`: the entities, the region, and the guesses above."""

    entities: Annotated[
        Literal["all"] | Annotated[list[EntityId], msgspec.Meta(min_length=1)],
        msgspec.Meta(
            description="`all`: every entity GET /entities lists, read again every "
            "entities_refresh_s (new ones are picked up); or the ids to poll. A "
            "command without data.entity_id goes to the only one (several listed here: "
            "rejected; with `all`, the account's only entity, else failed)"
        ),
    ] = "all"
    entities_refresh_s: Annotated[
        float,
        msgspec.Meta(
            ge=1.0,
            description="with `entities: all`, how often GET /entities is read again (a new "
            "entity's polling starts then; commands to an instance's only entity re-check "
            "it as often)",
        ),
    ] = ENTITIES_REFRESH_S
    region: Annotated[
        Literal["com", "ca"] | None,
        msgspec.Meta(
            description="com: https://app.clickmaint.com/api/v1, ca: "
            "https://app.clickmaint.ca/api/v1. base_url is required by Workbridge: set it to "
            "the region's URL (one of the other region is refused; any other base_url, a "
            "proxy or a fake, wins)"
        ),
    ] = None
    updated_since_matcher: Annotated[
        Matcher | None,
        msgspec.Meta(
            description="the filter[<matcher>] that asks for records changed at or after a "
            "time (not in the vendor document); null: every pass lists everything"
        ),
    ] = UPDATED_SINCE_MATCHER  # not in the vendor document
    work_order_details: Annotated[
        bool,
        msgspec.Meta(
            description="read each changed work order once more (GET /work_orders/{id}) to "
            "publish it with its part_assignments; costs one request per change"
        ),
    ] = True
    part_transactions_margin_s: Annotated[
        float,
        msgspec.Meta(
            ge=0,
            description="a changed part's transactions are read from this long before the "
            "pass's floor (not in the vendor document)",
        ),
    ] = TRANSACTIONS_MARGIN_S  # not in the vendor document
    update_method: Annotated[
        Literal["PATCH", "PUT"],
        msgspec.Meta(description="the method of the update commands (not in the document)"),
    ] = UPDATE_METHOD  # not in the vendor document
    batch: BatchOptions = msgspec.field(default_factory=BatchOptions)

    def __post_init__(self) -> None:
        # An instance names only the paths it changes; the others keep the guesses above.
        self.resource_paths = {**RESOURCE_PATHS, **self.resource_paths}

    def polls_entity(self, entity: str) -> bool:
        """Whether this instance polls `entity` (a scope as discovered: the id as text)."""
        return self.entities == "all" or entity in {str(e) for e in self.entities}
