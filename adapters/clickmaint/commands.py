"""Click Maint's command catalogue.

- create and update: assets, locations, parts, work orders and work-order requests, each body
  wrapped as the document shows (`{"work_order": {…}}`);
- parts: restock (quantity and unit cost), adjust (the batch example's `reconcile`: a signed
  quantity and a note), set cost;
- a work order's part assignments: add (adds to an assigned quantity), set the quantity,
  remove.

Every call is made in one entity (`X-Entity-Id`): `data.entity_id`, else the instance's only
entity (`options.entities` with one id, or, with `all`, the only one `GET /entities` lists).
With several and no `data.entity_id` a command is rejected (`all`: failed, since it takes a
read to know), and an `entity_id` outside a listed `options.entities` is rejected too.

The request bodies in the document are examples, so a field it does not show can be sent in
`data.extra` (merged into the wrapped object as given). Unknown top-level fields are refused
rather than dropped in silence (msgspec keeps no unknown fields of a struct).
"""

from __future__ import annotations

import dataclasses
import datetime
import time
from collections.abc import Mapping
from typing import Annotated, Any

import msgspec
from msgspec import UNSET, UnsetType

from adapters.clickmaint.resources import ENTITY_HEADER
from adapters.clickmaint.undocumented import (
    COMMAND_PATHS,
    CREATE_METHOD,
    ENTITIES_PATH,
    PART_ACTION_METHOD,
    PART_ACTION_PATHS,
    PART_ASSIGNMENT_ADD_METHOD,
    PART_ASSIGNMENT_CHANGE_METHOD,
    PART_ASSIGNMENT_PATH,
    PART_ASSIGNMENTS_PATH,
    UPDATE_METHOD,
    ClickMaintOptions,
)
from adapters.core.errors import Action
from adapters.core.pagination import dig
from adapters.core.rest_command import PathFieldInvalid, rest_command
from adapters.core.vendor import CommandSpec, PreparedCall, PrepareFailed, Reader
from adapters.core.vendor_call import CallOutcome
from adapters.settings import InstanceConfig

Id = Annotated[int, msgspec.Meta(gt=0)]
Name = Annotated[str, msgspec.Meta(min_length=1)]
Money = Annotated[float, msgspec.Meta(ge=0)]
Count = Annotated[int, msgspec.Meta(ge=0)]
Quantity = Annotated[float, msgspec.Meta(ge=0)]
DateTime = Annotated[datetime.datetime, msgspec.Meta(tz=True, description="ISO 8601 with offset")]

# Optional fields default to UNSET: left out they are not sent, an explicit null is sent as
# JSON null (to clear a field).
OptStr = str | UnsetType | None
OptInt = Count | UnsetType | None
OptId = Id | UnsetType | None
OptIds = list[Id] | UnsetType | None
OptMoney = Money | UnsetType | None
OptQty = Quantity | UnsetType | None
OptBool = bool | UnsetType | None
OptDate = datetime.date | UnsetType | None
OptDateTime = DateTime | UnsetType | None

ENTITY_FIELD = {"entity_id": ENTITY_HEADER}


def _places(name: str, value: object, places: int) -> None:
    """The document's "decimal places <= n"."""
    if isinstance(value, float) and abs(round(value, places) - value) > 1e-9:
        raise ValueError(f"{name} has more than {places} decimal places")


class _Command(msgspec.Struct, kw_only=True, omit_defaults=True, forbid_unknown_fields=True):
    # X-Entity-Id; default: the instance's only entity.
    entity_id: Id | None = None


class _Wrapped(_Command, kw_only=True):
    # Fields the document's example does not show, sent inside the wrapped object as given.
    extra: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.extra:
            typed = {f.encode_name for f in msgspec.structs.fields(type(self))}
            clash = sorted(set(self.extra) & typed)
            if clash:
                raise ValueError(f"extra.{clash[0]} is a field of its own: set it there")


class QrCode(msgspec.Struct, kw_only=True, omit_defaults=True, forbid_unknown_fields=True):
    """A QR code: its value, or one to generate."""

    value: str | UnsetType = UNSET
    generate_qr_code: bool | UnsetType = UNSET


