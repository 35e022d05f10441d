"""CloudEvents on Kafka: binary and structured mode, and reading records back."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from cloudevents.core.v1.event import CloudEvent

from adapters.core.cloudevents_codec import (
    NotACloudEvent,
    from_record,
    make_event,
    stable_id,
    to_kafka,
)

WHEN = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
DATA = b'{"id":42,"description":"a description","tags":["x"]}'


def event(**overrides: object) -> CloudEvent:
    kwargs: dict[str, object] = {
        "id": "ev-1",
        "source": "/moco/acme",
        "type": "workbridge.moco.activity.created",
        "subject": "activity/42",
        "partitionkey": "acme/activity/42",
        "data": DATA,
        "time": WHEN,
        "dataschema": "https://workbridge.dev/schemas/events/workbridge.moco.activity.created.json",
        "extensions": {"vendoruserid": "933613686"},
    }
    kwargs.update(overrides)
    return make_event(**kwargs)  # type: ignore[arg-type]


def test_binary_mode_headers_key_and_value() -> None:
    key, value, headers = to_kafka(event())
    assert key == b"acme/activity/42"
    assert value == DATA  # the JSON bytes untouched, not re-encoded
    assert dict(headers) == {
        "ce_specversion": b"1.0",
        "ce_id": b"ev-1",
        "ce_source": b"/moco/acme",
        "ce_type": b"workbridge.moco.activity.created",
        "ce_subject": b"activity/42",
        "ce_time": b"2024-01-02T03:04:05Z",
        "ce_partitionkey": b"acme/activity/42",
        "ce_dataschema": (
            b"https://workbridge.dev/schemas/events/workbridge.moco.activity.created.json"
        ),
        "ce_vendoruserid": b"933613686",
        "content-type": b"application/json",
    }
    assert len(headers) == len(dict(headers))  # no header twice
    assert all(isinstance(v, bytes) for _, v in headers)


def test_key_is_the_partitionkey() -> None:
    key, _, headers = to_kafka(event(partitionkey="other/x/1"))
    assert key == b"other/x/1"
    assert dict(headers)["ce_partitionkey"] == b"other/x/1"


def test_no_subject_no_header() -> None:
    _, _, headers = to_kafka(event(subject=None, dataschema=None, extensions=None))
    names = {n for n, _ in headers}
    assert "ce_subject" not in names
    assert "ce_dataschema" not in names
    assert "ce_vendoruserid" not in names


def test_time_defaults_to_now() -> None:
    before = datetime.now(UTC)
    ev = event(time=None)
    assert before <= ev.get_time() <= datetime.now(UTC)


def test_structured_mode_has_data_as_an_object() -> None:
    key, value, headers = to_kafka(event(), "structured")
    assert key == b"acme/activity/42"
    assert headers == [("content-type", b"application/cloudevents+json")]
    doc = json.loads(value)
    assert "data_base64" not in doc
    assert doc["data"] == {"id": 42, "description": "a description", "tags": ["x"]}
    assert doc["id"] == "ev-1"
    assert doc["type"] == "workbridge.moco.activity.created"
    assert doc["source"] == "/moco/acme"
    assert doc["subject"] == "activity/42"
    assert doc["partitionkey"] == "acme/activity/42"
    assert doc["time"] == "2024-01-02T03:04:05Z"
    assert doc["datacontenttype"] == "application/json"
    assert doc["vendoruserid"] == "933613686"


def test_structured_mode_with_a_list_payload_is_json() -> None:
    _, value, _ = to_kafka(event(data=b'[1,{"a":null}]'), "structured")
    assert json.loads(value)["data"] == [1, {"a": None}]


@pytest.mark.parametrize("mode", ["binary", "structured"])
def test_round_trip(mode: str) -> None:
    key, value, headers = to_kafka(event(), mode)  # type: ignore[arg-type]
    back = from_record(key, value, headers)
    attrs = back.get_attributes()
    assert back.get_id() == "ev-1"
    assert back.get_type() == "workbridge.moco.activity.created"
    assert back.get_source() == "/moco/acme"
    assert back.get_subject() == "activity/42"
    assert back.get_time() == WHEN
    assert attrs["partitionkey"] == "acme/activity/42"
    assert attrs["vendoruserid"] == "933613686"
    assert back.get_data() == json.loads(DATA)


@pytest.mark.parametrize("mode", ["binary", "structured"])
def test_foreign_binary_header_is_ignored(mode: str) -> None:
    key, value, headers = to_kafka(event(), mode)  # type: ignore[arg-type]
    headers = [("traceparent-bin", b"\xff\xfe"), *headers, ("x-schema-id", b"\x00\x01\x80")]
    back = from_record(key, value, headers)
    assert back.get_id() == "ev-1"
    assert "traceparent-bin" not in back.get_attributes()


def test_header_names_are_case_insensitive() -> None:
    key, value, headers = to_kafka(event())
    upper = [(n.upper() if n == "content-type" else n, v) for n, v in headers]
    assert from_record(key, value, upper).get_id() == "ev-1"


@pytest.mark.parametrize(
    ("key", "value", "headers"),
    [
        (None, b"garbage", []),
        (None, b"", []),
        (None, None, []),
        (None, b"{}", [("content-type", b"application/cloudevents+json")]),
        (None, b"not json", [("content-type", b"application/cloudevents+json")]),
        (None, b"{}", [("ce_id", b"1"), ("ce_specversion", b"1.0")]),
    ],
)
def test_not_a_cloud_event(key: bytes | None, value: bytes | None, headers: list) -> None:
    with pytest.raises(NotACloudEvent):
        from_record(key, value, headers)


def test_stable_id_is_deterministic() -> None:
    a = stable_id("acme", "webhook", "Activity", "create", b"\x00body")
    assert a == stable_id("acme", "webhook", "Activity", "create", b"\x00body")
    assert len(a) == 32
    assert int(a, 16) >= 0  # hex
    assert stable_id("x") == stable_id(b"x")


def test_stable_id_separates_parts() -> None:
    assert stable_id("ab", "c") != stable_id("a", "bc")
    assert stable_id("a", "") != stable_id("a")
    assert stable_id("acme", "1") != stable_id("acme", "2")
    assert stable_id("acme", "1") != stable_id("other", "1")
