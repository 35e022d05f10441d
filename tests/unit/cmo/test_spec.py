"""The CMO vendor declaration: one authorization per instance, its checks, the catalogue."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest

from adapters.cmo import SPEC
from adapters.cmo.auth import auth, mode
from adapters.cmo.tracking_commands import TRACK, UNTRACK
from adapters.config import parse_config
from adapters.core.auth import Auth, TokenAuth
from adapters.core.command_result import CommandResult
from adapters.registry import VENDORS
from adapters.settings import ConfigError, InstanceConfig

BASE = "https://cmo.example.com"


def config(tmp_path: Path | None = None, **instance: Any) -> Any:
    base: dict[str, Any] = {
        "vendor": "cmo",
        "name": "cmo",
        "base_url": BASE,
        "webhooks": {"enabled": False},
        "polling": {"enabled": True, "resources": ["actions"]},
        "commands": {"enabled": True},
    }
    raw = {"kafka": {"bootstrap_servers": "127.0.0.1:1"}, "instances": [{**base, **instance}]}
    return parse_config(raw, env={}, vendors=VENDORS)


def instance(**fields: Any) -> InstanceConfig:
    inst = config(**fields).instances[0]
    assert isinstance(inst, InstanceConfig)
    return inst


def error(**fields: Any) -> str:
    with pytest.raises(ConfigError) as exc:
        config(**fields)
    return str(exc.value)


JWT = {"credentials": {"login": "integration", "password": "pa55"}}
TOKEN = {"credentials": {"token": "A" * 96}}


def test_registered_with_its_catalogue() -> None:
    assert VENDORS["cmo"] is SPEC
    assert sorted(SPEC.commands) == [
        f"workbridge.cmo.action.{a}"
        for a in ("create", "delete", "get", "track", "untrack", "update")
    ]
    assert SPEC.webhook is None and SPEC.tracking


def test_jwt_exchanges_login_and_password_at_the_documented_endpoint() -> None:
    inst = instance(**JWT)
    assert mode(inst) == "jwt"
    provider = auth(inst)
    assert isinstance(provider, TokenAuth)


def test_a_static_token_is_sent_as_bearer() -> None:
    provider = auth(instance(**TOKEN))
    assert type(provider) is Auth
    assert provider.static_headers == {"Authorization": f"Bearer {'A' * 96}"}


def test_mutual_tls_sends_no_header(tmp_path: Path) -> None:
    tls = {"cert_file": str(tmp_path / "c.pem"), "key_file": str(tmp_path / "k.pem")}
    inst = instance(tls=tls)
    assert mode(inst) == "mtls"
    assert auth(inst).static_headers == {}


def test_the_credentials_of_the_chosen_kind_are_required() -> None:
    assert "credentials.password" in error(credentials={"login": "x"}, options={"auth": "jwt"})
    assert "credentials.token" in error(options={"auth": "token"})
    assert "tls.cert_file" in error(options={"auth": "mtls"})
    too_long = error(credentials={"token": "x" * 201})
    assert "at most 200 characters" in too_long and "x" * 201 not in too_long


def test_auto_needs_exactly_one_kind() -> None:
    both = error(credentials={"login": "l", "password": "p", "token": "t"})
    assert "options.auth" in both and "jwt, token" in both
    assert "options.auth" in error()  # none at all
    assert (
        mode(
            instance(
                credentials={"login": "l", "password": "p", "token": "t"}, options={"auth": "token"}
            )
        )
        == "token"
    )


def test_only_actions_and_the_webhook_setting_is_left_alone() -> None:
    # CMO sends no webhooks; a config that leaves `webhooks` at its default still loads.
    assert instance(**TOKEN, webhooks={"enabled": True}).webhooks.enabled
    assert "polling.resources" in error(**TOKEN, polling={"enabled": True, "resources": ["x"]})


def test_the_company_time_zone_must_be_an_iana_name() -> None:
    assert "company_time_zone" in error(**TOKEN, options={"company_time_zone": "India Time"})
    inst = instance(**TOKEN, options={"company_time_zone": "Asia/Kolkata"})
    assert inst.options is not None


def test_track_reads_the_action_and_untrack_calls_nothing() -> None:
    call = TRACK.build(msgspec.convert({"id": "a-1"}, TRACK.model))
    assert (call.method, call.path) == ("GET", "/api/actions/a-1")
    assert UNTRACK.local
    ok = CommandResult(status="succeeded", command_type=TRACK.type, idempotency_key="k")
    data = msgspec.convert({"id": "a-1"}, UNTRACK.model)
    assert TRACK.track is not None and UNTRACK.track is not None
    tracked = TRACK.track(data, ok, "c1")
    assert tracked is not None and tracked.tracked and tracked.id == "a-1"
    dropped = UNTRACK.track(data, ok, "c2")
    assert dropped is not None and not dropped.tracked


def test_creates_updates_and_deletes_feed_the_watch() -> None:
    create = SPEC.commands["workbridge.cmo.action.create"]
    update = SPEC.commands["workbridge.cmo.action.update"]
    assert create.track is not None and update.track is not None
    made = CommandResult(
        status="succeeded", command_type=create.type, idempotency_key="k", response={"id": "n-1"}
    )
    change = create.track(msgspec.Struct(), made, "c-create")
    assert change is not None and (change.id, change.caused_by) == ("n-1", "c-create")
    lost = CommandResult(status="ambiguous", command_type=create.type, idempotency_key="k")
    assert create.track(msgspec.Struct(), lost, "c") is None  # no id to watch
    assert SPEC.commands["workbridge.cmo.action.get"].track is None


@pytest.mark.parametrize("zone", ["America", "../etc/passwd", ""])
def test_a_zone_that_is_a_folder_or_a_path_is_an_options_error(zone: str) -> None:
    assert "company_time_zone" in error(**TOKEN, options={"company_time_zone": zone})
