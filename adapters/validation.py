"""Checks of a decoded configuration against the vendors it names, given the vendor table.

The loader (`adapters.config`) knows no vendor. Whoever builds the process hands the table in
(`load_config(path, vendors=VENDORS)`, or `check_config(config, VENDORS)`), so that the
settings, the loader, the core and the vendor packages never import each other in a circle:
the registry imports the vendors, and nothing that a vendor imports imports the registry.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

from adapters.settings import (
    Config,
    ConfigError,
    InstanceConfig,
    OptionsError,
    PolledVendorOptions,
    VendorOptions,
)

if TYPE_CHECKING:
    from adapters.core.vendor import VendorSpec

__all__ = ["check_config", "check_options"]


def check_config(config: Config, vendors: Mapping[str, VendorSpec]) -> None:
    """Check every instance against its vendor and type its `options`; raise `ConfigError`.

    The message names the key (`instances[1].options.signature_tolerance_s: ...`). Checking
    a configuration that was checked before changes nothing.
    """
    for i, inst in enumerate(config.instances):
        where = f"instances[{i}]"
        spec = vendors.get(inst.vendor)
        if spec is None:
            known = ", ".join(sorted(vendors))
            raise ConfigError(f"{where}.vendor: unknown vendor {inst.vendor!r} (known: {known})")
        try:
            inst.options = check_options(inst, spec)
        except OptionsError as exc:
            raise ConfigError(f"{where}.{exc}") from None
        _check_documented_rate_limit(inst, spec, where)
        problem = spec.check_instance(inst)
        if problem is not None:
            key, text = problem
            raise ConfigError(f"{where}.{key}: {text}")


def check_options(inst: InstanceConfig, spec: VendorSpec) -> VendorOptions:
    """The instance's options as its vendor's struct; raises `OptionsError` naming the key.

    Beyond the types, the names in `command_paths` and `resource_paths` must be the vendor's:
    a misspelt one would otherwise leave its action off, or its path unused, in silence.
    """
    options = spec.options.of(inst)
    _known_names("options.command_paths", "command type", options.command_paths, spec.commands)
    if isinstance(options, PolledVendorOptions):
        resources = spec.poll.resources if spec.poll is not None else {}
        _known_names("options.resource_paths", "resource", options.resource_paths, resources)
        _known_names("options.poll_params", "resource", options.poll_params, resources)
    return options


def _known_names(
    key: str, what: str, given: Mapping[str, object], known: Mapping[str, object]
) -> None:
    unknown = sorted(set(given) - set(known))
    if unknown:
        listed = ", ".join(sorted(known)) or "none"
        raise OptionsError(key, f"unknown {what} {unknown[0]!r} (known: {listed})")


def _check_documented_rate_limit(inst: InstanceConfig, spec: VendorSpec, where: str) -> None:
    limit = inst.rate_limit
    doc = spec.rate_limit
    if limit is None or doc is None or not doc.documented or limit.above_documented:
        return
    # At most ceil(P / W) of our windows fit in one of the vendor's.
    if limit.requests * math.ceil(doc.per_seconds / limit.per_seconds) > doc.requests:
        raise ConfigError(
            f"{where}.rate_limit: {limit.requests} per {limit.per_seconds:g}s exceeds "
            f"{inst.vendor}'s documented {doc.requests} per {doc.per_seconds:g}s (set "
            "above_documented: true only for a test server)"
        )
