"""A fake Click Maint server on aiohttp, for tests, demos and `workbridge dev`.

It follows Click Maint's API document (vendor-docs/001_9e38201a03f4da29.txt):

- `Authorization: Bearer YOUR_API_KEY`; a wrong key answers the document's one error example,
  `{"status": "error", "message": "Invalid API key"}`.
- "Most API requests also require an Entity ID … specified in the X-Entity-Id header", found
  with "the GET /entities API endpoint". Every record belongs to one entity and is invisible
  from the others.
- Assets, locations, parts (restock, adjust = `PATCH /api/v1/parts/{id}/reconcile`, set cost,
  part transactions), PM schedules, procedures, work-order requests, users, vendors, work
  orders and their part assignments. Request bodies wrap the resource (`{"work_order": {…}}`);
  answers are `{"status": "success", "data": …, "meta": {"entity", "customer"[, "pagination",
  "sort", "search", "filter"]}}`.
- Listings take `search`, `sort` ("Default: "name asc" Example: sort=created_at desc"), the
  `filter[field_matcher]` syntax (the document's examples: `filter[name_cont]=building`,
  `filter[can_be_assigned_to_wo_eq]=true`), `page` ("Default: 1") and `per_page` ("Default:
  50"), and answer `meta.pagination` = `{"total", "page", "per_page", "total_pages"}`.
- The rate-limit headers `X-RateLimit-Limit`, `X-RateLimit-Remaining`, `X-RateLimit-Reset`
  ("Unix timestamp when the limit resets") on every answer to a valid key, and `retry-after`
  ("Amount of seconds to wait until limit resets") on a 429. The number itself was lost from
  the copy ("API requests are limited to:"); FIELD-NOTES give the vendor page's 300 requests
  per 5 minutes per IP.
- A sequential batch: `{"ops": [{"method", "url", "params"}], "sequential": true}` with
  "[ 1 .. 100 ] items" answers `{"results": [{"status", "body"}]}` (the document's example
  runs `GET /api/v1/parts` and `PATCH /api/v1/parts/24/reconcile`).

Wherever the document is silent (most paths were lost from the copy, and it gives no HTTP
status for any error) the fake has to guess. Every guess lives in ONE place,
`FakeClickMaintBehaviour` just below, each marked `# not in the vendor document`, so a reader
sees what is documented and what is assumed, and a test can flip an assumption. The behaviour
is read on every request: a test may swap `fake.behaviour` on a running fake.

Guesses that are not knobs because no client can tell them apart: ids count up per resource
across all entities (so an id is unique in the account); API writes store the sent fields as
they are (`location_id` is not rendered as `location: {…}`); timestamps have second precision
(`2025-07-17T19:19:20Z`, as in every example); ties in a sort keep id-ascending order.

The shared parts come from the fake kit: `MetaPaginationPages` (adapters/fakekit_pages.py)
cuts listings, `FakeRateLimit` with `LimitHeaders` (adapters/fakekit_limits.py) is the sliding
window and its headers, `ClickMaintErrors` (adapters/fakekit_errors.py) the error envelope,
`StaticKeys` (adapters/fakekit_auth.py) checks the Bearer keys, and `PipelineServer`
(adapters/fakekit_pipeline.py) runs every request through faults, the arrival checks, the
delay and the log.

Every answer carries a `Date` from the fake's clock (the one that stamps `updated_at`), as a
server's does.

Test handles: `fail_next`/`delay_next` (from `FakeServer`), the logs `requests` (every API
request and every batch operation with its status), `calls` (accepted writes),
`arrival_times`, `request_times`, `rejected_429`, `max_requests_in_any_window`; records by hand
(`add_entity`, `create_record`, `update_record`, `delete_record`, `records`, `get_record`,
`transactions`); `after_list_page` to change records while a listing is being paged; and an
unauthenticated control API under `/_fake/` (the kit's `fail_next`, `delay_next`, `requests`,
`calls`, and Click Maint's own entities and records; see `_build_app`).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from email.utils import format_datetime
from typing import Any, Literal

import msgspec
from aiohttp import web
from yarl import URL

from adapters.fakekit import json_response, read_json_object
from adapters.fakekit_auth import KeyHeader, StaticKeys
from adapters.fakekit_control import mount_control_routes
from adapters.fakekit_errors import ClickMaintErrors
from adapters.fakekit_limits import FakeRateLimit, LimitHeaders, Verdict, max_in_any_window
from adapters.fakekit_logs import CallLogEntry
from adapters.fakekit_logs import RequestLogEntry as BaseRequestLogEntry
from adapters.fakekit_pages import MetaPaginationPages, PageQueryError
from adapters.fakekit_pipeline import Arrival, PipelineServer, injected_reason

Record = dict[str, Any]
"""A Click Maint record as the API shows it: `id`, `created_at`, `updated_at`, …"""

# Documented: the curl example's `https://app.clickmaint.com/api/v1/assets` and the batch
# example's `/api/v1/parts`.
API_PREFIX = "/api/v1"

# The resources the document describes (internal names, also used by the control API).
RESOURCES = (
    "assets",
    "locations",
    "parts",
    "pm_schedules",
    "procedures",
    "work_order_requests",
    "users",
    "vendors",
    "work_orders",
)

# Documented: the resources with "… to create" and "Fields to update on …" sections, and the
# root key their request bodies wrap the fields in (`{"asset": {…}}`, `{"work_order": {…}}`).
# PM schedules, procedures, users and vendors are documented as list and get only.
BODY_ROOTS: dict[str, str] = {
    "assets": "asset",
    "locations": "location",
    "parts": "part",
    "work_order_requests": "work_order_request",
    "work_orders": "work_order",
}

# Documented: the customer (account) in every answer's `meta`.
DEFAULT_CUSTOMER: dict[str, Any] = {"id": 84, "name": "Acme Corporation"}

# Documented: the entity of the examples (`meta.entity` and the `GET /entities` item).
DEFAULT_ENTITY: dict[str, Any] = {
    "id": 1,
    "name": "Main Facility",
    "description": "Primary manufacturing and distribution facility",
    "address": "123 Example St",
    "datetime_format": "MM/DD/YYYY - 11:59 PM",
    "timezone": "Etc/UTC: +00:00",
    "currency": "USD",
    "currency_name": "United States Dollar",
    "currency_symbol": "$",
}

# The `meta.entity` keys, as in the document's examples.
ENTITY_META_KEYS = ("id", "name", "currency", "currency_symbol", "datetime_format", "timezone")

# Fields a client cannot set: ignored in API bodies.
READ_ONLY_FIELDS = frozenset({"id", "created_at", "updated_at"})

# The matchers the fake can evaluate; which ones a listing accepts is
# `FakeClickMaintBehaviour.filter_matchers`. Longest first, so that `name_not_eq` splits as
# (`name`, `not_eq`), not (`name_not`, `eq`).
IMPLEMENTED_MATCHERS = (
    "not_cont",
    "not_eq",
    "start",
    "gteq",
    "lteq",
    "cont",
    "end",
    "eq",
    "gt",
    "lt",
    "in",
)

# Part fields that the document's part update example leaves out (they are in the create
# example): stock and cost change through restock, reconcile and set cost.
PART_STOCK_FIELDS = ("on_hand_qty", "unit_cost", "avg_unit_cost", "is_non_stock")

RouteTable = dict[str, tuple[str, str]]
"""Action -> (HTTP method, path below the record, `{placeholder}`s allowed)."""


class FakeClickMaintBehaviour(msgspec.Struct, frozen=True, kw_only=True):
    """Every assumption the fake makes where Click Maint's API document is silent.

    The defaults are the fake's best guesses; pass another instance to `FakeClickMaint` (or
    assign `fake.behaviour`) to test a client against a different reading. Fields not marked
    are documented values kept here only so that tests can change them.
    """

    # --- Paths -----------------------------------------------------------------------------
    # The document: "the GET /entities API endpoint", i.e. relative to the API like /assets;
    # "/entities" at the server root is the other reading.
    entities_path: str = "/api/v1/entities"  # not in the vendor document
    # URL segment under /api/v1 -> resource. The document shows /api/v1/assets and
    # /api/v1/parts; the other segments are Rails-style guesses from the section names.
    resource_paths: dict[str, str] = msgspec.field(  # not in the vendor document
        default_factory=lambda: {
            "assets": "assets",
            "locations": "locations",
            "parts": "parts",
            "pm_schedules": "pm_schedules",
            "procedures": "procedures",
            "work_order_requests": "work_order_requests",
            "users": "users",
            "vendors": "vendors",
            "work_orders": "work_orders",
        }
    )
    # Path of the batch endpoint (POST); the document gives its body, not its path. (The
    # body is the batch_api gem's format, whose own default is "/batch".)
    batch_path: str = "/api/v1/batch"  # not in the vendor document
    # Part actions: action -> (method, path below /api/v1/parts/{id}). "reconcile" (adjust)
    # is the document's own `PATCH /api/v1/parts/24/reconcile`; the others are guesses.
    # "set_cost" sets `unit_cost`, "set_avg_cost" sets `avg_unit_cost`: the document has two
    # set-cost sections ("Sets the new …", the rest lost) with different examples.
    part_action_routes: RouteTable = msgspec.field(  # not in the vendor document
        default_factory=lambda: {
            "restock": ("PATCH", "restock"),
            "reconcile": ("PATCH", "reconcile"),
            "set_cost": ("PATCH", "set_cost"),
            "set_avg_cost": ("PATCH", "set_avg_cost"),
        }
    )
    # Part transactions: GET /api/v1/parts/{id}/<segment>[/{transaction_id}].
    part_transactions_segment: str = "transactions"  # not in the vendor document
    # Work-order part assignments: op -> (method, path below /api/v1/work_orders/{id}). The
    # document gives `part_id` and `quantity` in the body of add and change, and `part_id`
    # as a path parameter of remove.
    assignment_routes: RouteTable = msgspec.field(  # not in the vendor document
        default_factory=lambda: {
            "add": ("POST", "part_assignments"),
            "change": ("PATCH", "part_assignments"),
            "remove": ("DELETE", "part_assignments/{part_id}"),
        }
    )
    # Methods of an update (the document shows "Fields to update" without the method; Rails
    # routes both PUT and PATCH to update).
    update_methods: tuple[str, ...] = ("PATCH", "PUT")  # not in the vendor document
    # A method a path does not take (e.g. POST /users, DELETE /assets/1): Rails has no route.
    unsupported_method_status: int = 404  # not in the vendor document

    # --- Authentication and entities -------------------------------------------------------
    # Status of `{"status": "error", "message": "Invalid API key"}` (the document shows the
    # body, no status); a missing Authorization header gets the same answer.
    invalid_api_key_status: int = 401  # not in the vendor document
    # No X-Entity-Id on an entity-scoped request.
    missing_entity_status: int = 400  # not in the vendor document
    # An X-Entity-Id that is not one of the account's entities (or not an integer).
    unknown_entity_status: int = 404  # not in the vendor document

    # --- Statuses --------------------------------------------------------------------------
    create_status: int = 201  # not in the vendor document
    # An unknown record id, or a record of another entity.
    not_found_status: int = 404  # not in the vendor document
    # A body that is not a JSON object, or without its root key (`{"work_order": …}`).
    invalid_json_status: int = 400  # not in the vendor document
    # A field that breaks a rule (a blank name, a quantity with 4 decimals, …).
    validation_status: int = 422  # not in the vendor document
    # A malformed page/per_page, or (when rejected) a bad sort or an unknown filter.
    invalid_query_status: int = 400  # not in the vendor document

    # --- Rate limit ------------------------------------------------------------------------
    # Requests per window; None = no limit and no rate-limit headers (for tests only). The
    # copy lost the number; FIELD-NOTES: 300 per 5 minutes.
    rate_limit_requests: int | None = 300  # not in the vendor document
    rate_limit_window_s: float = 300.0  # not in the vendor document
    # Whose budget a request takes: its API key's, or its client IP's (the vendor's page says
    # per IP). Requests with a wrong key count for nobody.
    rate_limit_scope: Literal["api_key", "ip"] = "api_key"  # not in the vendor document
    # A 429'd request takes a slot of the window too (a client that keeps knocking stays
    # locked out).
    rate_limit_counts_rejected: bool = False  # not in the vendor document

    # --- Batch -----------------------------------------------------------------------------
    # What a batch takes from the rate limit: "one" (the batch request), "per_op" (each op
    # as it runs; a refused op answers 429 in its result), "one_plus_per_op" (both).
    batch_rate_limit: Literal["one", "per_op", "one_plus_per_op"] = (  # not in the vendor document
        "one"
    )
    # An op answering >= 400 ends the batch: the results list only the ops that ran.
    batch_stop_on_error: bool = False  # not in the vendor document
    # A batch outside the rules (no/too many ops, `sequential` not true, a malformed op).
    batch_invalid_status: int = 422  # not in the vendor document
    # Vendor document: "[ 1 .. 100 ] items".
    batch_max_ops: int = 100

    # --- Listings --------------------------------------------------------------------------
    # Upper bound for per_page (a larger one is cut down); None = no bound.
    per_page_max: int | None = None  # not in the vendor document
    # A page/per_page that is not an integer >= 1: "reject" (invalid_query_status) or
    # "default" (ignored).
    invalid_paging: Literal["reject", "default"] = "reject"  # not in the vendor document
    # total_pages of an empty listing.
    total_pages_when_empty: int = 0  # not in the vendor document
    # Vendor document: each listing's "Default:" sort.
    default_sorts: dict[str, str] = msgspec.field(
        default_factory=lambda: {
            "entities": "name asc",
            "assets": "name asc",
            "locations": "name asc",
            "parts": "name asc",
            "part_transactions": "updated_at desc",
            "pm_schedules": "created_at desc",
            "procedures": "name asc",
            "work_order_requests": "created_at desc",
            "users": "name asc",
            "vendors": "name asc",
            "work_orders": "created_at desc",
        }
    )
    # Fields `sort` accepts; None = every field. `sort` is "<field> asc|desc" (the document);
    # several comma-separated (meta echoes `sort` as a list) is a guess.
    sortable_fields: tuple[str, ...] | None = None  # not in the vendor document
    # A sort term that is malformed or not sortable: "ignore" (the default order stays) or
    # "reject" (invalid_query_status).
    invalid_sort: Literal["ignore", "reject"] = "ignore"  # not in the vendor document
    # The `filter[<field>_<matcher>]` matchers a listing accepts. The document names `cont`
    # and `eq`; it names none for times, so "updated since" (`updated_at_gt`/`_gteq`) and the
    # other comparisons are guesses. The fake can also do: not_eq, not_cont, start, end, in.
    filter_matchers: tuple[str, ...] = (  # not in the vendor document
        "eq",
        "cont",
        "gt",
        "gteq",
        "lt",
        "lteq",
    )
    # A filter whose matcher is not accepted: "ignore" it (the listing is unfiltered, as
    # Ransack does by default) or "reject" (invalid_query_status). A blank value is ignored.
    unknown_filter: Literal["ignore", "reject"] = "ignore"  # not in the vendor document
    # Fields `search` looks in (case-insensitive substring); the document gives `search` no
    # description.
    search_fields: tuple[str, ...] = (  # not in the vendor document
        "name",
        "title",
        "note",
        "description",
    )

    # --- Records ---------------------------------------------------------------------------
    # First id handed out per resource (ids count up per resource across entities).
    first_id: int = 1  # not in the vendor document
    # Fields a create must carry (non-blank); an update may not blank them.
    required_fields: dict[str, tuple[str, ...]] = msgspec.field(  # not in the vendor document
        default_factory=lambda: {
            "assets": ("name",),
            "locations": ("name",),
            "parts": ("name",),
            "work_order_requests": ("title",),
            "work_orders": ("title",),
        }
    )
    # An update that changes nothing still bumps updated_at.
    bump_on_noop_update: bool = True  # not in the vendor document
    # Part update with PART_STOCK_FIELDS (not in the document's update example): "ignore"
    # them, "reject" (validation_status) or "apply" them.
    part_update_stock_fields: Literal["ignore", "reject", "apply"] = (  # not in the vendor document
        "ignore"
    )

    # --- Parts -----------------------------------------------------------------------------
    # A restock's cost ("Unit cost of restocked items. The Part's …", the rest lost) always
    # moves avg_unit_cost (weighted by quantity); True makes it the part's unit_cost too.
    restock_sets_unit_cost: bool = False  # not in the vendor document
    # Reconcile's "The resulting …" (lost): False refuses a resulting on_hand_qty below 0.
    reconcile_allows_negative: bool = False  # not in the vendor document
    # Part transaction `type` per action ("restock" is the document's example type; "usage"
    # is the document's part assignment type).
    transaction_types: dict[str, str] = msgspec.field(  # not in the vendor document
        default_factory=lambda: {
            "restock": "restock",
            "reconcile": "adjustment",
            "set_cost": "cost_update",
            "set_avg_cost": "cost_update",
            "usage": "usage",
        }
    )

    # --- Work-order part assignments ------------------------------------------------------
    # What an assignment does to the part's stock: "consume" (on_hand_qty falls and a
    # "usage" transaction with work_order_id is written), "reserve" (reserved rises,
    # available falls) or "none".
    assignment_stock: Literal["consume", "reserve", "none"] = (  # not in the vendor document
        "consume"
    )
    # An assignment change bumps the work order's updated_at.
    assignment_bumps_work_order: bool = True  # not in the vendor document
    # Status of an add (the document shows the assignment as its answer, no status).
    assignment_add_status: int = 200  # not in the vendor document
    # Answer of a remove (the document's copy ends before it): 200 with the removed
    # assignment, or 204 without a body.
    remove_assignment_answer: Literal["assignment", "no_content"] = (  # not in the vendor document
        "assignment"
    )


def format_timestamp(moment: datetime) -> str:
    """Click Maint's `created_at`/`updated_at` form: UTC, second precision, `Z`."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_timestamp(value: str) -> datetime | None:
    """An ISO 8601 time or date (no offset = UTC), or None when `value` is not one."""
    if len(value) < 10 or value[4:5] != "-":
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


