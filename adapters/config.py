"""Loading the configuration: one YAML file, `${ENV}` substitution, `*_file` secrets.

A wrong key or value stops start-up with a `ConfigError` that names the key (as a dotted
path such as `instances[0].polling.interval_s`) and says what is wrong.

The structs themselves are plain data in `adapters.settings` (re-exported here, so that
`from adapters.config import InstanceConfig` keeps working). The loader knows no vendor:
checks against the vendors run when the caller hands in the vendor table
(`load_config(path, vendors=VENDORS)`), see `adapters.validation`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
import yaml

from adapters.core.secret import Secret
from adapters.settings import (
    CommandsConfig,
    Config,
    ConfigError,
    InstanceConfig,
    KafkaConfig,
    LedgerConfig,
    OptionsError,
    PolledVendorOptions,
    PollingConfig,
    RateLimitConfig,
    RolesConfig,
    SaslConfig,
    ServerConfig,
    TlsConfig,
    TopicsConfig,
    VendorOptions,
    WebhooksConfig,
    describe_validation_error,
)
from adapters.validation import check_config

if TYPE_CHECKING:
    from adapters.core.vendor import VendorSpec

__all__ = [
    "CommandsConfig",
    "Config",
    "ConfigError",
    "InstanceConfig",
    "KafkaConfig",
    "LedgerConfig",
    "OptionsError",
    "PolledVendorOptions",
    "PollingConfig",
    "RateLimitConfig",
    "RolesConfig",
    "SaslConfig",
    "ServerConfig",
    "TlsConfig",
    "TopicsConfig",
    "VendorOptions",
    "WebhooksConfig",
    "check_config",
    "load_config",
    "parse_config",
]


_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _substitute_env(value: str, path: str, env: dict[str, str]) -> str:
    def repl(match: re.Match[str]) -> str:
        var, default = match.group(1), match.group(2)
        if var in env:
            return env[var]
        if default is not None:
            return default
        raise ConfigError(
            f"{path}: environment variable {var} is not set "
            f"(set it, or write ${{{var}:-default}} to give a default)"
        )

    return _ENV.sub(repl, value)


def _resolve(node: Any, path: str, env: dict[str, str], base_dir: Path) -> Any:
    """Substitute `${ENV}` and replace every `x_file: PATH` by `x: <file content>`."""
    if isinstance(node, str):
        return _substitute_env(node, path, env)
    if isinstance(node, list):
        return [_resolve(v, f"{path}[{i}]", env, base_dir) for i, v in enumerate(node)]
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            if not isinstance(key, str):
                raise ConfigError(f"{path or '<top>'}: key {key!r} must be a string")
            sub = f"{path}.{key}" if path else key
            value = _resolve(value, sub, env, base_dir)
            # TLS certificate paths are files by nature; only secrets use the *_file indirection.
            if key.endswith("_file") and key not in {"ca_file", "cert_file", "key_file"}:
                plain = key[: -len("_file")]
                if plain in node:
                    raise ConfigError(f"{sub}: give either {plain} or {key}, not both")
                file_path = Path(str(value))
                if not file_path.is_absolute():
                    file_path = base_dir / file_path
                try:
                    out[plain] = file_path.read_text(encoding="utf-8").strip()
                except OSError as exc:
                    raise ConfigError(
                        f"{sub}: cannot read secret file {file_path}: {exc.strerror}"
                    ) from None
            else:
                out[key] = value
        return out
    return node


def _decode_hook(type_: type, obj: Any) -> Any:
    if type_ is Secret and isinstance(obj, str):
        return Secret(obj)
    if type_ is Secret:
        # YAML reads an unquoted 0123 as a number (even octal): the secret would be wrong.
        raise ValueError("a secret must be a quoted string")
    raise NotImplementedError


def parse_config(
    raw: Any,
    *,
    env: dict[str, str] | None = None,
    base_dir: Path | None = None,
    vendors: Mapping[str, VendorSpec] | None = None,
) -> Config:
    """Decode an already-loaded YAML tree into a `Config`, raising `ConfigError` on problems.

    With `vendors` (the registry's `VENDORS`), every instance is also checked against its
    vendor and its `options` become the vendor's struct. Without it only what needs no
    vendor is checked: the process that runs the config must pass it.
    """
    if not isinstance(raw, dict):
        raise ConfigError("the configuration must be a mapping with at least a `kafka` section")
    resolved = _resolve(raw, "", dict(os.environ) if env is None else env, base_dir or Path.cwd())
    try:
        # Not strict: `${PORT}` substitutes a string, which must still fill an int or bool.
        config = msgspec.convert(resolved, Config, dec_hook=_decode_hook, strict=False)
    except msgspec.ValidationError as exc:
        where, what = describe_validation_error(exc)
        raise ConfigError(f"{where or '<top>'}: {what}") from None
    _check_instances(config)
    if vendors is not None:
        check_config(config, vendors)
    return config


def _check_instances(config: Config) -> None:
    """What every instance must satisfy whatever its vendor."""
    seen: set[str] = set()
    for i, inst in enumerate(config.instances):
        where = f"instances[{i}]"
        name = inst.instance_name
        if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,62}", name):
            raise ConfigError(
                f"{where}.name: {name!r} must be lower-case letters, digits, '-' or '_' "
                "(it is used in topic names and webhook paths)"
            )
        if name in seen:
            raise ConfigError(
                f"{where}.name: {name!r} is used by two instances; names must be unique"
            )
        seen.add(name)
        if not inst.base_url.startswith(("http://", "https://")):
            raise ConfigError(
                f"{where}.base_url: {inst.base_url!r} must start with http:// or https://"
            )


def load_config(
    path: str | Path,
    *,
    env: dict[str, str] | None = None,
    vendors: Mapping[str, VendorSpec] | None = None,
) -> Config:
    """Read and decode a YAML configuration file (`vendors`: as for `parse_config`)."""
    file_path = Path(path)
    try:
        text = file_path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read configuration file {file_path}: {exc.strerror}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(_yaml_error(file_path, text, exc)) from None
    return parse_config(raw, env=env, base_dir=file_path.parent, vendors=vendors)


_KEY_LINE = re.compile(r"^(\s*)(-\s+)?([A-Za-z0-9_.-]+)\s*:(\s|$)")
# Quoted fragments of PyYAML's problem text can be pieces of the value (a secret); a quoted
# single character (a tab, a bracket) says what is wrong and is kept.
_QUOTED = re.compile(r"(?<![^\s(])'([^']{3,})'(?![^\s,.;:)])")


def _yaml_error(path: Path, text: str, exc: yaml.YAMLError) -> str:
    """File, line, column and key of a YAML syntax error, never the offending content.

    PyYAML's own message quotes the line, which may hold a secret (`key: "unclosed...`).
    """
    mark = getattr(exc, "problem_mark", None)
    # Where the broken construct began (an unclosed quote) names the key better than
    # where the parser gave up (the end of the file).
    start = getattr(exc, "context_mark", None) or mark
    problem = _QUOTED.sub("'…'", str(getattr(exc, "problem", None) or "syntax error"))
    context = getattr(exc, "context", None)
    what = f"{context}: {problem}" if context else problem
    if mark is None:
        return f"{path} is not valid YAML: {what}"
    key = _yaml_key_path(text.splitlines(), start.line if start else mark.line)
    where = f"line {mark.line + 1}, column {mark.column + 1}"
    if start is not None and (start.line, start.column) != (mark.line, mark.column):
        where += f" (in what begins at line {start.line + 1}, column {start.column + 1})"
    under = f", under key `{key}`" if key else ""
    return f"{path}: invalid YAML at {where}{under}: {what}"


def _yaml_key_path(lines: list[str], line_no: int) -> str:
    """The key path (`instances[0].api_key`) of the mapping key on or above `line_no`."""
    # Walking up, each line less indented than the last one kept is a parent: a key, or a
    # list item (its dash), recorded as (key or None for an item, indent, line number).
    chain: list[tuple[str | None, int, int]] = []
    limit: int | None = None
    for number in range(min(line_no, len(lines) - 1), -1, -1):
        match = _KEY_LINE.match(lines[number])
        if not match:
            continue
        dash = len(match.group(1))
        indent = dash + len(match.group(2) or "")
        if limit is None or indent < limit:
            chain.append((match.group(3), indent, number))
            limit = indent
        if match.group(2) and dash < limit:
            chain.append((None, dash, number))
            limit = dash
        if limit == 0:
            break
    path = ""
    parent_line = -1
    for key, indent, number in reversed(chain):
        if key is None:
            # Which item of its list: the dashes at this indent since the list's own key.
            index = -1 + sum(
                1
                for line in lines[parent_line + 1 : number + 1]
                if len(line) - len(line.lstrip(" ")) == indent and line.lstrip(" ")[:1] == "-"
            )
            path += f"[{index}]"
        else:
            path = f"{path}.{key}" if path else key
        parent_line = number
    return path
