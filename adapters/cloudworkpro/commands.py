"""CLOUDWORK|PRO's command catalogue: work orders (create, update, set the status, attach a
document) and sites (create).

The document gives the rules but no request body: its examples show work types' 24-hex
`_id`s (`work_type_ids: ["636953eebf54aa00087e75ee"]`), a status `'draft'` set on a work order
("Status updated successfully to: 'draft' for work order with ID: …") and that documents go
as `form-data`. Paths and methods are the guesses of undocumented.py (each overridable in
`options.command_paths`); the field names below are ours, each marked. A field the models do
not name is sent through `data.extra` (merged into the body as given, as Click Maint does);
an unknown top-level field is refused rather than dropped in silence.

Repeat-safety: an update and a status change sent twice set the same values, so they are
retried freely; a create, a site create and a document upload sent twice make two records,
and CLOUDWORK|PRO offers no look-up by a reference of ours, so one whose answer was lost (a
crash, a timeout, a 500/502/504) ends `ambiguous`, never repeated blindly.

The result's `response` is centred on the envelope's `data` (`{"code": 200, "reason": "",
"data": X, "success": true}`: the rest says nothing on success): for the creates and the
upload `{"id": <the new record's _id>, "data": X}` (the id from `X._id`/`X.id`, or the one
24-hex id of a sentence; null when X names none), for the others X itself (the updated
record, or the document's sentence). An answer that is no envelope is kept whole in place
of X.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime
import mimetypes
import re
from collections.abc import Callable
from typing import Annotated, Any
from urllib.parse import urlsplit

import msgspec
from msgspec import UNSET, UnsetType

from adapters.cloudworkpro.undocumented import (
    DOCUMENT_FORM_FIELD,
    ID_FIELD,
    SITES_PATH,
    WORK_ORDER_DOCUMENTS_PATH,
    WORK_ORDER_PATH,
    WORK_ORDER_STATUS_METHOD,
    WORK_ORDER_STATUS_PATH,
    WORK_ORDER_UPDATE_METHOD,
    WORK_ORDERS_PATH,
)
from adapters.core.multipart import FormPart, Multipart
from adapters.core.rest_command import PathFieldInvalid, rest_command
from adapters.core.vendor import CommandKind, CommandSpec, PreparedCall

PREFIX = "workbridge.cloudworkpro"
WORK_ORDER_CREATE = f"{PREFIX}.work_order.create"
WORK_ORDER_UPDATE = f"{PREFIX}.work_order.update"
WORK_ORDER_SET_STATUS = f"{PREFIX}.work_order.set_status"
WORK_ORDER_ATTACH_DOCUMENT = f"{PREFIX}.work_order.attach_document"
SITE_CREATE = f"{PREFIX}.site.create"

# A document reference instead of its bytes goes in this form field.
DOCUMENT_URL_FORM_FIELD = "url"  # not in the vendor document
# The largest document sent, decoded. The document gives no limit; a command carrying one
# this large as base64 (a third more) also needs the commands topic's max.message.bytes and
# the consumer's fetch size raised above Kafka's 1 MiB default.
# A command is one Kafka record (1 MB by default): a larger file goes by `url` instead.
MAX_DOCUMENT_BYTES = 700 * 1024  # not in the vendor document (a choice)
DEFAULT_CONTENT_TYPE = "application/octet-stream"

# The document's ids are MongoDB ObjectIds (24 hex digits, `633cf3e1bb4e2453a0497b65`); any
# non-empty id is sent, so that CLOUDWORK|PRO judges it (an unknown one: its code 400).
ObjectId = Annotated[
    str, msgspec.Meta(min_length=1, description="an `_id` (24 hex digits in the document)")
]
# The record in a path: any non-empty value (quoted into one segment), not only an ObjectId,
# so that an instance whose ids look otherwise still works.
RecordId = Annotated[str, msgspec.Meta(min_length=1, description="the record's `_id`")]
Name = Annotated[str, msgspec.Meta(min_length=1)]
Status = Annotated[str, msgspec.Meta(min_length=1, description="a work order status, e.g. 'draft'")]
DateTime = Annotated[datetime.datetime, msgspec.Meta(tz=True, description="ISO 8601 with offset")]

# Optional fields default to UNSET: left out they are not sent, an explicit null is sent as
# JSON null (to clear a field, where CLOUDWORK|PRO takes that).
OptStr = str | UnsetType | None
OptId = ObjectId | UnsetType | None
OptDateTime = DateTime | UnsetType | None


class _Command(msgspec.Struct, kw_only=True, omit_defaults=True, forbid_unknown_fields=True):
    pass


class _WithExtra(_Command, kw_only=True):
    # Fields the models do not name, merged into the body as given.
    extra: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.extra:
            typed = {f.encode_name for f in msgspec.structs.fields(type(self))}
            clash = sorted(set(self.extra) & typed)
            if clash:
                raise ValueError(f"extra.{clash[0]} is a field of its own: set it there")

    def _set_fields(self, *leave_out: str) -> list[str]:
        """The fields the command sets (extra's keys included), but those left out."""
        # An explicit null is a change too (it clears the field).
        named = [
            f.encode_name
            for f in msgspec.structs.fields(self)
            if f.name not in (*leave_out, "extra") and getattr(self, f.name) is not UNSET
        ]
        return named + list(self.extra or {})


# --- work orders -------------------------------------------------------------------------------


class _WorkOrderFields(_WithExtra, kw_only=True):
    name: Name | UnsetType = UNSET  # not in the vendor document
    description: OptStr = UNSET  # not in the vendor document
    # The document's `work_type_ids` (its expanded `work_types` have `_id`, name, description).
    work_type_ids: list[ObjectId] | UnsetType = UNSET
    site_id: OptId = UNSET  # not in the vendor document
    due_date: OptDateTime = UNSET  # not in the vendor document


class WorkOrderCreate(_WorkOrderFields, kw_only=True):
    """Create a work order (POST /workorders, a guessed path). The document names no
    required field: CLOUDWORK|PRO refuses what it needs with a 200 carrying code 400 and its
    error code (e.g. WO_0005 for unknown work types), reported as failed. The result's
    response is `{"id": <the new work order's _id>, "data": <the answer's data>}`. Not
    repeated after a lost answer: such a create is `ambiguous`."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self._set_fields():
            raise ValueError("nothing to create: give at least one field (e.g. name)")


class WorkOrderUpdate(_WorkOrderFields, kw_only=True):
    """Change fields of work order `id` (PUT /workorders/{id}, a guessed method); fields left
    out are not sent, null is sent as null. The status changes through set_status."""

    id: RecordId

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self._set_fields("id"):
            raise ValueError("nothing to update: give at least one field besides id")


class WorkOrderSetStatus(_Command, kw_only=True):
    """Set the status of work order `id` (body `{"status": …}`, e.g. "draft"); CLOUDWORK|PRO
    answers a sentence ("Status updated successfully to: 'draft' for work order with ID: …"),
    which is the result's response."""

    id: RecordId
    status: Status


class WorkOrderAttachDocument(_Command, kw_only=True):
    """Attach a document to work order `id`, sent as multipart/form-data: either the file
    itself (`content_base64` with its `filename` and optional `content_type`; at most
    700 KiB decoded: a command is one Kafka record) in the form field `file`, or a `url`
    reference sent as the form field `url` (then without filename and content_type).
    `fields` are further form fields, sent as given, before the document. The result's response is
    `{"id": <the document's _id>, "data": <the answer's data>}`. Not repeated after a lost
    answer (two uploads are two documents): such an upload is `ambiguous`."""

    id: RecordId
    filename: Annotated[str, msgspec.Meta(min_length=1, max_length=255)] | None = None
    content_base64: str | None = None
    content_type: str | None = None
    url: str | None = None
    fields: dict[str, str] | None = None

    def __post_init__(self) -> None:
        if (self.content_base64 is None) == (self.url is None):
            raise ValueError("give exactly one of content_base64 (the file) and url")
        if self.filename is not None and not _printable(self.filename):
            raise ValueError("filename holds control characters or a path separator")
        if self.content_base64 is not None:
            if self.filename is None:
                raise ValueError("content_base64 needs its filename")
            decode_document(self.content_base64)  # raises on bad base64 or a too large file
        elif self.url is not None:
            parts = urlsplit(self.url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ValueError("url must be an absolute http(s) URL")
            if self.filename is not None or self.content_type is not None:
                # Nothing says where CLOUDWORK|PRO would take them beside a url.
                raise ValueError(
                    "filename and content_type go with content_base64; beside a url, send "
                    "further form fields in `fields`"
                )
        if self.content_type is not None and not re.fullmatch(
            r"[\w.+-]+/[\w.+-]+(\s*;.*)?", self.content_type
        ):
            raise ValueError(f"content_type {self.content_type!r} is not a media type")
        taken = {DOCUMENT_FORM_FIELD, DOCUMENT_URL_FORM_FIELD}
        clash = sorted(set(self.fields or {}) & taken)
        if clash:
            raise ValueError(f"fields.{clash[0]} is the document's own form field")


def _printable(name: str) -> bool:
    return name.isprintable() and "/" not in name and "\\" not in name


def decode_document(content_base64: str) -> bytes:
    """The document's bytes from standard base64 (line breaks allowed); raises ValueError
    for anything else, an empty document, or one above `MAX_DOCUMENT_BYTES`."""
    compact = "".join(content_base64.split())
    # Checked before decoding: a huge command is refused without holding its bytes twice.
    if len(compact) > 4 * ((MAX_DOCUMENT_BYTES + 2) // 3):
        raise ValueError(f"the document is larger than {MAX_DOCUMENT_BYTES} bytes")
    try:
        content = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("content_base64 is not valid base64") from None
    if not content:
        raise ValueError("content_base64 holds an empty document")
    if len(content) > MAX_DOCUMENT_BYTES:
        raise ValueError(f"the document is larger than {MAX_DOCUMENT_BYTES} bytes")
    return content


# --- sites -------------------------------------------------------------------------------------


class SiteCreate(_WithExtra, kw_only=True):
    """Create a site (POST /sites, a guessed path). The result's response is `{"id": <the new
    site's _id>, "data": <the answer's data>}`. Not repeated after a lost answer: such a
    create is `ambiguous`."""

    name: Name | UnsetType = UNSET  # not in the vendor document
    description: OptStr = UNSET  # not in the vendor document
    address: OptStr = UNSET  # not in the vendor document

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self._set_fields():
            raise ValueError("nothing to create: give at least one field (e.g. name)")


# --- answers -----------------------------------------------------------------------------------

_OBJECT_ID = re.compile(r"\b[0-9a-fA-F]{24}\b")


def _data(body: Any) -> Any:
    """The envelope's `data`; a body that is no envelope, whole."""
    if isinstance(body, dict) and "data" in body and "code" in body:
        return body["data"]
    return body


def new_record_id(data: Any) -> str | None:
    """The id of the record a create made: `_id` (or `id`) of the answer's data, or the one
    ObjectId a sentence names; None when it names none or several."""
    if isinstance(data, dict):
        for key in (ID_FIELD, "id"):
            if data.get(key) not in (None, ""):
                return str(data[key])
        return None
    if isinstance(data, str):
        found = set(_OBJECT_ID.findall(data))
        return found.pop() if len(found) == 1 else None
    return None


def created_answer(body: Any) -> dict[str, Any]:
    """A create's answer as the result's response: `{"id": <new _id or null>, "data": X}`."""
    data = _data(body)
    return {"id": new_record_id(data), "data": data}


def data_answer(body: Any) -> Any:
    """An update's answer as the result's response: the envelope's `data`."""
    return _data(body)


# --- builds ------------------------------------------------------------------------------------


def _with_extra(plain: Callable[[msgspec.Struct], PreparedCall]) -> Any:
    """The generic build with `extra` merged into the body."""

    def build(data: msgspec.Struct) -> PreparedCall:
        call = plain(data)
        assert isinstance(call.json, dict)
        body = dict(call.json)
        extra = body.pop("extra", None) or {}
        return msgspec.structs.replace(call, json={**body, **extra})

    return build


def _document_form(plain: Callable[[msgspec.Struct], PreparedCall]) -> Any:
    """The generic build (the path) with the body as multipart/form-data."""

    def build(data: msgspec.Struct) -> PreparedCall:
        assert isinstance(data, WorkOrderAttachDocument)
        call = plain(data)
        parts = [FormPart(name, value) for name, value in (data.fields or {}).items()]
        if data.content_base64 is not None:
            assert data.filename is not None
            try:
                content = decode_document(data.content_base64)
            except ValueError as exc:  # checked at decoding already; kept for a direct build
                raise PathFieldInvalid(str(exc)) from None
            media = (
                data.content_type or mimetypes.guess_type(data.filename)[0] or DEFAULT_CONTENT_TYPE
            )
            parts.append(
                FormPart(DOCUMENT_FORM_FIELD, content, filename=data.filename, content_type=media)
            )
        else:
            assert data.url is not None
            parts.append(FormPart(DOCUMENT_URL_FORM_FIELD, data.url))
        return msgspec.structs.replace(call, json=Multipart(tuple(parts)))

    return build


def _spec(
    type_: str,
    model: type[msgspec.Struct],
    method: str,
    path: str,
    *,
    kind: CommandKind,
    repeat_safe: bool,
    answer: Callable[[Any], Any],
    wrap_build: Callable[[Callable[[msgspec.Struct], PreparedCall]], Any] | None = None,
) -> CommandSpec:
    spec = rest_command(
        type_,
        model,
        method,
        path,
        kind=kind,
        # Every path and method here is a guess (undocumented.py): on, and overridable in
        # options.command_paths.
        path_guessed=True,
        repeat_safe=repeat_safe,
        description=model.__doc__ or "",
    )
    build = wrap_build(spec.build) if wrap_build is not None else spec.build
    return dataclasses.replace(spec, build=build, answer=answer)


def _catalogue() -> dict[str, CommandSpec]:
    specs = [
        _spec(
            WORK_ORDER_CREATE,
            WorkOrderCreate,
            "POST",
            WORK_ORDERS_PATH,
            kind="create",
            repeat_safe=False,
            answer=created_answer,
            wrap_build=_with_extra,
        ),
        _spec(
            WORK_ORDER_UPDATE,
            WorkOrderUpdate,
            WORK_ORDER_UPDATE_METHOD,
            WORK_ORDER_PATH,
            kind="update",
            repeat_safe=True,  # the same fields set twice are set once
            answer=data_answer,
            wrap_build=_with_extra,
        ),
        _spec(
            WORK_ORDER_SET_STATUS,
            WorkOrderSetStatus,
            WORK_ORDER_STATUS_METHOD,
            WORK_ORDER_STATUS_PATH,
            kind="update",
            repeat_safe=True,  # a status set twice is set
            answer=data_answer,
        ),
        _spec(
            WORK_ORDER_ATTACH_DOCUMENT,
            WorkOrderAttachDocument,
            "POST",
            WORK_ORDER_DOCUMENTS_PATH,
            kind="action",
            repeat_safe=False,  # two uploads are two documents
            answer=created_answer,
            wrap_build=_document_form,
        ),
        _spec(
            SITE_CREATE,
            SiteCreate,
            "POST",
            SITES_PATH,
            kind="create",
            repeat_safe=False,
            answer=created_answer,
            wrap_build=_with_extra,
        ),
    ]
    return {spec.type: spec for spec in specs}


COMMANDS = _catalogue()
