"""Whether a command can be sent, and the vendor call it becomes (no I/O)."""

from __future__ import annotations

import string
from typing import Any

import msgspec

from adapters.core.commands.model import Checked, Command, Rejected
from adapters.core.instance import Instance
from adapters.core.ledger import payload_hash
from adapters.core.rest_command import PathFieldInvalid, path_segment
from adapters.core.vendor import CommandSpec, PreparedCall


class Invalid(Exception):
    """The command cannot be sent: it is answered `rejected` and copied to the DLQ."""


def validate(inst: Instance, command: Command) -> tuple[CommandSpec, msgspec.Struct, PreparedCall]:
    """The command's spec, decoded data and call; raises `Invalid` with the reason."""
    if command.event is None:
        raise Invalid(
            command.problem
            or "not a CloudEvent: send a CloudEvents 1.0 record (binary or structured)"
        )
    spec = inst.commands.get(command.command_type)
    if spec is None:
        known = ", ".join(sorted(inst.commands))
        raise Invalid(f"unknown command type {command.command_type!r}; known: {known}")
    paths = inst.options.command_paths
    if spec.path_not_documented and command.command_type not in paths:
        raise Invalid(
            f"{command.command_type}: the vendor document gives no path for this action; "
            f"set options.command_paths[{command.command_type!r}] to enable it"
        )
    raw = command.event.get_data()
    if not isinstance(raw, dict):
        raise Invalid("data must be a JSON object")
    try:
        data = msgspec.convert(raw, spec.model)
    except msgspec.ValidationError as exc:
        raise Invalid(f"data does not match {command.command_type}: {exc}") from None
    try:
        call = spec.build(data)
    except PathFieldInvalid as exc:
        raise Invalid(f"{command.command_type}: {exc}") from None
    if command.command_type in paths:
        call = msgspec.structs.replace(call, path=fill_path(paths[command.command_type], raw))
    return spec, data, call


def check(inst: Instance, command: Command) -> Checked | Rejected:
    """`validate` as a value, with the digest of what a valid command asks for."""
    try:
        spec, data, call = validate(inst, command)
    except Invalid as exc:
        return Rejected(str(exc))
    digest = payload_hash(command.command_type, msgspec.to_builtins(data))
    return Checked(spec=spec, data=data, call=call, digest=digest)


def fill_path(template: str, data: dict[str, Any]) -> str:
    """A configured path with `{field}`s from the command data, URL-quoted."""
    values = {}
    for _, name, _, _ in string.Formatter().parse(template):
        if not name:
            continue
        if name not in data or isinstance(data[name], (dict, list)):
            raise Invalid(f"the configured path {template!r} needs a scalar `{name}` in data")
        try:
            values[name] = path_segment(data[name], name)
        except PathFieldInvalid as exc:
            raise Invalid(f"the configured path {template!r}: {exc}") from None
    return template.format(**values)
