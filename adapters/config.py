"""Configuration: one YAML file, `${ENV}` substitution, `*_file` secrets, msgspec structs.

A wrong key or value stops start-up with a `ConfigError` that names the key (as a dotted
path such as `instances[0].polling.interval_s`) and says what is wrong.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import yaml

from adapters.core.secret import Secret

__all__ = [
    "CommandsConfig",
    "Config",
    "ConfigError",
    "InstanceConfig",
    "KafkaConfig",
    "PollingConfig",
    "RateLimitConfig",
    "load_config",
    "parse_config",
]


Positive = Annotated[int, msgspec.Meta(ge=1)]
NonNegative = Annotated[int, msgspec.Meta(ge=0)]
PositiveFloat = Annotated[float, msgspec.Meta(gt=0)]


class ConfigError(Exception):
    """The configuration cannot be used; the message names the key and the problem."""


class _Base(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class TlsConfig(_Base):
    """TLS towards the brokers. Files are PEM; mount them from a Secret."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    key_password: Secret | None = None
    check_hostname: bool = True


class SaslConfig(_Base, kw_only=True):
    """SASL authentication towards the brokers."""

    mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    username: str
    password: Secret


class TopicsConfig(_Base):
    """How topics that Workbridge creates are laid out."""

    create: bool = True
    partitions: Positive = 3
    # Production clusters: 3 brokers, so acks=all means two copies at least (min ISR 2).
    replication_factor: Positive = 3
    # Default: replication_factor - 1 (1 on a single broker).
    min_insync_replicas: Positive | None = None
    # The idempotency window: a command repeated later than this is no longer recognised.
    ledger_retention_days: Annotated[float, msgspec.Meta(gt=0)] = 14.0


class KafkaConfig(_Base):
    """Connection to the Kafka cluster."""

    bootstrap_servers: str
    client_id: str = "workbridge"
    topic_prefix: str = "workbridge"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    tls: TlsConfig | None = None
    sasl: SaslConfig | None = None
    topics: TopicsConfig = msgspec.field(default_factory=TopicsConfig)
    # The webhook answer waits for acks=all at most this long (kept below every vendor deadline).
    send_timeout_s: PositiveFloat = 5.0
    linger_ms: NonNegative = 5
    request_timeout_ms: Positive = 30000

    def __post_init__(self) -> None:
        if self.security_protocol.startswith("SASL") and self.sasl is None:
            raise ValueError(f"security_protocol {self.security_protocol} needs a `sasl` section")


class ServerConfig(_Base):
    """The HTTP server for webhooks, health and metrics."""

    host: str = "0.0.0.0"
    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 8080
    max_body_bytes: Positive = 1_048_576
    # Sends awaiting a Kafka ack at once; past it webhooks get 503 + Retry-After (load shedding).
    max_in_flight: Positive = 2000
    # Keep it below Kubernetes' terminationGracePeriodSeconds (30 s by default).
    shutdown_grace_s: Annotated[float, msgspec.Meta(ge=0, le=300)] = 20.0
    # SIGTERM: /readyz turns 503 at once, but the listener keeps accepting this long (part of
    # the grace), while the load balancer or Kubernetes stops routing here.
    shutdown_delay_s: Annotated[float, msgspec.Meta(ge=0, le=300)] = 2.0
    # A request's line and headers must arrive within this long from their first byte.
    header_timeout_s: PositiveFloat = 10.0
    # An idle connection is closed after this long. Above the common load balancers' 60 s, so
    # they close first and never send on a connection this side has just closed.
    keepalive_timeout_s: PositiveFloat = 75.0
    # The request line and each header: at most this many bytes; at most `max_headers` headers.
    max_header_bytes: Annotated[int, msgspec.Meta(ge=1024, le=65536)] = 8190
    max_headers: Annotated[int, msgspec.Meta(ge=16, le=1000)] = 100

    def __post_init__(self) -> None:
        if self.shutdown_delay_s > self.shutdown_grace_s:
            raise ValueError(
                f"shutdown_delay_s ({self.shutdown_delay_s:g}) is part of shutdown_grace_s "
                f"({self.shutdown_grace_s:g}) and cannot exceed it"
            )


class RolesConfig(_Base):
    """Which parts run in this process (the Helm chart runs them as separate Deployments)."""

    webhooks: bool = True
    pollers: bool = True
    commands: bool = True


class RateLimitConfig(_Base):
    """Requests allowed per window for one instance, across the whole deployment."""

    requests: Positive
    per_seconds: PositiveFloat
    # Processes that call this instance's vendor (pollers and command workers together):
    # each takes requests / processes, so the deployment as a whole stays within the limit.
    processes: Positive = 1
    # For fakes and load tests only: allow a budget above the vendor's documented limit.
    above_documented: bool = False


class PollingConfig(_Base):
    """Polling of a vendor's changed records."""

    enabled: bool = False
    resources: list[str] = msgspec.field(default_factory=list)
    interval_s: PositiveFloat = 60.0
    # Re-read this far behind the cursor: vendor timestamps have coarse precision and may lag.
    overlap_s: Annotated[float, msgspec.Meta(ge=0)] = 2.0
    # `beginning` publishes every existing record on the first poll; `now` only later changes.
    start_from: Literal["beginning", "now"] = "beginning"
    page_size: Positive = 100
    # Events and the cursor move in transactions of at most this many events.
    max_batch: Positive = 500

    def __post_init__(self) -> None:
        if self.enabled and not self.resources:
            raise ValueError("polling is enabled but `resources` is empty")