class QrCodeChange(QrCode, kw_only=True):
    """A QR code to set, generate or remove."""

    destroy_qr_code: bool | UnsetType = msgspec.field(default=UNSET, name="_destroy_qr_code")


# --- assets -----------------------------------------------------------------------------------


class _AssetFields(_Wrapped, kw_only=True):
    asset_code: OptStr = UNSET
    description: OptStr = UNSET
    model: OptStr = UNSET
    manufacturer: OptStr = UNSET
    serial_number: OptStr = UNSET
    purchase_date: OptDate = UNSET
    warranty_exp_date: OptDate = UNSET
    warranty_expiration_notification: OptInt = UNSET
    life_expectancy: OptInt = UNSET
    purchase_cost: OptMoney = UNSET
    replacement_cost: OptMoney = UNSET
    salvage_value: OptMoney = UNSET
    location_id: OptId = UNSET
    parent_id: OptId = UNSET
    asset_types_ids: OptIds = UNSET
    technicians_ids: OptIds = UNSET
    parts_ids: OptIds = UNSET
    vendors_ids: OptIds = UNSET


class AssetCreate(_AssetFields, kw_only=True):
    """Create an asset (body `{"asset": {…}}`)."""

    name: Name  # not in the vendor document that it is required
    qr_code_attributes: QrCode | UnsetType = UNSET


class AssetUpdate(_AssetFields, kw_only=True):
    """Change fields of an asset; fields left out are unchanged, null clears one."""

    id: Id
    name: Name | UnsetType = UNSET
    qr_code_attributes: QrCodeChange | UnsetType = UNSET


# --- locations --------------------------------------------------------------------------------


class _LocationFields(_Wrapped, kw_only=True):
    description: OptStr = UNSET
    address: OptStr = UNSET
    parent_id: OptId = UNSET


class LocationCreate(_LocationFields, kw_only=True):
    """Create a location (body `{"location": {…}}`)."""

    name: Name  # not in the vendor document that it is required
    qr_code_attributes: QrCode | UnsetType = UNSET


class LocationUpdate(_LocationFields, kw_only=True):
    """Change fields of a location; fields left out are unchanged, null clears one."""

    id: Id
    name: Name | UnsetType = UNSET
    qr_code_attributes: QrCodeChange | UnsetType = UNSET


# --- parts ------------------------------------------------------------------------------------


class VendorPart(msgspec.Struct, kw_only=True, omit_defaults=True, forbid_unknown_fields=True):
    """A vendor of the part, with its part number."""

    vendor_id: Id
    vendor_part_number: OptStr = UNSET
    is_preferred: OptBool = UNSET


class VendorPartChange(VendorPart, kw_only=True):
    """A vendor of the part to add, change or remove (`_destroy`)."""

    # The record of an existing vendor part (Rails' nested attributes): not in the vendor
    # document, which shows vendor_id alone.
    id: Id | UnsetType = UNSET
    destroy: bool | UnsetType = msgspec.field(default=UNSET, name="_destroy")


class _PartFields(_Wrapped, kw_only=True):
    description: OptStr = UNSET
    min_qty: OptQty = UNSET
    desired_qty: OptQty = UNSET
    number: OptStr = UNSET
    area: OptStr = UNSET
    lead_time: OptInt = UNSET
    part_type_id: OptId = UNSET
    storeroom_id: OptId = UNSET
    measurement_unit_id: OptId = UNSET
    assets_ids: OptIds = UNSET


class PartCreate(_PartFields, kw_only=True):
    """Create a part (body `{"part": {…}}`), with its stock on hand and unit cost."""

    name: Name  # not in the vendor document that it is required
    is_non_stock: OptBool = UNSET
    on_hand_qty: OptQty = UNSET
    unit_cost: OptMoney = UNSET
    vendor_parts_attributes: list[VendorPart] | UnsetType = UNSET
    qr_code_attributes: QrCode | UnsetType = UNSET


class PartUpdate(_PartFields, kw_only=True):
    """Change fields of a part; stock and cost change through restock, adjust and set_cost."""

    id: Id
    name: Name | UnsetType = UNSET
    vendor_parts_attributes: list[VendorPartChange] | UnsetType = UNSET
    qr_code_attributes: QrCodeChange | UnsetType = UNSET


