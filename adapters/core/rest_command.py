"""Declaring a REST command in one line: path fields, header fields, the rest is the body."""

from __future__ import annotations

import string
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import msgspec

from adapters.core.vendor import CommandKind, CommandSpec, Lookup, Prepare, PreparedCall


class PathFieldInvalid(ValueError):
    """A path field's value cannot be one path segment: the command is invalid."""


def path_segment(value: Any, name: str = "field") -> str:
    """A command field's value as exactly one URL path segment.

    Everything but unreserved characters is percent-encoded (`/`, `?`, `#` and `%` too), so
    `../x` stays inside its segment. `.` and `..` are refused: no encoding keeps them from
    being resolved (the HTTP client decodes `%2E` and drops the segment), and an empty value
    would address the collection instead of one of its records.
    """
    text = str(value)
    if text in ("", ".", ".."):
        raise PathFieldInvalid(f"`{name}` is {text!r}, which cannot name a record in a path")
    return quote(text, safe="")


def rest_command(
    type: str,
    model: type[msgspec.Struct],
    method: str,
    path: str,
    *,
    kind: CommandKind,
    header_fields: Mapping[str, str] | None = None,
    wrap: str | None = None,
    prepare: Prepare | None = None,
    lookup: Lookup | None = None,
    path_not_documented: bool = False,
    path_guessed: bool = False,
    repeat_safe: bool | None = None,
    description: str = "",
) -> CommandSpec:
    """A command whose `{field}`s in `path` and `header_fields` are taken out of the body.

    `wrap` nests the body under one key (`{"work_order": {...}}`) for vendors that want it.
    Fields left at their default (None or UNSET) are not sent, so an update sends only what
    it sets; a field that defaults to UNSET sends an explicit None as JSON null.
    Path field values are URL-quoted into one segment each (see `path_segment`).
    Updates and deletes are taken as safe to repeat unless `repeat_safe` says otherwise.
    """
    path_fields = {name for _, name, _, _ in string.Formatter().parse(path) if name}
    headers_map = dict(header_fields or {})
    # Fields that default to UNSET tell "leave out" (UNSET, never encoded) from an explicit
    # JSON null (None, sent): CMO clears a risk object with null. Fields defaulting to None
    # keep meaning "leave out".
    nullable = {f.encode_name for f in msgspec.structs.fields(model) if f.default is msgspec.UNSET}

    def build(data: msgspec.Struct) -> PreparedCall:
        built = msgspec.to_builtins(data)
        assert isinstance(built, dict)
        body = {k: v for k, v in built.items() if v is not None or k in nullable}
        missing = sorted(path_fields - body.keys())
        if missing:
            raise PathFieldInvalid(f"the path {path!r} needs `{missing[0]}`")
        values = {k: path_segment(body.pop(k), k) for k in path_fields}
        headers = {h: str(body.pop(f)) for f, h in headers_map.items() if body.get(f) is not None}
        json = None
        if method not in ("GET", "DELETE"):
            json = {wrap: body} if wrap else body
        return PreparedCall(method=method, path=path.format(**values), json=json, headers=headers)

    return CommandSpec(
        type=type,
        model=model,
        method=method,
        path=path,
        kind=kind,
        build=build,
        prepare=prepare,
        lookup=lookup,
        path_not_documented=path_not_documented,
        path_guessed=path_guessed,
        repeat_safe=kind in ("update", "delete") if repeat_safe is None else repeat_safe,
        description=description,
    )
