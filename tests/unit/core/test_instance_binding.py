"""A vendor's commands bound to an instance's settings when the instance is built."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime
from zoneinfo import ZoneInfo

import msgspec
import pytest

from adapters.config import InstanceConfig, parse_config
from adapters.core.instance import build_instance
from adapters.core.rest_command import rest_command
from adapters.core.vendor import CommandSpec, PreparedCall
from adapters.moco.undocumented import MocoOptions
from adapters.registry import VENDORS


class ZoneOptions(MocoOptions, kw_only=True, forbid_unknown_fields=True):
    """Options with the company's time zone, as CMO's will declare it."""

    time_zone: str = "UTC"


class Due(msgspec.Struct, kw_only=True):
    id: int
    due_date: str  # a calendar day, as a user gives it


BASE = rest_command("workbridge.test.action.update", Due, "PUT", "/api/actions/{id}", kind="update")


def bind(inst: InstanceConfig, commands: Mapping[str, CommandSpec]) -> Mapping[str, CommandSpec]:
    # CMO's rule: the last millisecond of the due day in the company's time zone, in UTC.
    zone = ZoneInfo(ZoneOptions.of(inst).time_zone)
    plain = commands["workbridge.test.action.update"]

    def build(data: msgspec.Struct) -> PreparedCall:
        assert isinstance(data, Due)
        call = plain.build(data)
        day = datetime.fromisoformat(data.due_date).replace(
            hour=23, minute=59, second=59, microsecond=999000, tzinfo=zone
        )
        body = {**(call.json or {}), "dueDate": day.astimezone(ZoneInfo("UTC")).isoformat()}
        return PreparedCall(method=call.method, path=call.path, json=body, headers=call.headers)

    return {**commands, plain.type: dataclasses.replace(plain, build=build)}


def instance(time_zone: str) -> InstanceConfig:
    cfg = parse_config(
        {
            "kafka": {"bootstrap_servers": "k:9092"},
            "instances": [
                {
                    "vendor": "moco",
                    "base_url": "https://x.mocoapp.com/api/v1",
                    "api_key": "k",
                    "webhook_secret": "1d608b9d72219b90ff2393a1d3ee0ac0",
                    "options": {"time_zone": time_zone} if time_zone else {},
                }
            ],
        },
        env={},
    )
    return cfg.instances[0]


def test_each_instance_builds_with_its_own_settings() -> None:
    spec = dataclasses.replace(
        VENDORS["moco"], options=ZoneOptions, commands={BASE.type: BASE}, bind_commands=bind
    )
    berlin = build_instance(instance("Europe/Berlin"), spec, "wb")
    chicago = build_instance(instance("America/Chicago"), spec, "wb")
    data = Due(id=7, due_date="2026-03-02")
    assert berlin.commands[BASE.type].build(data).json == {
        "due_date": "2026-03-02",
        "dueDate": "2026-03-02T22:59:59.999000+00:00",
    }
    assert chicago.commands[BASE.type].build(data).json["dueDate"] == (  # type: ignore[index]
        "2026-03-03T05:59:59.999000+00:00"
    )
    # The declared catalogue stays as it is (schemas and validation read it).
    assert spec.commands[BASE.type] is BASE


def test_a_binding_must_keep_the_catalogue() -> None:
    spec = dataclasses.replace(
        VENDORS["moco"],
        options=ZoneOptions,
        commands={BASE.type: BASE},
        bind_commands=lambda _i, _c: {},
    )
    with pytest.raises(ValueError, match="must keep"):
        build_instance(instance("UTC"), spec, "wb")


def test_without_a_binding_the_instance_has_the_declared_catalogue() -> None:
    inst = build_instance(instance(""), VENDORS["moco"], "wb")
    assert inst.commands == VENDORS["moco"].commands