class PartRestock(_Command, kw_only=True):
    """Restock a part: `quantity` received at unit `cost` (the part's costs follow)."""

    id: Id
    quantity: float
    cost: Money
    note: str | None = None

    def __post_init__(self) -> None:
        _places("quantity", self.quantity, 3)
        _places("cost", self.cost, 2)


class PartAdjust(_Command, kw_only=True):
    """Adjust a part's stock by a positive or negative `quantity`, with the reason in `note`."""

    id: Id
    quantity: float
    note: Name

    def __post_init__(self) -> None:
        _places("quantity", self.quantity, 3)


class PartSetCost(_Command, kw_only=True):
    """Set a part's unit cost."""

    id: Id
    cost: Money
    note: str | None = None

    def __post_init__(self) -> None:
        _places("cost", self.cost, 2)


# --- work orders ------------------------------------------------------------------------------


class ChecklistItem(msgspec.Struct, kw_only=True, omit_defaults=True, forbid_unknown_fields=True):
    """One line of a work order's checklist."""

    text: Name
    order: Count | UnsetType = UNSET
    checked: bool | UnsetType = UNSET


class _WorkOrderFields(_Wrapped, kw_only=True):
    description: OptStr = UNSET
    priority: OptStr = UNSET  # the document shows "high" and "none"
    due_date: OptDateTime = UNSET
    completed_at: OptDateTime = UNSET
    location_id: OptId = UNSET
    asset_id: OptId = UNSET
    status_id: OptId = UNSET
    categories_ids: OptIds = UNSET
    account_codes_ids: OptIds = UNSET
    procedure_template_ids: OptIds = UNSET
    technicians_ids: OptIds = UNSET
    vendors_ids: OptIds = UNSET
    notify_vendors_on_update: OptStr = UNSET  # the document shows "yes"
    checklist: list[ChecklistItem] | UnsetType | None = UNSET


class WorkOrderCreate(_WorkOrderFields, kw_only=True):
    """Create a work order (body `{"work_order": {…}}`)."""

    title: Name  # not in the vendor document that it is required
    type: OptStr = UNSET  # the document shows "reactive"
    work_order_request_id: OptId = UNSET
    notify_vendors_on_create: OptStr = UNSET


class WorkOrderUpdate(_WorkOrderFields, kw_only=True):
    """Change fields of a work order; fields left out are unchanged, null clears one."""

    id: Id
    title: Name | UnsetType = UNSET


class WorkOrderPart(_Command, kw_only=True):
    """A part on work order `id`: add `quantity` (added to what is assigned already)."""

    id: Id
    part_id: Id
    quantity: Quantity

    def __post_init__(self) -> None:
        _places("quantity", self.quantity, 3)


class WorkOrderPartQuantity(WorkOrderPart, kw_only=True):
    """Set the quantity of a part assigned to work order `id`."""


class WorkOrderPartRemove(_Command, kw_only=True):
    """Remove part `part_id` from work order `id`."""

    id: Id
    part_id: Id


# --- work-order requests ----------------------------------------------------------------------


class _RequestFields(_Wrapped, kw_only=True):
    description: OptStr = UNSET
    status: OptStr = UNSET  # the document shows "on_hold"
    notify: OptBool = UNSET
    priority: OptStr = UNSET
    location_id: OptId = UNSET
    asset_id: OptId = UNSET
    categories_ids: OptIds = UNSET
    technicians_ids: OptIds = UNSET
    vendors_ids: OptIds = UNSET
    due_date: OptDateTime = UNSET


class WorkOrderRequestCreate(_RequestFields, kw_only=True):
    """Create a work-order request (body `{"work_order_request": {…}}`)."""

    title: Name  # not in the vendor document that it is required


class WorkOrderRequestUpdate(_RequestFields, kw_only=True):
    """Change fields of a work-order request; fields left out are unchanged, null clears one."""

    id: Id
    title: Name | UnsetType = UNSET


# --- the catalogue ----------------------------------------------------------------------------

