"""CLOUDWORK|PRO commands: each command's call, the document upload as form-data, validation,
repeat-safety and the result's response."""

from __future__ import annotations

import base64
import uuid
from types import SimpleNamespace
from typing import Any, cast

import msgspec
import pytest
from aiokafka.structs import ConsumerRecord

from adapters.cloudworkpro.commands import (
    COMMANDS,
    DOCUMENT_URL_FORM_FIELD,
    MAX_DOCUMENT_BYTES,
    SITE_CREATE,
    WORK_ORDER_ATTACH_DOCUMENT,
    WORK_ORDER_CREATE,
    WORK_ORDER_SET_STATUS,
    WORK_ORDER_UPDATE,
    created_answer,
    data_answer,
    decode_document,
)
from adapters.cloudworkpro.undocumented import (
    DOCUMENT_FORM_FIELD,
    SITES_PATH,
    WORK_ORDER_STATUS_METHOD,
    WORK_ORDER_UPDATE_METHOD,
    WORK_ORDERS_PATH,
    CloudworkProOptions,
)
from adapters.core.cloudevents_codec import make_event, to_kafka
from adapters.core.commands.model import decode_command
from adapters.core.commands.validation import Invalid, validate
from adapters.core.instance import Instance
from adapters.core.multipart import FormPart, Multipart
from adapters.core.vendor import PreparedCall

WO = "633cf3e1bb4e2453a0497b65"  # the document's work order id
WORK_TYPE = "636953eebf54aa00087e75ee"  # the document's work type id


def instance(**command_paths: str) -> Instance:
    """What `validate` reads of an instance: its catalogue and options."""
    options = CloudworkProOptions(command_paths=command_paths)
    return cast(Instance, SimpleNamespace(commands=COMMANDS, options=options))


def call(type_: str, data: Any, inst: Instance | None = None) -> PreparedCall:
    """The vendor call a command becomes, through the core's validation; raises Invalid."""
    event = make_event(
        id=str(uuid.uuid4()),
        source="/tests",
        type=type_,
        subject=f"work_order/{WO}",
        partitionkey=f"work_order/{WO}",
        data=msgspec.json.encode(data),
    )
    key, value, headers = to_kafka(event)
    record = ConsumerRecord("t", 0, 1, 0, 0, key, value, None, 0, len(value), headers)
    _, _, prepared = validate(inst or instance(), decode_command(record))
    return prepared


def rejected(type_: str, data: Any) -> str:
    with pytest.raises(Invalid) as caught:
        call(type_, data)
    return str(caught.value)


def b64(content: bytes) -> str:
    return base64.b64encode(content).decode()


# --- the catalogue -----------------------------------------------------------------------------


def test_the_catalogue_and_its_repeat_safety() -> None:
    assert {t: (s.method, s.path, s.repeat_safe) for t, s in COMMANDS.items()} == {
        WORK_ORDER_CREATE: ("POST", WORK_ORDERS_PATH, False),
        WORK_ORDER_UPDATE: (WORK_ORDER_UPDATE_METHOD, "/workorders/{id}", True),
        WORK_ORDER_SET_STATUS: (WORK_ORDER_STATUS_METHOD, "/workorders/{id}/status", True),
        WORK_ORDER_ATTACH_DOCUMENT: ("POST", "/workorders/{id}/documents", False),
        SITE_CREATE: ("POST", SITES_PATH, False),
    }
    for spec in COMMANDS.values():
        assert spec.type.startswith("workbridge.cloudworkpro.")
        assert spec.path_guessed and not spec.path_not_documented
        assert spec.description
        assert spec.answer is not None


# --- work orders -------------------------------------------------------------------------------


def test_work_order_create() -> None:
    got = call(
        WORK_ORDER_CREATE,
        {
            "name": "Replace the router",
            "description": "Rack 4",
            "work_type_ids": [WORK_TYPE],
            "site_id": "636953eebf54aa00087e75ef",
            "due_date": "2026-12-01T17:00:00+01:00",
            "extra": {"priority": "high", "custom": {"a": 1}},
        },
    )
    assert (got.method, got.path, got.headers) == ("POST", "/workorders", {})
    assert got.json == {
        "name": "Replace the router",
        "description": "Rack 4",
        "work_type_ids": [WORK_TYPE],
        "site_id": "636953eebf54aa00087e75ef",
        "due_date": "2026-12-01T17:00:00+01:00",
        "priority": "high",
        "custom": {"a": 1},
    }


