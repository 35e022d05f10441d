"""Typed vendor options: checked with the rest of the config, errors that name the key.

Also the split itself: the loader knows no vendor, `check_config` is handed the registry.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from adapters import config as loader
from adapters.config import ConfigError, InstanceConfig, OptionsError, check_config
from adapters.core.instance import build_instance
from adapters.mobilitywork import user_agent
from adapters.mobilitywork import webhooks as mw_webhooks
from adapters.mobilitywork.undocumented import DEFAULT_SIGNATURE_TOLERANCE_S, MobilityWorkOptions
from adapters.moco.undocumented import RESOURCE_PATHS, MocoOptions
from adapters.registry import VENDORS
from adapters.settings import PolledVendorOptions, VendorOptions

MOCO = {
    "vendor": "moco",
    "base_url": "https://acme.mocoapp.com/api/v1",
    "api_key": "moco-key",
    "webhook_secret": "moco-hook",
}
MW = {"vendor": "mobilitywork", "base_url": "https://api.mobility-work.com", "api_key": "mw"}


def raw(*instances: dict[str, Any]) -> dict[str, Any]:
    return {"kafka": {"bootstrap_servers": "k:9092"}, "instances": list(instances)}


def error(*instances: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as exc:
        loader.parse_config(raw(*instances), env={}, vendors=VENDORS)
    return str(exc.value)


# --- errors name the key ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (
            {"signature_tolerance_s": "soon"},
            "instances[1].options.signature_tolerance_s: Expected float, got str",
        ),
        (
            {"signature_tolerance_s": 0},
            "instances[1].options.signature_tolerance_s: Expected float > 0.0",
        ),
        (
            {"network_name": 7},
            "instances[1].options.network_name: Expected str, got int",
        ),
        (
            {"networkname": "Factory Inc."},
            "instances[1].options.networkname: unknown key (check its spelling against README.md)",
        ),
        (
            {"command_paths": {"workbridge.mobilitywork.task.complete": 3}},
            "instances[1].options.command_paths[...]: Expected str, got int",
        ),
    ],
)
def test_a_wrong_option_names_the_instance_and_the_key(
    options: dict[str, Any], expected: str
) -> None:
    assert error(MOCO, {**MW, "options": options}) == expected


def test_options_must_be_a_mapping() -> None:
    assert error({**MOCO, "options": ["resource_paths"]}) == (
        "instances[0].options: Expected object, got array"
    )


def test_a_quoted_number_is_not_a_number_in_options() -> None:
    # Options are decoded strictly, as the vendors' own checks always did.
    assert error({**MW, "options": {"signature_tolerance_s": "300"}}) == (
        "instances[0].options.signature_tolerance_s: Expected float, got str"
    )


def test_an_option_of_another_vendor_is_unknown() -> None:
    msg = error({**MOCO, "options": {"network_name": "Factory Inc."}})
    assert msg.startswith("instances[0].options.network_name: unknown key")
    # Mobility Work is never polled: it takes no resource paths.
    msg = error({**MW, "options": {"resource_paths": {"tasks": "/tasks"}}})
    assert msg.startswith("instances[0].options.resource_paths: unknown key")


def test_a_path_for_an_unknown_command_is_refused() -> None:
    options = {"command_paths": {"workbridge.mobilitywork.task.finish": "/tasks/{id}/finish"}}
    msg = error({**MW, "options": options})
    assert msg.startswith(
        "instances[0].options.command_paths: unknown command type "
        "'workbridge.mobilitywork.task.finish' (known: workbridge.mobilitywork.equipment.create"
    )


def test_a_path_for_an_unknown_resource_is_refused() -> None:
    msg = error({**MOCO, "options": {"resource_paths": {"widgets": "/widgets"}}})
    assert msg.startswith("instances[0].options.resource_paths: unknown resource 'widgets'")
    assert "projects" in msg


# --- typed options ----------------------------------------------------------------------------


def test_checked_options_are_the_vendors_struct() -> None:
    options = {
        "network_name": "Factory Inc.",
        "signature_tolerance_s": 120,
        "command_paths": {"workbridge.mobilitywork.task.complete": "/tasks/{task}/complete"},
    }
    config = loader.parse_config(raw(MOCO, {**MW, "options": options}), env={}, vendors=VENDORS)
    moco, mw = config.instances
    assert moco.options == MocoOptions(resource_paths=dict(RESOURCE_PATHS))
    assert isinstance(mw.options, MobilityWorkOptions)
    assert mw.options.signature_tolerance_s == 120.0
    assert mw.options.command_paths == options["command_paths"]
    assert mw_webhooks.tolerance_s(mw) == 120.0
    assert user_agent(mw).endswith(" Factory Inc.")


def test_defaults_are_the_guesses_in_undocumented() -> None:
    assert MocoOptions().resource_paths == RESOURCE_PATHS
    assert MobilityWorkOptions().signature_tolerance_s == DEFAULT_SIGNATURE_TOLERANCE_S
    assert MobilityWorkOptions().command_paths == {}


def test_a_resource_path_overrides_only_its_own_resource() -> None:
    options = MocoOptions.decode({"resource_paths": {"deals": "/crm/deals"}})
    assert options.resource_paths == {**RESOURCE_PATHS, "deals": "/crm/deals"}


def test_every_vendor_declares_options_with_defaults() -> None:
    for spec in VENDORS.values():
        assert issubclass(spec.options, VendorOptions), spec.id
        spec.options()  # an instance may leave `options` out
        # A polled vendor's listings can be moved per instance.
        assert issubclass(spec.options, PolledVendorOptions) == (spec.poll is not None), spec.id


def test_poll_params_name_only_the_vendors_resources() -> None:
    text = error(MW, {**MOCO, "options": {"poll_params": {"widgets": {"sort_by": None}}}})
    assert "instances[1].options.poll_params: unknown resource 'widgets'" in text


def test_the_core_reads_typed_options_from_the_instance() -> None:
    options = {"command_paths": {"workbridge.moco.activity.create": "/a"}}
    config = loader.parse_config(raw({**MOCO, "options": options}), env={}, vendors=VENDORS)
    built = build_instance(config.instances[0], VENDORS["moco"], "workbridge")
    assert isinstance(built.options, MocoOptions)
    assert built.options.command_paths == {"workbridge.moco.activity.create": "/a"}
    assert built.options.resource_paths["projects"] == "/projects"


# --- the loader knows no vendor ---------------------------------------------------------------


def test_without_vendors_only_vendor_free_checks_run() -> None:
    config = loader.parse_config(
        raw({**MOCO, "vendor": "jira", "options": {"anything": 1}}), env={}
    )
    assert config.instances[0].options == {"anything": 1}
    with pytest.raises(ConfigError, match=r"^instances\[0\]\.vendor: unknown vendor 'jira'"):
        check_config(config, VENDORS)
    # Vendor-free checks still run without the registry.
    with pytest.raises(ConfigError, match=r"^instances\[0\]\.name: "):
        loader.parse_config(raw({**MOCO, "name": "Acme"}), env={})


def test_check_config_takes_any_vendor_table() -> None:
    config = loader.parse_config(raw(MOCO), env={})
    with pytest.raises(ConfigError, match=r"unknown vendor 'moco' \(known: mobilitywork\)"):
        check_config(config, {"mobilitywork": VENDORS["mobilitywork"]})


def test_checking_twice_changes_nothing() -> None:
    config = loader.parse_config(
        raw({**MW, "options": {"network_name": "N"}}), env={}, vendors=VENDORS
    )
    options = config.instances[0].options
    check_config(config, VENDORS)
    assert config.instances[0].options is options


def test_load_config_checks_with_the_vendors_it_is_given(tmp_path: Any) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "kafka: {bootstrap_servers: k}\n"
        "instances:\n"
        "  - {vendor: mobilitywork, base_url: https://x.test, options: {colour: red}}\n"
    )
    assert loader.load_config(path, env={}).instances[0].options == {"colour": "red"}
    with pytest.raises(ConfigError, match=r"^instances\[0\]\.options\.colour: unknown key"):
        loader.load_config(path, env={}, vendors=VENDORS)


def test_unchecked_options_are_converted_when_read() -> None:
    # An InstanceConfig built without the loader (tests, tools) still reads typed options.
    inst = msgspec.convert(
        {**MW, "api_key": None, "options": {"network_name": "N"}}, InstanceConfig
    )
    assert MobilityWorkOptions.of(inst).network_name == "N"
    bad = msgspec.convert({**MW, "api_key": None, "options": {"x": 1}}, InstanceConfig)
    with pytest.raises(OptionsError) as exc:
        MobilityWorkOptions.of(bad)
    assert (exc.value.key, exc.value.problem) == (
        "options.x",
        "unknown key (check its spelling against README.md)",
    )


def test_cast_keeps_a_vendor_struct_converts_the_base_and_refuses_a_foreign_one() -> None:
    mine = MocoOptions(resource_paths={"projects": "/p"})
    assert MocoOptions.cast(mine) is mine
    assert MocoOptions.cast(VendorOptions()) == MocoOptions()
    assert MocoOptions.cast({"resource_paths": {"projects": "/p"}}) == mine
    # Options of another vendor are an error that names the key, never read as defaults.
    with pytest.raises(OptionsError, match=r"options\.\w+: unknown key"):
        MocoOptions.cast(MobilityWorkOptions(signature_tolerance_s=10))