class CommandsConfig(_Base):
    """Consumption of the instance's command topic."""

    enabled: bool = False
    # A command whose vendor call has not succeeded by then gets its final result.
    # Default: the vendor's advice (Mobility Work: an hour), else 300 s.
    deadline_s: PositiveFloat | None = None
    max_attempts: Positive = 10
    # Default: the vendor's advice (Mobility Work: minutes), else 1 s.
    backoff_base_s: PositiveFloat | None = None
    # Default: the vendor's advice (Mobility Work: 10 minutes), else 60 s.
    backoff_max_s: PositiveFloat | None = None
    # Commands worked on at once by this process; commands of one subject run in order.
    # Those that finish together share one Kafka transaction.
    concurrency: Positive = 16


class WebhooksConfig(_Base):
    """The instance's webhook endpoint."""

    enabled: bool = True


class InstanceConfig(_Base, kw_only=True):
    """One connector instance: a vendor account."""

    vendor: str
    name: str = ""
    base_url: str
    api_key: Secret | None = None
    webhook_secret: Secret | None = None
    # Further vendor credentials (login, password, client secret, ...).
    credentials: dict[str, Secret] = msgspec.field(default_factory=dict)
    content_mode: Literal["binary", "structured"] = "binary"
    http_timeout_s: PositiveFloat = 30.0
    rate_limit: RateLimitConfig | None = None
    webhooks: WebhooksConfig = msgspec.field(default_factory=WebhooksConfig)
    polling: PollingConfig = msgspec.field(default_factory=PollingConfig)
    commands: CommandsConfig = msgspec.field(default_factory=CommandsConfig)
    # Vendor-specific settings; each vendor declares and documents its own.
    options: dict[str, Any] = msgspec.field(default_factory=dict)

    @property
    def instance_name(self) -> str:
        """The name used in topics and webhook paths (defaults to the vendor id)."""
        return self.name or self.vendor


class Config(_Base, kw_only=True):
    """The whole configuration file."""

    kafka: KafkaConfig
    server: ServerConfig = msgspec.field(default_factory=ServerConfig)
    roles: RolesConfig = msgspec.field(default_factory=RolesConfig)
    instances: list[InstanceConfig] = msgspec.field(default_factory=list)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


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


_AT = re.compile(r" - at `\$(.*)`$")


def _decode_hook(type_: type, obj: Any) -> Any:
    if type_ is Secret and isinstance(obj, str):
        return Secret(obj)
    if type_ is Secret:
        # YAML reads an unquoted 0123 as a number (even octal): the secret would be wrong.
        raise ValueError("a secret must be a quoted string")
    raise NotImplementedError


def parse_config(
    raw: Any, *, env: dict[str, str] | None = None, base_dir: Path | None = None
) -> Config:
    """Decode an already-loaded YAML tree into a `Config`, raising `ConfigError` on problems."""
    if not isinstance(raw, dict):
        raise ConfigError("the configuration must be a mapping with at least a `kafka` section")
    resolved = _resolve(raw, "", dict(os.environ) if env is None else env, base_dir or Path.cwd())
    try:
        # Not strict: `${PORT}` substitutes a string, which must still fill an int or bool.
        config = msgspec.convert(resolved, Config, dec_hook=_decode_hook, strict=False)
    except msgspec.ValidationError as exc:
        message = str(exc)
        match = _AT.search(message)
        where = match.group(1).lstrip(".") if match else ""
        what = _AT.sub("", message).replace("`", "")
        unknown = re.match(r"Object contains unknown field (\S+)", what)
        if unknown:
            where = f"{where}.{unknown.group(1)}" if where else unknown.group(1)
            what = "unknown key (check its spelling against README.md)"
        raise ConfigError(f"{where or '<top>'}: {what}") from None
    _check_instances(config)
    return config


def _check_instances(config: Config) -> None:
    # Imported here: the registry imports every vendor, which imports this module's structs.
    from adapters.registry import VENDORS

    seen: set[str] = set()
    for i, inst in enumerate(config.instances):
        where = f"instances[{i}]"
        if inst.vendor not in VENDORS:
            known = ", ".join(sorted(VENDORS))
            raise ConfigError(f"{where}.vendor: unknown vendor {inst.vendor!r} (known: {known})")
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
        spec = VENDORS[inst.vendor]
        limit = inst.rate_limit
        if limit is not None and spec.rate_limit is not None and not limit.above_documented:
            doc = spec.rate_limit
            # At most ceil(P / W) of our windows fit in one of the vendor's.
            if limit.requests * math.ceil(doc.per_seconds / limit.per_seconds) > doc.requests:
                raise ConfigError(
                    f"{where}.rate_limit: {limit.requests} per {limit.per_seconds:g}s exceeds "
                    f"{inst.vendor}'s documented {spec.rate_limit.requests} per "
                    f"{spec.rate_limit.per_seconds:g}s (set above_documented: true only for a "
                    "test server)"
                )
        if limit is not None and limit.processes > limit.requests:
            raise ConfigError(
                f"{where}.rate_limit.processes: {limit.processes} processes cannot share "
                f"{limit.requests} requests; run fewer processes for this instance"
            )
        problem = spec.check_instance(inst)
        if problem is not None:
            key, text = problem
            raise ConfigError(f"{where}.{key}: {text}")


def load_config(path: str | Path, *, env: dict[str, str] | None = None) -> Config:
    """Read and decode a YAML configuration file."""
    file_path = Path(path)
    try:
        text = file_path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read configuration file {file_path}: {exc.strerror}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(_yaml_error(file_path, text, exc)) from None
    return parse_config(raw, env=env, base_dir=file_path.parent)


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