class RequestLogEntry(BaseRequestLogEntry, kw_only=True):
    """One API request, or one operation of a batch (`batch_op` = its index), with its
    status; `entity` is the X-Entity-Id as sent."""

    query: str
    entity: str | None
    batch_op: int | None = None


class RecordedCall(CallLogEntry, kw_only=True):
    """One accepted (2xx) write through the API (also from inside a batch)."""

    resource: str
    action: str
    entity_id: int
    record_id: int | None
    status: int
    batch_op: int | None = None


class _ApiError(Exception):
    """Ends a handler with `{"status": "error", "message": …}` and a status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _BadJson:
    """The body of a request that is not JSON."""


_BAD_JSON = _BadJson()
_MISSING = object()


@dataclass
class _Result:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class _Call:
    """A request to handle: an HTTP request, or one operation of a batch."""

    method: str
    path: str
    query: dict[str, str]
    query_string: str
    body: Any
    entity: str | None
    limit_key: str
    batch_op: int | None = None
    parent: _Call | None = None
    # The rate-limit headers of the latest check taken for this call (or its ops).
    limit_headers: dict[str, str] | None = None
    ops_checked: int = 0


def _decode_body(raw: bytes) -> Any:
    if not raw.strip():
        return None
    try:
        return msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return _BAD_JSON


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _decimal_places(value: int | float) -> int:
    try:
        exponent = Decimal(str(value)).normalize().as_tuple().exponent
    except InvalidOperation:
        return 99
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


def _num(value: float) -> int | float:
    """A quantity or amount as the API shows it: whole numbers as ints, else 3 decimals."""
    rounded = round(value, 3)
    return int(rounded) if float(rounded).is_integer() else rounded


def _sort_key(value: Any) -> tuple[int, Any]:
    # Rank by type first so mixed values (or None) never make sorting raise.
    if value is None or value is _MISSING:
        return (0, 0)
    if _is_number(value) or isinstance(value, bool):
        return (1, value)
    if isinstance(value, str):
        return (2, value)
    return (3, str(value))


def _sort_by(name: str) -> Callable[[Record], tuple[int, Any]]:
    return lambda record: _sort_key(_field_value(record, name))


def _field_value(record: Mapping[str, Any], name: str) -> Any:
    """A record's value of `name`; `location_id` also reads `location: {"id": …}`."""
    if name in record:
        return record[name]
    if name.endswith("_id"):
        nested = record.get(name.removesuffix("_id"))
        if isinstance(nested, dict):
            return nested.get("id", _MISSING)
    return _MISSING


