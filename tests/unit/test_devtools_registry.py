"""`workbridge dev` builds its instances from the registry's vendor facts (no broker needed)."""

from __future__ import annotations

from typing import Any

from adapters.config import parse_config
from adapters.devkit import DevVendor
from adapters.devtools import dev_instance
from adapters.registry import VENDORS


class _Stopped:
    async def stop(self) -> None:
        return None


def _dev(**over: Any) -> DevVendor:
    fields: dict[str, Any] = {
        "fake": _Stopped(),
        "base_url": "http://127.0.0.1:1",
        "settings": {},
        "changing_resources": frozenset(),
        "subscribe": lambda _url: None,
        "hints": "",
        **over,
    }
    return DevVendor(**fields)


def test_every_registered_vendor_has_a_dev_fake() -> None:
    # A vendor without one is left out of `workbridge dev` (with a note), not an error; this
    # says when that happens.
    assert {v for v, spec in VENDORS.items() if spec.dev is not None} == set(VENDORS)


def test_the_parts_a_vendor_has_are_switched_on() -> None:
    for spec in VENDORS.values():
        changing = frozenset(spec.poll.resources) if spec.poll else frozenset({"x"})
        inst = dev_instance(spec, _dev(changing_resources=changing))
        assert inst["vendor"] == inst["name"] == spec.id
        assert inst["webhooks"]["enabled"] == (spec.webhook is not None)
        assert inst["commands"]["enabled"] == bool(spec.commands)
        assert inst["polling"]["enabled"] == (spec.poll is not None)
        if spec.poll is not None:
            assert inst["polling"]["resources"] == sorted(spec.poll.resources)


def test_only_resources_the_fake_changes_are_polled() -> None:
    spec = VENDORS["moco"]
    inst = dev_instance(spec, _dev(changing_resources=frozenset({"projects", "widgets"})))
    assert inst["polling"]["resources"] == ["projects"]


def test_vendor_settings_are_merged_into_the_parts() -> None:
    spec = VENDORS["mobilitywork"]
    dev = _dev(settings={"commands": {"backoff_base_s": 1}, "options": {"network_name": "N"}})
    inst = dev_instance(spec, dev)
    assert inst["commands"] == {"enabled": True, "deadline_s": 60, "backoff_base_s": 1}
    assert inst["options"] == {"network_name": "N"}


async def test_the_dev_config_of_every_fake_passes_the_vendor_checks() -> None:
    devs = {v: await spec.dev() for v, spec in VENDORS.items() if spec.dev is not None}
    try:
        raw = {
            "kafka": {"bootstrap_servers": "127.0.0.1:1"},
            "instances": [dev_instance(VENDORS[v], dev) for v, dev in devs.items()],
        }
        config = parse_config(raw, env={}, vendors=VENDORS)
        polled = {i.vendor: i.polling.resources for i in config.instances if i.polling.enabled}
        assert polled["moco"] == ["activities", "companies", "projects"]
        # Click Maint has no webhooks: every resource it lists is polled.
        assert polled["clickmaint"] == sorted(VENDORS["clickmaint"].poll.resources)  # type: ignore[union-attr]
    finally:
        for dev in devs.values():
            await dev.fake.stop()