PREFIX = "workbridge.clickmaint"


def _wrapped(
    type_: str,
    model: type[msgspec.Struct],
    method: str,
    path: str,
    *,
    kind: str,
    wrap: str,
    guessed: bool,
) -> CommandSpec:
    generic = rest_command(
        type_,
        model,
        method,
        path,
        kind="create" if kind == "create" else "update",
        header_fields=ENTITY_FIELD,
        wrap=wrap,
        path_guessed=guessed,
        description=model.__doc__ or "",
    )

    def build(data: msgspec.Struct) -> PreparedCall:
        call = generic.build(data)
        assert isinstance(call.json, dict)
        body = dict(call.json[wrap])
        extra = body.pop("extra", None) or {}
        return msgspec.structs.replace(call, json={wrap: {**body, **extra}})

    return dataclasses.replace(generic, build=build)


RESOURCES: dict[str, tuple[type[msgspec.Struct], type[msgspec.Struct]]] = {
    "asset": (AssetCreate, AssetUpdate),
    "location": (LocationCreate, LocationUpdate),
    "part": (PartCreate, PartUpdate),
    "work_order": (WorkOrderCreate, WorkOrderUpdate),
    "work_order_request": (WorkOrderRequestCreate, WorkOrderRequestUpdate),
}


def _catalogue() -> dict[str, CommandSpec]:
    specs: list[CommandSpec] = []
    for resource, (create, update) in RESOURCES.items():
        path, guessed = COMMAND_PATHS[resource]
        specs += [
            _wrapped(
                f"{PREFIX}.{resource}.create",
                create,
                CREATE_METHOD,
                path,
                kind="create",
                wrap=resource,
                guessed=guessed,
            ),
            _wrapped(
                f"{PREFIX}.{resource}.update",
                update,
                UPDATE_METHOD,
                f"{path}/{{id}}",
                kind="update",
                wrap=resource,
                guessed=guessed,
            ),
        ]
    for action, model, repeat_safe in (
        # A restock or an adjustment repeated is stock counted twice; a cost set twice is set.
        ("restock", PartRestock, False),
        ("adjust", PartAdjust, False),
        ("set_cost", PartSetCost, True),
    ):
        path, guessed = PART_ACTION_PATHS[action]
        specs.append(
            rest_command(
                f"{PREFIX}.part.{action}",
                model,
                PART_ACTION_METHOD,
                path,
                kind="action",
                header_fields=ENTITY_FIELD,
                path_guessed=guessed,
                repeat_safe=repeat_safe,
                description=model.__doc__ or "",
            )
        )
    specs += [
        rest_command(
            f"{PREFIX}.work_order.add_part",
            WorkOrderPart,
            PART_ASSIGNMENT_ADD_METHOD,
            PART_ASSIGNMENTS_PATH,
            kind="action",
            header_fields=ENTITY_FIELD,
            path_guessed=True,
            # "If this Part is already assigned, this will add to the existing quantity."
            repeat_safe=False,
            description=WorkOrderPart.__doc__ or "",
        ),
        rest_command(
            f"{PREFIX}.work_order.set_part_quantity",
            WorkOrderPartQuantity,
            PART_ASSIGNMENT_CHANGE_METHOD,
            PART_ASSIGNMENTS_PATH,
            kind="update",
            header_fields=ENTITY_FIELD,
            path_guessed=True,
            description=WorkOrderPartQuantity.__doc__ or "",
        ),
        rest_command(
            f"{PREFIX}.work_order.remove_part",
            WorkOrderPartRemove,
            "DELETE",
            PART_ASSIGNMENT_PATH,
            kind="delete",
            header_fields=ENTITY_FIELD,
            path_guessed=True,
            description=WorkOrderPartRemove.__doc__ or "",
        ),
    ]
    return {spec.type: spec for spec in specs}


COMMANDS = _catalogue()

# The resource updates, whose method `options.update_method` sets.
RESOURCE_UPDATES = frozenset(f"{PREFIX}.{resource}.update" for resource in RESOURCES)


# --- the entity of a command ------------------------------------------------------------------


class EntityUnclear(PathFieldInvalid):
    """The command does not say which entity, and the instance has several: rejected."""