def _operands(value: Any, raw: str) -> tuple[Any, Any] | None:
    """(record value, filter value) made comparable, or None when they cannot be."""
    if value is None or value is _MISSING:
        return None
    if isinstance(value, bool):
        lowered = raw.strip().lower()
        if lowered in ("true", "t", "1"):
            return value, True
        if lowered in ("false", "f", "0"):
            return value, False
        return None
    if _is_number(value):
        try:
            return float(value), float(raw)
        except ValueError:
            return None
    if isinstance(value, str):
        left, right = parse_timestamp(value), parse_timestamp(raw)
        if left is not None and right is not None:
            return left, right
        return value, raw
    return None


def _matches(value: Any, matcher: str, raw: str) -> bool:
    """Whether a record's `value` passes `filter[<field>_<matcher>]=raw`."""
    if matcher in ("cont", "not_cont", "start", "end"):
        if not isinstance(value, str):
            return False
        text, needle = value.lower(), raw.lower()
        if matcher == "cont":
            return needle in text
        if matcher == "not_cont":
            return needle not in text
        return text.startswith(needle) if matcher == "start" else text.endswith(needle)
    if matcher == "in":
        return any(_matches(value, "eq", part.strip()) for part in raw.split(","))
    pair = _operands(value, raw)
    if pair is None:
        return False
    left, right = pair
    try:
        if matcher == "eq":
            return bool(left == right)
        if matcher == "not_eq":
            return bool(left != right)
        if matcher == "gt":
            return bool(left > right)
        if matcher == "gteq":
            return bool(left >= right)
        if matcher == "lt":
            return bool(left < right)
        if matcher == "lteq":
            return bool(left <= right)
    except TypeError:
        return False
    raise ValueError(f"unknown matcher {matcher!r}")


def _split_filter(condition: str) -> tuple[str, str] | None:
    """`name_cont` -> (`name`, `cont`); None when no implemented matcher ends it."""
    for matcher in IMPLEMENTED_MATCHERS:
        suffix = "_" + matcher
        if condition.endswith(suffix) and len(condition) > len(suffix):
            return condition.removesuffix(suffix), matcher
    return None


def _match_route(template: str, segments: Sequence[str]) -> dict[str, str] | None:
    """Match path segments against `a/{b}/c`; the placeholders' values, or None."""
    parts = [part for part in template.split("/") if part]
    if len(parts) != len(segments):
        return None
    values: dict[str, str] = {}
    for part, segment in zip(parts, segments, strict=True):
        if part.startswith("{") and part.endswith("}"):
            values[part[1:-1]] = segment
        elif part != segment:
            return None
    return values


