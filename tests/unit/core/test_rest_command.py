"""rest_command: path and header fields leave the body; None fields are not sent."""

from __future__ import annotations

import msgspec
import pytest

from adapters.core.rest_command import PathFieldInvalid, path_segment, rest_command
from adapters.core.vendor import PreparedCall


class Thing(msgspec.Struct, kw_only=True, omit_defaults=True):
    id: int
    user: int | None = None
    title: str | None = None
    note: str | None = None
    done: bool | None = None


class Nested(msgspec.Struct, kw_only=True, omit_defaults=True):
    site: str
    id: int
    qty: int


def test_path_and_header_fields_removed_from_body() -> None:
    spec = rest_command(
        "x.thing.update", Thing, "PUT", "/things/{id}", kind="update", header_fields={"user": "X-U"}
    )
    call = spec.build(Thing(id=5, user=7, title="t", done=False))
    assert call == PreparedCall(
        method="PUT", path="/things/5", json={"title": "t", "done": False}, headers={"X-U": "7"}
    )


def test_none_fields_are_omitted_and_absent_header_is_not_sent() -> None:
    spec = rest_command(
        "x.thing.update",
        Thing,
        "PATCH",
        "/things/{id}",
        kind="update",
        header_fields={"user": "X-U"},
    )
    call = spec.build(Thing(id=5))
    assert call.json == {}
    assert call.headers == {}


def test_wrap() -> None:
    spec = rest_command("x.thing.create", Thing, "POST", "/things", kind="create", wrap="thing")
    call = spec.build(Thing(id=1, title="a"))
    assert call.path == "/things"
    assert call.json == {"thing": {"id": 1, "title": "a"}}


def test_several_path_fields() -> None:
    spec = rest_command("x.part.restock", Nested, "POST", "/sites/{site}/parts/{id}", kind="action")
    call = spec.build(Nested(site="s1", id=9, qty=3))
    assert call.path == "/sites/s1/parts/9"
    assert call.json == {"qty": 3}


def test_delete_and_get_have_no_body() -> None:
    for method in ("DELETE", "GET"):
        spec = rest_command(
            "x.thing.delete", Thing, method, "/things/{id}", kind="delete", wrap="thing"
        )
        call = spec.build(Thing(id=3, title="ignored"))
        assert call.method == method
        assert call.path == "/things/3"
        assert call.json is None


def test_spec_fields_carried() -> None:
    spec = rest_command(
        "x.thing.create",
        Thing,
        "POST",
        "/things",
        kind="create",
        path_not_documented=True,
        description="Make a thing.",
    )
    assert spec.type == "x.thing.create"
    assert spec.model is Thing
    assert spec.method == "POST"
    assert spec.path == "/things"
    assert spec.kind == "create"
    assert spec.path_not_documented is True
    assert spec.description == "Make a thing."
    assert spec.prepare is None
    assert spec.lookup is None


class Ref(msgspec.Struct, kw_only=True):
    id: str
    note: str | None = None


@pytest.mark.parametrize(
    ("value", "segment"),
    [
        ("../x", "..%2Fx"),
        ("a/b", "a%2Fb"),
        ("x?y=1", "x%3Fy%3D1"),
        ("%2e", "%252e"),
        ("a b#c", "a%20b%23c"),
        ("ü", "%C3%BC"),
    ],
)
def test_path_field_values_are_quoted_into_one_segment(value: str, segment: str) -> None:
    spec = rest_command("x.thing.update", Ref, "PUT", "/things/{id}/notes", kind="update")
    assert spec.build(Ref(id=value, note="n")).path == f"/things/{segment}/notes"


@pytest.mark.parametrize("value", ["", ".", ".."])
def test_a_path_field_that_would_name_another_resource_is_refused(value: str) -> None:
    # Quoting leaves dots as they are, and the HTTP client resolves `.`/`..` segments
    # (even written as %2E): /things/.. would be the collection, or its parent.
    spec = rest_command("x.thing.delete", Ref, "DELETE", "/things/{id}", kind="delete")
    with pytest.raises(PathFieldInvalid, match="id"):
        spec.build(Ref(id=value))


def test_path_segment_quotes_everything_but_unreserved() -> None:
    assert path_segment(42) == "42"
    assert path_segment("a-b_c.d~e") == "a-b_c.d~e"
    assert path_segment("a/b?c#d%e") == "a%2Fb%3Fc%23d%25e"