class Entities:
    """Which entity a command of one instance goes to (its `X-Entity-Id`)."""

    def __init__(self, options: ClickMaintOptions) -> None:
        self.listed = None if options.entities == "all" else [str(e) for e in options.entities]
        self.refresh_s = options.entities_refresh_s
        self._known: tuple[float, tuple[list[str], bool]] | None = None

    def resolve(self, call: PreparedCall) -> PreparedCall:
        """The call with its entity where the command or the options decide it; raises
        `EntityUnclear` where they cannot. With `entities: all` and no `entity_id` the call
        is left for `prepare` (which asks `GET /entities`)."""
        given = call.headers.get(ENTITY_HEADER)
        if self.listed is None:
            return call
        if given is not None:
            if given not in self.listed:
                raise EntityUnclear(
                    f"entity_id {given} is not one of this instance's options.entities "
                    f"({', '.join(self.listed)})"
                )
            return call
        if len(self.listed) == 1:
            return _in_entity(call, self.listed[0])
        raise EntityUnclear(
            f"this instance has several entities ({', '.join(self.listed)}): "
            "set data.entity_id to the one the command is for"
        )

    async def prepare(
        self, reader: Reader, data: msgspec.Struct, call: PreparedCall
    ) -> PreparedCall:
        """With `entities: all`: a command without `entity_id` goes to the account's only
        entity; with several it fails (the read is what tells, so it cannot be rejected)."""
        if ENTITY_HEADER in call.headers:
            return call
        entities, more = await self._entities(reader)
        if len(entities) == 1 and not more:
            return _in_entity(call, entities[0])
        shown = ", ".join(entities[:10]) + (", …" if more or len(entities) > 10 else "")
        problem = (
            f"this Click Maint account has several entities ({shown}): set data.entity_id "
            "(or list the instance's entity in options.entities)"
            if entities
            else "GET /entities lists no entity for this API key"
        )
        raise PrepareFailed(CallOutcome(action=Action.FAIL, attempts=1, error=problem))

    async def _entities(self, reader: Reader) -> tuple[list[str], bool]:
        """The entities' ids on the first page, and whether there are more pages."""
        now = time.monotonic()
        if self._known is not None and now - self._known[0] < self.refresh_s:
            return self._known[1]
        response = await reader.get(f"{ENTITIES_PATH}?per_page=100", {})
        try:
            body = response.json()
        except msgspec.DecodeError:
            body = None
        records = body.get("data") if isinstance(body, dict) else None
        if not isinstance(body, dict) or not isinstance(records, list):
            raise PrepareFailed(
                CallOutcome(
                    action=Action.FAIL,
                    attempts=1,
                    response=response,
                    error="GET /entities: the answer holds no list of entities",
                )
            )
        found = [str(r["id"]) for r in records if isinstance(r, dict) and r.get("id") is not None]
        pages = dig(body, ("meta", "pagination", "total_pages"))
        known = (found, isinstance(pages, int) and pages > 1)
        self._known = (now, known)
        return known


def _in_entity(call: PreparedCall, entity: str) -> PreparedCall:
    return msgspec.structs.replace(call, headers={**call.headers, ENTITY_HEADER: entity})


def bind_commands(
    inst: InstanceConfig, catalogue: Mapping[str, CommandSpec]
) -> dict[str, CommandSpec]:
    """The catalogue for one instance: its entities, and its `update_method`."""
    options = ClickMaintOptions.of(inst)
    entities = Entities(options)
    bound = {}
    for type_, spec in catalogue.items():
        method = options.update_method if type_ in RESOURCE_UPDATES else spec.method
        bound[type_] = dataclasses.replace(
            spec,
            method=method,
            build=_bound_build(spec, method, entities),
            prepare=entities.prepare if entities.listed is None else spec.prepare,
        )
    return bound


def _bound_build(spec: CommandSpec, method: str, entities: Entities) -> Any:
    def build(data: msgspec.Struct) -> PreparedCall:
        call = spec.build(data)
        if call.method != method:
            call = msgspec.structs.replace(call, method=method)
        return entities.resolve(call)

    return build