def _flatten_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Rails-style query keys: `{"filter": {"name_cont": "x"}}` -> `filter[name_cont]=x`."""
    flat: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}[{key}]" if prefix else str(key)
        if isinstance(value, dict):
            flat.update(_flatten_params(value, name))
        elif isinstance(value, bool):
            flat[name] = "true" if value else "false"
        elif value is None:
            flat[name] = ""
        elif isinstance(value, list):
            flat[name] = ",".join(str(item) for item in value)
        else:
            flat[name] = str(value)
    return flat


def _humanize(name: str) -> str:
    return name.replace("_", " ").capitalize()


def _int_id(raw: str) -> int | None:
    return int(raw) if raw.isascii() and raw.isdigit() else None


# Documented: `Authorization: Bearer YOUR_API_KEY`.
_API_KEY = KeyHeader("Authorization", "Bearer ", strip=True)

_Arrived = tuple[str | None, _Call]
"""A request on arrival: its valid API key (None: none or a wrong one) and the call."""


class FakeClickMaint(PipelineServer[None, _Arrived]):
    """A fake Click Maint API server; see the module docstring and `FakeClickMaintBehaviour`.

    `base_url` (after `start`) is the API root `http://host:port/api/v1`, like the document's
    `https://app.clickmaint.com/api/v1`; `root_url` is the origin `http://host:port`. Paths in
    the behaviour (`entities_path`, `batch_path`) and batch op urls are server paths
    (`/api/v1/parts`, as in the document's batch example).

    Public state for tests: `requests` (every API request, and every batch op with its
    `batch_op` index), `calls` (accepted writes), `arrival_times` (monotonic times of every
    arrival with a valid key that the rate limit counted, admitted or not: HTTP requests, or
    batch ops when a batch counts per op), `request_times` (those admitted), `rejected_429`
    (the limiter's refusals, not injected ones).

    `fail_next` answers `{"status": "error", "message": "injected failure (<status>)"}` (with
    `retry-after` when given) before authentication and the rate limit: such an answer takes
    no slot and carries no rate-limit headers. With `delay_next` the rate limit is decided on
    arrival and the handling (any write) happens after the delay. Answers to a wrong key carry
    no rate-limit headers either (they count for nobody).
    """

    _server_name = "FakeClickMaint"
    _base_path = API_PREFIX

    def __init__(
        self,
        *,
        api_key: str,
        entities: Sequence[Mapping[str, Any]] | None = None,
        customer: Mapping[str, Any] | None = None,
        behaviour: FakeClickMaintBehaviour | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        """Create the fake (not yet listening; call `start` or use `async with`).

        `entities` are the account's entities (default: the document's "Main Facility", id 1);
        each needs an integer `id`. `clock` supplies `created_at`/`updated_at`, the `Date`
        header and the time `X-RateLimit-Reset` is given in; the rate limit's window runs on
        the monotonic clock.
        """
        super().__init__()
        self.behaviour = behaviour or FakeClickMaintBehaviour()
        self._clock: Callable[[], datetime] = clock or (lambda: datetime.now(UTC))
        self._api_keys = StaticKeys(_API_KEY, {api_key: None})
        self.customer: dict[str, Any] = dict(customer or DEFAULT_CUSTOMER)
        self._entities: dict[int, Record] = {}
        self._store: dict[tuple[int, str], dict[int, Record]] = {}
        self._transactions: dict[tuple[int, int], dict[int, Record]] = {}
        self._next_id: dict[str, int] = {}
        # Budget and switches are set from `behaviour` on every request (see `_count`).
        # The window runs on the monotonic clock; `X-RateLimit-Reset` is a time on the clock
        # the answers' `Date` comes from, as one server's clock gives both.
        self._limiter = FakeRateLimit(
            limit=0,
            window_s=0.0,
            headers=LimitHeaders(),
            clock=time.monotonic,
            wall_clock=lambda: self._aware_now().timestamp(),
        )
        self.requests: list[RequestLogEntry] = []
        self.calls: list[RecordedCall] = []
        self.arrival_times: list[float] = []
        self.request_times: list[float] = []
        self.rejected_429 = 0
        # Called with (resource, entity id or None, page number) right after a listing page is
        # cut, so a test can change records "while the listing is being paged". The resource
        # is the internal name ("work_orders", "part_transactions", "entities").
        self.after_list_page: Callable[[str, int | None, int], None] | None = None
        for entity in entities if entities is not None else [DEFAULT_ENTITY]:
            self.add_entity(entity)

    # ------------------------------------------------------------------ lifecycle

    def _build_app(self) -> web.Application:
        app = web.Application()
        mount_control_routes(app, self)
        app.router.add_get("/_fake/entities", self._ctl_entities)
        app.router.add_post("/_fake/entities", self._ctl_add_entity)
        app.router.add_get("/_fake/entities/{entity}/{resource}", self._ctl_records)
        app.router.add_post("/_fake/entities/{entity}/{resource}", self._ctl_create)
        app.router.add_route("PATCH", "/_fake/entities/{entity}/{resource}/{id}", self._ctl_update)
        app.router.add_put("/_fake/entities/{entity}/{resource}/{id}", self._ctl_update)
        app.router.add_delete("/_fake/entities/{entity}/{resource}/{id}", self._ctl_delete)
        app.router.add_route("*", "/{tail:(?!_fake/).*}", self._api)
        return app

    @property
    def root_url(self) -> str:
        """The origin `http://host:port`, which server paths (`/api/v1/…`) are relative to."""
        return self._require_base().removesuffix(API_PREFIX)

    # ------------------------------------------------------------------ test handles

    def add_api_key(self, api_key: str) -> None:
        """Accept another API key of the same account (with its own rate-limit budget when
        `rate_limit_scope` is "api_key")."""
        self._api_keys.add(api_key, None)

    def max_requests_in_any_window(self, window_s: float) -> int:
        """Most arrivals counted by the rate limit (see `arrival_times`) in any
        `[t, t+window_s)`."""
        return max_in_any_window(self.arrival_times, window_s)

    def add_entity(self, fields: Mapping[str, Any]) -> Record:
        """Add an entity to the account (`id` required); it gets empty resources."""
        entity = copy.deepcopy(dict(fields))
        entity_id = entity.get("id")
        if not isinstance(entity_id, int) or isinstance(entity_id, bool):
            raise ValueError("an entity needs an integer id")
        now = self._now()
        entity.setdefault("created_at", now)
        entity.setdefault("updated_at", now)
        self._entities[entity_id] = entity
        for resource in RESOURCES:
            self._store.setdefault((entity_id, resource), {})
        return copy.deepcopy(entity)

    def entities(self) -> list[Record]:
        """Copies of the account's entities, by id."""
        return [copy.deepcopy(self._entities[key]) for key in sorted(self._entities)]

    def records(self, entity_id: int, resource: str) -> list[Record]:
        """Copies of an entity's records of `resource`, by id."""
        store = self._table(entity_id, resource)
        return [copy.deepcopy(store[key]) for key in sorted(store)]

    def get_record(self, entity_id: int, resource: str, record_id: int) -> Record | None:
        """A copy of one record, or None."""
        record = self._table(entity_id, resource).get(record_id)
        return copy.deepcopy(record) if record is not None else None

    def transactions(self, entity_id: int, part_id: int) -> list[Record]:
        """Copies of a part's transactions, by id."""
        store = self._transactions.get((entity_id, part_id), {})
        return [copy.deepcopy(store[key]) for key in sorted(store)]

    def create_record(self, entity_id: int, resource: str, fields: Mapping[str, Any]) -> Record:
        """Create a record as a person in Click Maint would: no validation, so a test can
        build any state; `fields` may carry an explicit `id`. Parts get their stock fields."""
        record = self._insert(entity_id, resource, copy.deepcopy(dict(fields)), explicit=True)
        return copy.deepcopy(record)

    def update_record(
        self, entity_id: int, resource: str, record_id: int, fields: Mapping[str, Any]
    ) -> Record:
        """Change fields as a person would and bump `updated_at`. KeyError if missing."""
        record = self._table(entity_id, resource)[record_id]
        for key, value in fields.items():
            if key not in READ_ONLY_FIELDS:
                record[key] = copy.deepcopy(value)
        if resource == "parts":
            self._refresh_available(record)
        record["updated_at"] = self._now()
        return copy.deepcopy(record)

    def delete_record(self, entity_id: int, resource: str, record_id: int) -> None:
        """Delete as a person would (the API itself documents no delete). KeyError if
        missing."""
        del self._table(entity_id, resource)[record_id]

    # ------------------------------------------------------------------ store

    def _table(self, entity_id: int, resource: str) -> dict[int, Record]:
        if resource not in RESOURCES:
            raise KeyError(f"unknown resource {resource!r}")
        if entity_id not in self._entities:
            raise KeyError(f"unknown entity {entity_id}")
        return self._store[(entity_id, resource)]

    def _now(self) -> str:
        return format_timestamp(self._clock())

    def _aware_now(self) -> datetime:
        moment = self._clock()
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment

    def _http_date(self) -> str:
        """The answer's `Date`, from the clock that stamps `updated_at`, as a server's is:
        what a client bounds an "updated since" cursor by."""
        return format_datetime(self._aware_now().astimezone(UTC), usegmt=True)

    def _new_id(self, counter: str, explicit: Any = None) -> int:
        current = self._next_id.get(counter, self.behaviour.first_id)
        if isinstance(explicit, int) and not isinstance(explicit, bool):
            record_id = explicit
        else:
            record_id = current
        self._next_id[counter] = max(current, record_id + 1)
        return record_id

    def _insert(
        self, entity_id: int, resource: str, fields: Record, *, explicit: bool = False
    ) -> Record:
        table = self._table(entity_id, resource)
        record_id = self._new_id(resource, fields.pop("id", None) if explicit else None)
        for name in READ_ONLY_FIELDS:
            fields.pop(name, None)
        now = self._now()
        record: Record = {"id": record_id, **fields, "created_at": now, "updated_at": now}
        if resource == "parts":
            record.setdefault("is_non_stock", False)
            record.setdefault("on_hand_qty", 0)
            record.setdefault("unit_cost", 0)
            record.setdefault("avg_unit_cost", record["unit_cost"])
            record.setdefault("reserved", 0)
            self._refresh_available(record)
        if resource == "work_orders":
            record.setdefault("part_assignments", [])
        table[record_id] = record
        return record

    @staticmethod
    def _refresh_available(part: Record) -> None:
        on_hand, reserved = part.get("on_hand_qty", 0), part.get("reserved", 0)
        if _is_number(on_hand) and _is_number(reserved):
            part["available"] = _num(on_hand - reserved)

    # ------------------------------------------------------------------ API: transport

    def _limit_key(self, api_key: str, remote: str | None) -> str:
        if self.behaviour.rate_limit_scope == "ip":
            return f"ip:{remote or 'unknown'}"
        return f"key:{api_key}"

    def _count(self, call: _Call, now: float) -> Verdict | None:
        """Take one rate-limit slot for `call` (None when there is no limit)."""
        behaviour = self.behaviour
        if behaviour.rate_limit_requests is None:
            return None
        limiter = self._limiter
        limiter.limit = behaviour.rate_limit_requests
        limiter.window_s = behaviour.rate_limit_window_s
        limiter.counts_rejected = behaviour.rate_limit_counts_rejected
        self.arrival_times.append(now)
        verdict = limiter.check(call.limit_key, now)
        if verdict.admitted:
            self.request_times.append(now)
        else:
            self.rejected_429 += 1
        target = call.parent or call
        target.limit_headers = dict(verdict.headers)
        return verdict

    def _is_batch(self, call: _Call) -> bool:
        return call.path.rstrip("/") == self.behaviour.batch_path and call.method == "POST"

    def _errors(self) -> ClickMaintErrors:
        return ClickMaintErrors(invalid_api_key_status=self.behaviour.invalid_api_key_status)

    def _error(self, status: int, message: str) -> _Result:
        return _Result(status, {"status": "error", "message": message})

    def _arrive(self, request: web.Request, at: float) -> _Arrived:
        identity = self._api_keys.check(request.headers)
        api_key = identity[0] if identity is not None else None
        call = _Call(
            method=request.method,
            path=request.path,
            query=dict(request.query),
            query_string=request.query_string,
            body=None,
            entity=request.headers.get("X-Entity-Id"),
            limit_key=self._limit_key(api_key or "", request.remote),
        )
        return api_key, call

    def _injected(self, status: int, retry_after: float | None) -> web.Response:
        headers = {} if retry_after is None else {"retry-after": f"{retry_after:g}"}
        return self._dated(self._errors().response(status, injected_reason(status), headers))

    def _admit(self, request: web.Request, state: _Arrived, at: float) -> web.Response | None:
        api_key, call = state
        if api_key is None:
            return self._dated(self._errors().invalid_api_key())
        if self._is_batch(call) and self.behaviour.batch_rate_limit == "per_op":
            return None  # its ops are counted as they run
        verdict = self._count(call, at)
        if verdict is not None and not verdict.admitted:
            return self._dated(self._errors().response(429, "Too many requests", verdict.headers))
        return None

    def _dated(self, response: web.Response) -> web.Response:
        """`response` with the `Date` of now (an answer decided on arrival is dated then)."""
        response.headers["Date"] = self._http_date()
        return response

    async def _dispatch(self, request: web.Request, arrival: Arrival[_Arrived]) -> web.Response:
        call = arrival.state[1]
        call.body = _decode_body(arrival.body)
        result = self._execute(call)
        if self._is_batch(call) and call.limit_headers is None:
            # "per_op": a batch refused before any op ran counts as one request.
            self._count(call, arrival.at)
        return self._respond(result, call.limit_headers)

    def _log_request(
        self, request: web.Request, arrival: Arrival[_Arrived], response: web.Response
    ) -> None:
        self.requests.append(
            RequestLogEntry(
                method=request.method,
                path=request.path,
                query=request.query_string,
                entity=arrival.state[1].entity,
                status=response.status,
                at=arrival.at,
            )
        )

    def _respond(self, result: _Result, limit_headers: Mapping[str, str] | None) -> web.Response:
        headers = {**(limit_headers or {}), **result.headers, "Date": self._http_date()}
        if result.body is None:
            return web.Response(status=result.status, headers=headers)
        return json_response(result.body, result.status, headers)

    def _execute(self, call: _Call) -> _Result:
        try:
            return self._route(call)
        except _ApiError as error:
            return self._error(error.status, error.message)

    # ------------------------------------------------------------------ API: routing

    def _unsupported(self) -> _ApiError:
        return _ApiError(self.behaviour.unsupported_method_status, "Not found")

    def _not_found(self, what: str) -> _ApiError:
        return _ApiError(self.behaviour.not_found_status, f"{what} not found")

    def _route(self, call: _Call) -> _Result:
        behaviour = self.behaviour
        path = call.path.rstrip("/") or "/"
        if path == behaviour.entities_path:
            if call.method != "GET":
                raise self._unsupported()
            return self._list_entities(call)
        if path == behaviour.batch_path:
            if call.method != "POST":
                raise self._unsupported()
            if call.batch_op is not None:
                raise _ApiError(behaviour.batch_invalid_status, "a batch cannot contain a batch")
            return self._batch(call)
        if not path.startswith(API_PREFIX + "/"):
            raise self._not_found("Route")
        segments = path.removeprefix(API_PREFIX + "/").split("/")
        resource = behaviour.resource_paths.get(segments[0])
        if resource is None:
            raise self._not_found("Route")
        entity = self._entity_for(call)
        return self._resource_route(call, entity, resource, segments[1:])

    def _entity_for(self, call: _Call) -> Record:
        raw = (call.entity or "").strip()
        if not raw:
            raise _ApiError(self.behaviour.missing_entity_status, "X-Entity-Id header is required")
        entity_id = _int_id(raw)
        if entity_id is None or entity_id not in self._entities:
            raise _ApiError(self.behaviour.unknown_entity_status, "Entity not found")
        return self._entities[entity_id]

    def _resource_route(
        self, call: _Call, entity: Record, resource: str, rest: list[str]
    ) -> _Result:
        behaviour = self.behaviour
        method = call.method
        writable = resource in BODY_ROOTS
        if not rest:
            if method == "GET":
                return self._list_records(call, entity, resource)
            if method == "POST" and writable:
                return self._create(call, entity, resource)
            raise self._unsupported()
        record_id = _int_id(rest[0])
        if record_id is None:
            raise self._not_found("Record")
        if len(rest) == 1:
            if method == "GET":
                return self._show(entity, resource, record_id)
            if method in behaviour.update_methods and writable:
                return self._update(call, entity, resource, record_id)
            raise self._unsupported()
        below = rest[1:]
        if resource == "parts":
            if below[0] == behaviour.part_transactions_segment and len(below) <= 2:
                if method != "GET":
                    raise self._unsupported()
                part = self._lookup(entity, "parts", record_id)
                if len(below) == 1:
                    return self._list_transactions(call, entity, part)
                return self._show_transaction(entity, part, below[1])
            action = self._find_route(behaviour.part_action_routes, method, below)
            if action is not None:
                return self._part_action(call, entity, record_id, action[0])
        if resource == "work_orders":
            op = self._find_route(behaviour.assignment_routes, method, below)
            if op is not None:
                return self._assignment(call, entity, record_id, op[0], op[1])
        raise self._not_found("Route")

    def _find_route(
        self, routes: RouteTable, method: str, segments: Sequence[str]
    ) -> tuple[str, dict[str, str]] | None:
        """(action, placeholders) of the route `segments` match; unsupported_method_status
        when a route matches the path but not the method; None when none matches."""
        path_matched = False
        for action, (route_method, template) in routes.items():
            values = _match_route(template, segments)
            if values is None:
                continue
            if route_method.upper() == method:
                return action, values
            path_matched = True
        if path_matched:
            raise self._unsupported()
        return None

    def _lookup(self, entity: Record, resource: str, record_id: int) -> Record:
        record = self._store[(entity["id"], resource)].get(record_id)
        if record is None:
            raise self._not_found(_humanize(resource.removesuffix("s")))
        return record

    # ------------------------------------------------------------------ API: answers

    def _meta(self, entity: Record | None) -> dict[str, Any]:
        if entity is None:
            entity_meta: dict[str, Any] = dict.fromkeys(ENTITY_META_KEYS)
        else:
            entity_meta = {key: entity.get(key) for key in ENTITY_META_KEYS}
        return {"entity": entity_meta, "customer": dict(self.customer)}

    def _single(self, entity: Record, data: Any) -> dict[str, Any]:
        return {"status": "success", "data": copy.deepcopy(data), "meta": self._meta(entity)}

    def _show(self, entity: Record, resource: str, record_id: int) -> _Result:
        return _Result(200, self._single(entity, self._lookup(entity, resource, record_id)))

    # ------------------------------------------------------------------ API: listings

    def _list_entities(self, call: _Call) -> _Result:
        return self._listing(call, "entities", list(self._entities.values()), None)

    def _list_records(self, call: _Call, entity: Record, resource: str) -> _Result:
        records = list(self._store[(entity["id"], resource)].values())
        return self._listing(call, resource, records, entity)

    def _list_transactions(self, call: _Call, entity: Record, part: Record) -> _Result:
        records = list(self._transactions.get((entity["id"], part["id"]), {}).values())
        usage = self.behaviour.transaction_types.get("usage")

        def extra(items: Sequence[Record]) -> dict[str, Any]:
            used = sum(
                float(t["quantity"])
                for t in items
                if t.get("type") == usage and _is_number(t.get("quantity"))
            )
            # Vendor document: the transactions listing's meta carries "total_used": 8.5.
            return {"total_used": _num(used)}

        return self._listing(call, "part_transactions", records, entity, extra)

    def _show_transaction(self, entity: Record, part: Record, raw_id: str) -> _Result:
        transaction_id = _int_id(raw_id)
        store = self._transactions.get((entity["id"], part["id"]), {})
        if transaction_id is None or transaction_id not in store:
            raise self._not_found("Part transaction")
        return _Result(200, self._single(entity, store[transaction_id]))

    def _listing(
        self,
        call: _Call,
        kind: str,
        records: list[Record],
        entity: Record | None,
        extra_meta: Callable[[Sequence[Record]], dict[str, Any]] | None = None,
    ) -> _Result:
        behaviour = self.behaviour
        query = call.query
        pages = MetaPaginationPages(
            max_per_page=behaviour.per_page_max,
            on_invalid=behaviour.invalid_paging,
            total_pages_when_empty=behaviour.total_pages_when_empty,
        )
        # Paging first, so the first bad parameter is the one answered.
        try:
            pages.window(query)
        except PageQueryError as error:
            raise _ApiError(behaviour.invalid_query_status, error.message) from None
        filters, echoed = self._filters(query)
        search = (query.get("search") or "").strip()
        sorts = self._sorts(query.get("sort"), behaviour.default_sorts.get(kind, "id asc"))

        items = [
            record
            for record in records
            if all(
                _matches(_field_value(record, name), matcher, raw) for name, matcher, raw in filters
            )
            and (not search or self._searched(record, search))
        ]
        # Stable sorts: by id first, then by each sort term from the last to the first.
        items.sort(key=lambda r: _sort_key(r.get("id")))
        for name, descending in reversed(sorts):
            items.sort(key=_sort_by(name), reverse=descending)

        page = pages.paginate(items, query)
        meta = self._meta(entity)
        meta["pagination"] = page.pagination
        meta["sort"] = [f"{name} {'desc' if descending else 'asc'}" for name, descending in sorts]
        meta["search"] = query.get("search")
        meta["filter"] = echoed
        if extra_meta is not None:
            meta.update(extra_meta(items))
        body = {"status": "success", "data": copy.deepcopy(page.items), "meta": meta}
        if self.after_list_page is not None:
            # The page is cut: a change made now is one "while the listing is being paged".
            self.after_list_page(kind, None if entity is None else entity["id"], page.window.page)
        return _Result(200, body)

    def _searched(self, record: Record, search: str) -> bool:
        needle = search.lower()
        return any(
            isinstance(value, str) and needle in value.lower()
            for name in self.behaviour.search_fields
            if (value := record.get(name)) is not None
        )

    def _filters(
        self, query: Mapping[str, str]
    ) -> tuple[list[tuple[str, str, str]], dict[str, str]]:
        """The filters to apply (field, matcher, value) and the `meta.filter` echo (every
        `filter[…]` as sent)."""
        behaviour = self.behaviour
        applied: list[tuple[str, str, str]] = []
        echoed: dict[str, str] = {}
        for key, raw in query.items():
            if not (key.startswith("filter[") and key.endswith("]")):
                continue
            condition = key[len("filter[") : -1]
            echoed[condition] = raw
            split = _split_filter(condition)
            if split is None or split[1] not in behaviour.filter_matchers:
                if behaviour.unknown_filter == "reject":
                    raise _ApiError(
                        behaviour.invalid_query_status, f"unknown filter condition {condition}"
                    )
                continue
            if not raw.strip():
                continue  # a blank value is no condition (as Ransack drops blank values)
            applied.append((split[0], split[1], raw))
        return applied, echoed

    def _sorts(self, raw: str | None, default: str) -> list[tuple[str, bool]]:
        behaviour = self.behaviour
        terms: list[tuple[str, bool]] = []
        for term in (raw or "").split(","):
            words = term.split()
            if not words:
                continue
            valid = (
                len(words) <= 2
                and (len(words) == 1 or words[1].lower() in ("asc", "desc"))
                and (behaviour.sortable_fields is None or words[0] in behaviour.sortable_fields)
            )
            if not valid:
                if behaviour.invalid_sort == "reject":
                    raise _ApiError(
                        behaviour.invalid_query_status, f"invalid sort {term.strip()!r}"
                    )
                continue
            terms.append((words[0], len(words) == 2 and words[1].lower() == "desc"))
        if terms:
            return terms
        parsed = [term.split() for term in default.split(",") if term.split()]
        return [(words[0], len(words) == 2 and words[1] == "desc") for words in parsed]

    # ------------------------------------------------------------------ API: writes

    def _body_object(self, call: _Call) -> dict[str, Any]:
        if not isinstance(call.body, dict):
            raise _ApiError(self.behaviour.invalid_json_status, "body must be a JSON object")
        return call.body

    def _root_fields(self, call: _Call, resource: str) -> Record:
        root = BODY_ROOTS[resource]
        inner = self._body_object(call).get(root)
        if not isinstance(inner, dict):
            # Rails' ActionController::ParameterMissing message.
            raise _ApiError(
                self.behaviour.invalid_json_status,
                f"param is missing or the value is empty: {root}",
            )
        return {k: copy.deepcopy(v) for k, v in inner.items() if k not in READ_ONLY_FIELDS}

    def _check_required(self, resource: str, fields: Mapping[str, Any], *, partial: bool) -> None:
        for name in self.behaviour.required_fields.get(resource, ()):
            if partial and name not in fields:
                continue
            value = fields.get(name)
            if value is None or (isinstance(value, str) and not value.strip()):
                raise _ApiError(
                    self.behaviour.validation_status, f"{_humanize(name)} can't be blank"
                )

    def _check_part_fields(self, fields: Mapping[str, Any]) -> None:
        for name in ("on_hand_qty", "min_qty", "desired_qty", "unit_cost", "avg_unit_cost"):
            if name in fields and not _is_number(fields[name]):
                raise _ApiError(
                    self.behaviour.validation_status, f"{_humanize(name)} is not a number"
                )

    def _record_call(
        self,
        call: _Call,
        resource: str,
        action: str,
        entity: Record,
        record_id: int | None,
        status: int,
    ) -> None:
        self.calls.append(
            RecordedCall(
                method=call.method,
                path=call.path,
                resource=resource,
                action=action,
                entity_id=entity["id"],
                record_id=record_id,
                status=status,
                json=copy.deepcopy(call.body),
                batch_op=call.batch_op,
            )
        )

    def _create(self, call: _Call, entity: Record, resource: str) -> _Result:
        fields = self._root_fields(call, resource)
        self._check_required(resource, fields, partial=False)
        if resource == "parts":
            self._check_part_fields(fields)
        record = self._insert(entity["id"], resource, fields)
        status = self.behaviour.create_status
        self._record_call(call, resource, "create", entity, record["id"], status)
        return _Result(status, self._single(entity, record))

    def _update(self, call: _Call, entity: Record, resource: str, record_id: int) -> _Result:
        behaviour = self.behaviour
        record = self._lookup(entity, resource, record_id)
        fields = self._root_fields(call, resource)
        self._check_required(resource, fields, partial=True)
        if resource == "parts":
            stock = [name for name in PART_STOCK_FIELDS if name in fields]
            if stock and behaviour.part_update_stock_fields == "reject":
                raise _ApiError(
                    behaviour.validation_status,
                    f"{', '.join(stock)} cannot be updated: use restock, reconcile or set cost",
                )
            if behaviour.part_update_stock_fields == "ignore":
                for name in stock:
                    del fields[name]
            self._check_part_fields(fields)
        changed = any(record.get(key, _MISSING) != value for key, value in fields.items())
        record.update(fields)
        if resource == "parts":
            self._refresh_available(record)
        if changed or behaviour.bump_on_noop_update:
            record["updated_at"] = self._now()
        self._record_call(call, resource, "update", entity, record_id, 200)
        return _Result(200, self._single(entity, record))

    def _number(
        self,
        body: Mapping[str, Any],
        name: str,
        *,
        places: int,
        minimum: float | None = None,
        positive: bool = False,
    ) -> float:
        value = body.get(name)
        status = self.behaviour.validation_status
        if value is None:
            raise _ApiError(status, f"{_humanize(name)} is required")
        if not _is_number(value):
            raise _ApiError(status, f"{_humanize(name)} is not a number")
        if _decimal_places(value) > places:
            raise _ApiError(status, f"{_humanize(name)} must have at most {places} decimal places")
        if minimum is not None and value < minimum:
            raise _ApiError(
                status, f"{_humanize(name)} must be greater than or equal to {minimum:g}"
            )
        if positive and value <= 0:
            raise _ApiError(status, f"{_humanize(name)} must be greater than 0")
        return float(value)

    def _note(self, body: Mapping[str, Any], *, required: bool) -> str | None:
        note = body.get("note")
        if note is None and not required:
            return None
        if not isinstance(note, str) or (required and not note.strip()):
            raise _ApiError(self.behaviour.validation_status, "Note can't be blank")
        return note

    def _add_transaction(
        self,
        entity: Record,
        part: Record,
        action: str,
        *,
        quantity: float,
        cost: float,
        note: str | None,
        work_order_id: int | None = None,
    ) -> Record:
        now = self._now()
        transaction: Record = {
            "id": self._new_id("part_transactions"),
            "note": note,
            "type": self.behaviour.transaction_types.get(action, action),
            "work_order_id": work_order_id,
            "cost": _num(cost),
            # Vendor document example: cost 26.15 x quantity 2 = total_cost 52.3.
            "total_cost": round(quantity * cost, 2),
            "quantity": _num(quantity),
            "created_at": now,
            "updated_at": now,
        }
        store = self._transactions.setdefault((entity["id"], part["id"]), {})
        store[transaction["id"]] = transaction
        return transaction

    def _part_action(self, call: _Call, entity: Record, part_id: int, action: str) -> _Result:
        behaviour = self.behaviour
        part = self._lookup(entity, "parts", part_id)
        body = self._body_object(call)
        on_hand = float(part.get("on_hand_qty") or 0)
        if action == "restock":
            # Vendor document: quantity (<= 3 decimals) and cost (>= 0, <= 2 decimals)
            # required, note optional. A quantity <= 0 is refused (a guess).
            quantity = self._number(body, "quantity", places=3, positive=True)
            cost = self._number(body, "cost", places=2, minimum=0)
            note = self._note(body, required=False)
            average = float(part.get("avg_unit_cost") or 0)
            total = on_hand + quantity
            if total > 0 and on_hand > 0:
                average = (on_hand * average + quantity * cost) / total
            else:
                average = cost
            part["on_hand_qty"] = _num(total)
            part["avg_unit_cost"] = round(average, 2)
            if behaviour.restock_sets_unit_cost:
                part["unit_cost"] = _num(cost)
            self._add_transaction(entity, part, action, quantity=quantity, cost=cost, note=note)
        elif action == "reconcile":
            # Vendor document: "Positive or negative adjustment amount", note required.
            quantity = self._number(body, "quantity", places=3)
            note = self._note(body, required=True)
            total = on_hand + quantity
            if total < 0 and not behaviour.reconcile_allows_negative:
                raise _ApiError(behaviour.validation_status, "Resulting quantity can't be negative")
            part["on_hand_qty"] = _num(total)
            cost = float(part.get("unit_cost") or 0)
            self._add_transaction(entity, part, action, quantity=quantity, cost=cost, note=note)
        elif action in ("set_cost", "set_avg_cost"):
            # Vendor document: cost (>= 0, <= 2 decimals) required, note optional.
            cost = self._number(body, "cost", places=2, minimum=0)
            note = self._note(body, required=False)
            part["unit_cost" if action == "set_cost" else "avg_unit_cost"] = _num(cost)
            self._add_transaction(entity, part, action, quantity=0, cost=cost, note=note)
        else:
            raise self._not_found("Route")
        self._refresh_available(part)
        part["updated_at"] = self._now()
        self._record_call(call, "parts", action, entity, part_id, 200)
        return _Result(200, self._single(entity, part))

    # ------------------------------------------------------------------ API: assignments

    def _assignment(
        self,
        call: _Call,
        entity: Record,
        work_order_id: int,
        op: str,
        placeholders: Mapping[str, str],
    ) -> _Result:
        behaviour = self.behaviour
        work_order = self._lookup(entity, "work_orders", work_order_id)
        assignments: list[Record] = work_order.setdefault("part_assignments", [])
        if op == "remove":
            part_id = _int_id(placeholders.get("part_id", ""))
            current = next((a for a in assignments if a.get("part_id") == part_id), None)
            if part_id is None or current is None:
                raise self._not_found("Part assignment")
            assignments.remove(current)
            part = self._store[(entity["id"], "parts")].get(part_id)
            if part is not None:
                self._stock_effect(entity, work_order, part, -float(current["quantity"]))
            self._touch_work_order(work_order)
            if behaviour.remove_assignment_answer == "no_content":
                self._record_call(call, "work_orders", op, entity, work_order_id, 204)
                return _Result(204, None)
            self._record_call(call, "work_orders", op, entity, work_order_id, 200)
            return _Result(200, self._single(entity, current))

        body = self._body_object(call)
        raw_part_id = body.get("part_id")
        if not isinstance(raw_part_id, int) or isinstance(raw_part_id, bool):
            raise _ApiError(behaviour.validation_status, "Part can't be blank")
        # Vendor document: quantity >= 0 with <= 3 decimals; add "will add to the existing
        # quantity", change sets the "New quantity for existing Part assignment".
        quantity = self._number(body, "quantity", places=3, minimum=0)
        part = self._store[(entity["id"], "parts")].get(raw_part_id)
        if part is None:
            raise self._not_found("Part")
        current = next((a for a in assignments if a.get("part_id") == raw_part_id), None)
        if op == "change":
            if current is None:
                raise self._not_found("Part assignment")
            delta = quantity - float(current["quantity"])
            new_quantity = quantity
            status = 200
        else:
            delta = quantity
            new_quantity = quantity + (float(current["quantity"]) if current else 0.0)
            status = behaviour.assignment_add_status
        if current is None:
            current = {"part_id": raw_part_id}
            assignments.append(current)
        unit = part.get("measurement_unit")
        unit_cost = float(part.get("unit_cost") or 0)
        current.update(
            {
                "part_name": part.get("name"),
                "quantity": _num(new_quantity),
                "unit_name": unit.get("name") if isinstance(unit, dict) else None,
                "unit_short_name": unit.get("short_name") if isinstance(unit, dict) else None,
                "type": "usage",
                "total_cost": round(new_quantity * unit_cost, 2),
            }
        )
        self._stock_effect(entity, work_order, part, delta)
        self._touch_work_order(work_order)
        self._record_call(call, "work_orders", op, entity, work_order_id, status)
        return _Result(status, self._single(entity, current))

    def _stock_effect(self, entity: Record, work_order: Record, part: Record, delta: float) -> None:
        mode = self.behaviour.assignment_stock
        if delta == 0 or mode == "none":
            return
        if mode == "consume":
            part["on_hand_qty"] = _num(float(part.get("on_hand_qty") or 0) - delta)
            self._add_transaction(
                entity,
                part,
                "usage",
                quantity=delta,
                cost=float(part.get("unit_cost") or 0),
                note=None,
                work_order_id=work_order["id"],
            )
        else:
            part["reserved"] = _num(float(part.get("reserved") or 0) + delta)
        self._refresh_available(part)
        part["updated_at"] = self._now()

    def _touch_work_order(self, work_order: Record) -> None:
        if self.behaviour.assignment_bumps_work_order:
            work_order["updated_at"] = self._now()

    # ------------------------------------------------------------------ API: batch

    def _batch(self, call: _Call) -> _Result:
        behaviour = self.behaviour
        # Vendor document: the batch takes "X-Entity-Id required"; its ops run in it.
        self._entity_for(call)
        body = self._body_object(call)
        invalid = behaviour.batch_invalid_status
        ops = body.get("ops")
        if not isinstance(ops, list) or not 1 <= len(ops) <= behaviour.batch_max_ops:
            raise _ApiError(invalid, f"ops must be a list of 1 to {behaviour.batch_max_ops} items")
        if body.get("sequential") is not True:
            raise _ApiError(invalid, "sequential must be true")
        parsed = [self._parse_op(op, index) for index, op in enumerate(ops)]
        results: list[dict[str, Any]] = []
        for index, (method, url, params) in enumerate(parsed):
            result = self._run_op(call, index, method, url, params)
            results.append({"status": result.status, "body": result.body})
            if behaviour.batch_stop_on_error and result.status >= 400:
                break
        return _Result(200, {"results": results})

    def _parse_op(self, op: Any, index: int) -> tuple[str, URL, dict[str, Any] | None]:
        invalid = self.behaviour.batch_invalid_status
        if not isinstance(op, dict):
            raise _ApiError(invalid, f"ops[{index}] must be an object")
        method, url, params = op.get("method"), op.get("url"), op.get("params")
        if not isinstance(method, str) or not method.strip():
            raise _ApiError(invalid, f"ops[{index}].method is required")
        if not isinstance(url, str) or not url.strip():
            raise _ApiError(invalid, f"ops[{index}].url is required")
        if params is not None and not isinstance(params, dict):
            raise _ApiError(invalid, f"ops[{index}].params must be an object")
        return method.strip().upper(), URL(url.strip()), params

    def _run_op(
        self,
        batch: _Call,
        index: int,
        method: str,
        url: URL,
        params: dict[str, Any] | None,
    ) -> _Result:
        """One op "as if it were its own request", with the batch's key and entity. GET
        params become the query (Rails-style keys); other methods get them as the body."""
        query = dict(url.query)
        body: Any = None
        if method == "GET":
            query.update(_flatten_params(params or {}))
        else:
            body = copy.deepcopy(params) if params is not None else None
        op = _Call(
            method=method,
            path=url.path,
            query=query,
            query_string=URL.build(query=query).query_string if query else "",
            body=body,
            entity=batch.entity,
            limit_key=batch.limit_key,
            batch_op=index,
            parent=batch,
        )
        now = time.monotonic()
        result: _Result | None = None
        if self.behaviour.batch_rate_limit in ("per_op", "one_plus_per_op"):
            verdict = self._count(op, now)
            if verdict is not None and not verdict.admitted:
                result = self._error(429, "Too many requests")
        if result is None:
            result = self._execute(op)
        self.requests.append(
            RequestLogEntry(
                method=method,
                path=op.path,
                query=op.query_string,
                entity=op.entity,
                status=result.status,
                at=now,
                batch_op=index,
            )
        )
        return result

    # ------------------------------------------------------------------ control API (/_fake)

    @staticmethod
    def _ctl_int(request: web.Request, name: str) -> int:
        value = _int_id(request.match_info[name])
        if value is None:
            raise web.HTTPNotFound(text=f"{name} must be an integer")
        return value

    def _ctl_table(self, request: web.Request) -> tuple[int, str]:
        entity_id = self._ctl_int(request, "entity")
        resource = request.match_info["resource"]
        if entity_id not in self._entities or resource not in RESOURCES:
            raise web.HTTPNotFound(text=f"no entity {entity_id} or resource {resource}")
        return entity_id, resource

    async def _ctl_entities(self, request: web.Request) -> web.Response:
        """GET /_fake/entities: the account's entities."""
        return json_response(self.entities())

    async def _ctl_add_entity(self, request: web.Request) -> web.Response:
        """POST /_fake/entities {"id", "name", …}: add an entity."""
        fields = await read_json_object(request)
        try:
            return json_response(self.add_entity(fields))
        except ValueError as error:
            raise web.HTTPBadRequest(text=str(error)) from None

    async def _ctl_records(self, request: web.Request) -> web.Response:
        """GET /_fake/entities/<entity>/<resource>: all records, unpaged."""
        entity_id, resource = self._ctl_table(request)
        return json_response(self.records(entity_id, resource))

    async def _ctl_create(self, request: web.Request) -> web.Response:
        """POST /_fake/entities/<entity>/<resource> {fields}: create as a person would."""
        entity_id, resource = self._ctl_table(request)
        fields = await read_json_object(request)
        return json_response(self.create_record(entity_id, resource, fields))

    async def _ctl_update(self, request: web.Request) -> web.Response:
        """PATCH|PUT /_fake/entities/<entity>/<resource>/<id> {fields}: update as a person
        would."""
        entity_id, resource = self._ctl_table(request)
        record_id = self._ctl_int(request, "id")
        fields = await read_json_object(request)
        try:
            return json_response(self.update_record(entity_id, resource, record_id, fields))
        except KeyError:
            raise web.HTTPNotFound(text="no such record") from None

    async def _ctl_delete(self, request: web.Request) -> web.Response:
        """DELETE /_fake/entities/<entity>/<resource>/<id>: delete as a person would."""
        entity_id, resource = self._ctl_table(request)
        try:
            self.delete_record(entity_id, resource, self._ctl_int(request, "id"))
        except KeyError:
            raise web.HTTPNotFound(text="no such record") from None
        return web.Response(status=204)