def test_work_order_create_sends_only_what_is_given_and_null_as_null() -> None:
    got = call(WORK_ORDER_CREATE, {"name": "A", "description": None})
    assert got.json == {"name": "A", "description": None}
    assert call(WORK_ORDER_CREATE, {"extra": {"title": "T"}}).json == {"title": "T"}


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ({"name": "A", "bogus": 1}, "unknown field `bogus`"),
        ({}, "nothing to create"),
        ({"extra": {}}, "nothing to create"),
        ({"name": "A", "extra": {"name": "B"}}, "extra.name is a field of its own"),
        ({"name": "A", "work_type_ids": [""]}, "work_type_ids"),
        ({"name": "A", "work_type_ids": WORK_TYPE}, "work_type_ids"),
        ({"name": "A", "site_id": ""}, "site_id"),
        ({"name": ""}, "name"),
        ({"name": "A", "due_date": "2026-12-01T17:00:00"}, "due_date"),  # no offset
    ],
)
def test_work_order_create_refuses(data: dict[str, Any], problem: str) -> None:
    assert problem in rejected(WORK_ORDER_CREATE, data)


def test_work_order_update() -> None:
    got = call(
        WORK_ORDER_UPDATE,
        {"id": WO, "description": "now rack 5", "work_type_ids": [], "extra": {"x": 1}},
    )
    assert (got.method, got.path) == (WORK_ORDER_UPDATE_METHOD, f"/workorders/{WO}")
    assert got.json == {"description": "now rack 5", "work_type_ids": [], "x": 1}
    # A null clears a field: that is a change.
    assert call(WORK_ORDER_UPDATE, {"id": WO, "site_id": None}).json == {"site_id": None}


def test_work_order_update_refuses() -> None:
    assert "nothing to update" in rejected(WORK_ORDER_UPDATE, {"id": WO})
    assert "unknown field `status`" in rejected(WORK_ORDER_UPDATE, {"id": WO, "status": "x"})
    assert "id" in rejected(WORK_ORDER_UPDATE, {"name": "A"})
    assert "cannot name a record" in rejected(WORK_ORDER_UPDATE, {"id": "..", "name": "A"})


def test_a_path_id_stays_one_segment() -> None:
    got = call(WORK_ORDER_UPDATE, {"id": "a/../b?c", "name": "A"})
    assert got.path == "/workorders/a%2F..%2Fb%3Fc"


def test_work_order_set_status() -> None:
    got = call(WORK_ORDER_SET_STATUS, {"id": WO, "status": "draft"})
    assert (got.method, got.path) == (WORK_ORDER_STATUS_METHOD, f"/workorders/{WO}/status")
    assert got.json == {"status": "draft"}
    assert "status" in rejected(WORK_ORDER_SET_STATUS, {"id": WO})
    assert "status" in rejected(WORK_ORDER_SET_STATUS, {"id": WO, "status": ""})
    assert "unknown field `extra`" in rejected(
        WORK_ORDER_SET_STATUS, {"id": WO, "status": "draft", "extra": {}}
    )


def test_a_configured_path_replaces_the_guess() -> None:
    inst = instance(**{WORK_ORDER_SET_STATUS: "/v2/workorders/{id}/state"})
    got = call(WORK_ORDER_SET_STATUS, {"id": WO, "status": "draft"}, inst)
    assert got.path == f"/v2/workorders/{WO}/state"
    assert got.json == {"status": "draft"}


# --- documents ---------------------------------------------------------------------------------


def parts(prepared: PreparedCall) -> tuple[FormPart, ...]:
    assert isinstance(prepared.json, Multipart)
    return prepared.json.parts


def test_attach_a_document_as_base64() -> None:
    content = b"%PDF-1.4 \x00\xff binary"
    got = call(
        WORK_ORDER_ATTACH_DOCUMENT,
        {"id": WO, "filename": "report.pdf", "content_base64": b64(content)},
    )
    assert (got.method, got.path) == ("POST", f"/workorders/{WO}/documents")
    assert parts(got) == (
        FormPart(
            DOCUMENT_FORM_FIELD, content, filename="report.pdf", content_type="application/pdf"
        ),
    )
    # The content never shows in a log line.
    assert "PDF" not in repr(got)


def test_attach_with_a_content_type_line_breaks_and_form_fields() -> None:
    content = bytes(range(256)) * 3
    encoded = b64(content)
    wrapped = "\n".join(encoded[i : i + 76] for i in range(0, len(encoded), 76))
    got = call(
        WORK_ORDER_ATTACH_DOCUMENT,
        {
            "id": WO,
            "filename": "blob",
            "content_base64": wrapped,
            "content_type": "image/png",
            "fields": {"description": "before"},
        },
    )
    assert parts(got) == (
        FormPart("description", "before"),
        FormPart(DOCUMENT_FORM_FIELD, content, filename="blob", content_type="image/png"),
    )
    unknown = call(
        WORK_ORDER_ATTACH_DOCUMENT, {"id": WO, "filename": "blob", "content_base64": b64(b"x")}
    )
    assert parts(unknown)[0].content_type == "application/octet-stream"


def test_attach_a_document_by_url() -> None:
    url = "https://files.example.com/report.pdf?sig=1"
    got = call(WORK_ORDER_ATTACH_DOCUMENT, {"id": WO, "url": url})
    assert parts(got) == (FormPart(DOCUMENT_URL_FORM_FIELD, url),)


def test_the_form_is_built_for_aiohttp() -> None:
    got = call(
        WORK_ORDER_ATTACH_DOCUMENT, {"id": WO, "filename": "a.txt", "content_base64": "aGk="}
    )
    assert isinstance(got.json, Multipart)
    form = got.json.form()
    assert form.content_type.startswith("multipart/form-data; boundary=")
    # A `url` alone is multipart too (FormData would have sent it urlencoded).
    by_url = call(WORK_ORDER_ATTACH_DOCUMENT, {"id": WO, "url": "https://example.com/a.pdf"})
    assert isinstance(by_url.json, Multipart)
    assert by_url.json.form().content_type.startswith("multipart/form-data")


def test_the_size_limit() -> None:
    largest = b"\x00" * MAX_DOCUMENT_BYTES
    assert decode_document(b64(largest)) == largest
    with pytest.raises(ValueError, match="larger than"):
        decode_document(b64(largest + b"\x00"))


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ({"filename": "a.pdf", "content_base64": "not base64!"}, "not valid base64"),
        ({"filename": "a.pdf", "content_base64": "aGk"}, "not valid base64"),  # no padding
        ({"filename": "a.pdf", "content_base64": "aGk=", "url": "https://x/y"}, "exactly one"),
        ({"filename": "a.pdf"}, "exactly one"),
        ({"filename": "a.pdf", "content_base64": ""}, "empty document"),
        ({"content_base64": "aGk="}, "needs its filename"),
        ({"filename": "../etc/passwd", "content_base64": "aGk="}, "path separator"),
        ({"filename": "a\r\nb", "content_base64": "aGk="}, "control characters"),
        ({"filename": "a.pdf", "content_base64": "aGk=", "content_type": "pdf"}, "media type"),
        ({"url": "file:///etc/passwd"}, "http(s) URL"),
        ({"url": "report.pdf"}, "http(s) URL"),
        ({"url": "https://x/y", "filename": "a.pdf"}, "go with content_base64"),
        ({"url": "https://x/y", "fields": {"file": "x"}}, "fields.file"),
        ({"url": "https://x/y", "size": 3}, "unknown field `size`"),
    ],
)
def test_attach_refuses(data: dict[str, Any], problem: str) -> None:
    assert problem in rejected(WORK_ORDER_ATTACH_DOCUMENT, {"id": WO, **data})


def test_attach_refuses_a_too_large_document() -> None:
    too_large = b64(b"\x00" * (MAX_DOCUMENT_BYTES + 1))
    problem = rejected(
        WORK_ORDER_ATTACH_DOCUMENT, {"id": WO, "filename": "a.bin", "content_base64": too_large}
    )
    assert f"larger than {MAX_DOCUMENT_BYTES} bytes" in problem


# --- sites -------------------------------------------------------------------------------------


def test_site_create() -> None:
    got = call(SITE_CREATE, {"name": "HQ", "address": "1 Main St", "extra": {"city": "Austin"}})
    assert (got.method, got.path) == ("POST", "/sites")
    assert got.json == {"name": "HQ", "address": "1 Main St", "city": "Austin"}
    assert "nothing to create" in rejected(SITE_CREATE, {})
    assert "unknown field `city`" in rejected(SITE_CREATE, {"name": "HQ", "city": "Austin"})


# --- the result's response ---------------------------------------------------------------------


def envelope(data: Any) -> dict[str, Any]:
    return {"code": 200, "reason": "", "data": data, "success": True}


def test_a_create_answers_the_new_id_beside_the_data() -> None:
    record = {"_id": WO, "name": "A"}
    assert created_answer(envelope(record)) == {"id": WO, "data": record}
    assert created_answer(envelope({"id": 7})) == {"id": "7", "data": {"id": 7}}
    said = f"Work order created with ID: {WO}"
    assert created_answer(envelope(said)) == {"id": WO, "data": said}
    assert created_answer(envelope("created")) == {"id": None, "data": "created"}
    two = f"{WO} copied to 636953eebf54aa00087e75ee"
    assert created_answer(envelope(two))["id"] is None
    # An answer that is no envelope is kept whole.
    assert created_answer(record) == {"id": WO, "data": record}
    assert created_answer("text") == {"id": None, "data": "text"}


def test_an_update_answers_the_envelopes_data() -> None:
    sentence = f"Status updated successfully to: 'draft' for work order with ID: {WO}"
    assert data_answer(envelope(sentence)) == sentence
    assert data_answer(envelope({"_id": WO})) == {"_id": WO}
    assert data_answer({"_id": WO}) == {"_id": WO}
    assert data_answer(None) is None


def test_each_command_answers_as_documented() -> None:
    record = envelope({"_id": WO})
    for type_ in (WORK_ORDER_CREATE, SITE_CREATE, WORK_ORDER_ATTACH_DOCUMENT):
        answer = COMMANDS[type_].answer
        assert answer is not None and answer(record)["id"] == WO
    for type_ in (WORK_ORDER_UPDATE, WORK_ORDER_SET_STATUS):
        answer = COMMANDS[type_].answer
        assert answer is not None and answer(record) == {"_id": WO}
