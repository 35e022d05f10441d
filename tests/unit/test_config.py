"""Configuration: decoding, `${ENV}`, `*_file` secrets and errors that name the key."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from adapters import config as loader
from adapters.config import Config, ConfigError
from adapters.core.secret import Secret
from adapters.moco.undocumented import RESOURCE_PATHS, MocoOptions
from adapters.registry import VENDORS

API_KEY = "moco-api-key-0123456789abcdef"
WEBHOOK_SECRET = "1d608b9d72219b90ff2393a1d3ee0ac0"


def parse_config(raw: Any, **kwargs: Any) -> Config:
    """The loader as the CLI runs it: checked against this build's vendors."""
    return loader.parse_config(raw, vendors=VENDORS, **kwargs)


def load_config(path: Path, **kwargs: Any) -> Config:
    """As `parse_config`, from a file."""
    return loader.load_config(path, vendors=VENDORS, **kwargs)


def minimal(**instance: Any) -> dict[str, Any]:
    inst = {
        "vendor": "moco",
        "base_url": "https://acme.mocoapp.com/api/v1",
        "api_key": API_KEY,
        "webhook_secret": WEBHOOK_SECRET,
        **instance,
    }
    return {"kafka": {"bootstrap_servers": "kafka:9092"}, "instances": [inst]}


def error(raw: Any, **kwargs: Any) -> str:
    with pytest.raises(ConfigError) as exc:
        parse_config(raw, **kwargs)
    return str(exc.value)


def test_kafka_only() -> None:
    cfg = parse_config({"kafka": {"bootstrap_servers": "k:9092"}}, env={})
    assert isinstance(cfg, Config)
    assert cfg.kafka.bootstrap_servers == "k:9092"
    assert cfg.kafka.topic_prefix == "workbridge"
    assert cfg.kafka.security_protocol == "PLAINTEXT"
    assert cfg.kafka.topics.partitions == 3
    assert cfg.server.port == 8080
    assert cfg.server.max_body_bytes == 1_048_576
    assert cfg.roles.webhooks and cfg.roles.pollers and cfg.roles.commands
    assert cfg.instances == []
    assert cfg.log_level == "INFO"


def test_valid_minimal_moco_instance() -> None:
    cfg = parse_config(minimal(), env={})
    [inst] = cfg.instances
    assert inst.vendor == "moco"
    assert inst.instance_name == "moco"  # defaults to the vendor id
    assert inst.api_key == Secret(API_KEY)
    assert inst.webhook_secret == Secret(WEBHOOK_SECRET)
    assert inst.content_mode == "binary"
    assert inst.polling.enabled is False
    assert inst.polling.interval_s == 60.0
    assert inst.commands.enabled is False
    assert inst.webhooks.enabled is True


def test_full_instance() -> None:
    cfg = parse_config(
        minimal(
            name="acme-2",
            content_mode="structured",
            polling={"enabled": True, "resources": ["projects", "activities"], "interval_s": 30},
            commands={"enabled": True, "deadline_s": 60},
            rate_limit={"requests": 10, "per_seconds": 15, "processes": 2},
            options={"resource_paths": {"projects": "/p"}},
        ),
        env={},
    )
    inst = cfg.instances[0]
    assert inst.instance_name == "acme-2"
    assert inst.polling.resources == ["projects", "activities"]
    assert inst.polling.interval_s == 30.0
    assert inst.commands.deadline_s == 60.0
    # Deprecated: still read (old files load), ignored with a warning at start-up.
    assert inst.rate_limit is not None and inst.rate_limit.processes == 2
    assert isinstance(inst.options, MocoOptions)
    assert inst.options.resource_paths == {**RESOURCE_PATHS, "projects": "/p"}


def test_repr_never_shows_secrets(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("sasl-password-xyz\n")
    raw = minimal(credentials={"password": "cred-password-xyz"})
    raw["kafka"].update(
        {
            "security_protocol": "SASL_SSL",
            "sasl": {"username": "u", "password_file": str(tmp_path / "pw")},
            "tls": {"ca_file": "/ca.pem", "key_password": "tls-key-pass-xyz"},
        }
    )
    cfg = parse_config(raw, env={})
    text = repr(cfg) + str(cfg) + repr(cfg.instances) + repr(cfg.kafka)
    for secret in (
        API_KEY,
        WEBHOOK_SECRET,
        "sasl-password-xyz",
        "cred-password-xyz",
        "tls-key-pass-xyz",
    ):
        assert secret not in text
    assert "Secret('***')" in text
    assert cfg.kafka.sasl is not None
    assert cfg.kafka.sasl.password.reveal() == "sasl-password-xyz"
    assert cfg.kafka.tls is not None and cfg.kafka.tls.ca_file == "/ca.pem"


# --- unknown keys and wrong types -------------------------------------------------------


def test_unknown_kafka_key_names_section_and_key() -> None:
    msg = error({"kafka": {"bootstrapservers": "k:9092"}}, env={})
    assert msg.startswith("kafka")
    assert "bootstrapservers" in msg
    assert "unknown" in msg


def test_unknown_nested_key_names_section_and_key() -> None:
    msg = error(minimal(polling={"intervall_s": 5}), env={})
    assert msg.startswith("instances[0].polling")
    assert "intervall_s" in msg
    assert "unknown" in msg


def test_unknown_top_level_key() -> None:
    msg = error({"kafka": {"bootstrap_servers": "k"}, "instance": []}, env={})
    assert "instance" in msg
    assert "unknown" in msg


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        ({"kafka": {"bootstrapservers": "k:9092"}}, "kafka.bootstrapservers"),
        (minimal(polling={"intervall_s": 5}), "instances[0].polling.intervall_s"),
    ],
)
def test_unknown_key_is_named_as_a_dotted_path(raw: dict[str, Any], path: str) -> None:
    assert error(raw, env={}).startswith(f"{path}:")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"kafka": {"bootstrap_servers": 9092}}, "kafka.bootstrap_servers: Expected str, got int"),
        (
            {"kafka": {"bootstrap_servers": "k"}, "server": {"port": "eighty"}},
            "server.port: Expected int, got str",
        ),
        (
            minimal(polling={"interval_s": "often"}),
            "instances[0].polling.interval_s: Expected float, got str",
        ),
        (minimal(content_mode="xml"), "instances[0].content_mode: Invalid enum value 'xml'"),
        ({"server": {}}, "<top>: Object missing required field kafka"),
        (
            {"kafka": {"bootstrap_servers": "k", "topics": {"partitions": 0}}},
            "kafka.topics.partitions: Expected int >= 1",
        ),
    ],
)
def test_wrong_type_names_the_key(raw: dict[str, Any], expected: str) -> None:
    assert error(raw, env={}) == expected


@pytest.mark.parametrize("raw", [None, [], "kafka: x", 3])
def test_not_a_mapping(raw: Any) -> None:
    assert "must be a mapping" in error(raw, env={})


# --- ${ENV} --------------------------------------------------------------------------------


def test_env_substitution() -> None:
    raw = minimal(api_key="${MOCO_KEY}", base_url="https://${MOCO_DOMAIN}.mocoapp.com/api/v1")
    raw["kafka"]["bootstrap_servers"] = "${KAFKA_HOST}:${KAFKA_PORT}"
    env = {"MOCO_KEY": "from-env", "MOCO_DOMAIN": "acme", "KAFKA_HOST": "b1", "KAFKA_PORT": "9093"}
    cfg = parse_config(raw, env=env)
    assert cfg.kafka.bootstrap_servers == "b1:9093"
    assert cfg.instances[0].api_key == Secret("from-env")
    assert cfg.instances[0].base_url == "https://acme.mocoapp.com/api/v1"


def test_env_default() -> None:
    raw = minimal(base_url="${URL:-https://x.mocoapp.com/api/v1}")
    raw["kafka"]["topic_prefix"] = "${PREFIX:-}wb"
    cfg = parse_config(raw, env={})
    assert cfg.instances[0].base_url == "https://x.mocoapp.com/api/v1"
    assert cfg.kafka.topic_prefix == "wb"
    # A set variable wins over the default, even when it is empty.
    assert parse_config(raw, env={"PREFIX": "x-"}).kafka.topic_prefix == "x-wb"


def test_env_in_a_list_names_the_index() -> None:
    msg = error(minimal(polling={"resources": ["projects", "${RES}"]}), env={})
    assert msg.startswith("instances[0].polling.resources[1]: environment variable RES is not set")


def test_missing_env_var_names_the_key() -> None:
    msg = error(minimal(api_key="${MOCO_API_KEY}"), env={})
    assert msg.startswith("instances[0].api_key: environment variable MOCO_API_KEY is not set")
    assert "${MOCO_API_KEY:-default}" in msg


def test_env_defaults_to_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WB_TEST_BOOTSTRAP", "from-os:1")
    cfg = parse_config({"kafka": {"bootstrap_servers": "${WB_TEST_BOOTSTRAP}"}})
    assert cfg.kafka.bootstrap_servers == "from-os:1"


def test_env_value_is_not_reexpanded() -> None:
    cfg = parse_config({"kafka": {"bootstrap_servers": "${A}"}}, env={"A": "${B}"})
    assert cfg.kafka.bootstrap_servers == "${B}"


def test_env_substitution_for_numbers_and_booleans() -> None:
    raw = {
        "kafka": {"bootstrap_servers": "k"},
        "server": {"port": "${PORT:-9000}"},
        "roles": {"pollers": "${POLLERS:-false}"},
    }
    cfg = parse_config(raw, env={})
    assert cfg.server.port == 9000
    assert cfg.roles.pollers is False


# --- *_file secrets ----------------------------------------------------------------------


def test_secret_files(tmp_path: Path) -> None:
    (tmp_path / "key").write_text("key-from-file\n")
    (tmp_path / "hook").write_text("  hook-from-file  \n")
    raw = minimal(api_key_file=str(tmp_path / "key"), webhook_secret_file="hook")
    del raw["instances"][0]["api_key"]
    del raw["instances"][0]["webhook_secret"]
    cfg = parse_config(raw, env={}, base_dir=tmp_path)  # relative paths: next to the config
    assert cfg.instances[0].api_key == Secret("key-from-file")
    assert cfg.instances[0].webhook_secret == Secret("hook-from-file")


def test_secret_file_path_from_env(tmp_path: Path) -> None:
    (tmp_path / "key").write_text("k2")
    raw = minimal(api_key_file="${SECRETS}/key")
    del raw["instances"][0]["api_key"]
    cfg = parse_config(raw, env={"SECRETS": str(tmp_path)})
    assert cfg.instances[0].api_key == Secret("k2")


def test_credentials_file(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("pw-from-file")
    cfg = parse_config(minimal(credentials={"password_file": str(tmp_path / "pw")}), env={})
    assert cfg.instances[0].credentials == {"password": Secret("pw-from-file")}


def test_both_value_and_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "key").write_text("x")
    msg = error(minimal(api_key_file=str(tmp_path / "key")), env={})
    assert msg == "instances[0].api_key_file: give either api_key or api_key_file, not both"


def test_missing_secret_file(tmp_path: Path) -> None:
    raw = minimal(webhook_secret_file=str(tmp_path / "nope"))
    del raw["instances"][0]["webhook_secret"]
    msg = error(raw, env={})
    assert msg.startswith("instances[0].webhook_secret_file: cannot read secret file")
    assert str(tmp_path / "nope") in msg
    assert "No such file" in msg


def test_tls_file_paths_are_not_read(tmp_path: Path) -> None:
    raw = minimal()
    raw["kafka"].update(
        {
            "security_protocol": "SSL",
            "tls": {"ca_file": "/does/not/exist/ca.pem", "cert_file": "c", "key_file": "k"},
        }
    )
    cfg = parse_config(raw, env={}, base_dir=tmp_path)
    assert cfg.kafka.tls is not None
    assert cfg.kafka.tls.ca_file == "/does/not/exist/ca.pem"
    assert cfg.kafka.tls.key_file == "k"


# --- instance checks ------------------------------------------------------------------------


def test_unknown_vendor() -> None:
    known = ", ".join(sorted(VENDORS))
    assert error(minimal(vendor="jira"), env={}) == (
        f"instances[0].vendor: unknown vendor 'jira' (known: {known})"
    )


@pytest.mark.parametrize("name", ["Acme", "acme corp", "-acme", "a.b", "a" * 64, "ä"])
def test_bad_instance_name(name: str) -> None:
    msg = error(minimal(name=name), env={})
    assert msg.startswith(f"instances[0].name: {name!r} must be lower-case")


@pytest.mark.parametrize("name", ["acme", "a", "acme-2", "acme_eu", "0x", "a" * 63])
def test_good_instance_name(name: str) -> None:
    assert parse_config(minimal(name=name), env={}).instances[0].instance_name == name


def test_duplicate_names() -> None:
    raw = minimal()
    raw["instances"].append(copy.deepcopy(raw["instances"][0]))
    assert error(raw, env={}) == (
        "instances[1].name: 'moco' is used by two instances; names must be unique"
    )
    raw["instances"][1]["name"] = "moco2"
    assert len(parse_config(raw, env={}).instances) == 2


def test_explicit_name_equal_to_another_default_is_a_duplicate() -> None:
    raw = minimal()
    raw["instances"].append({**raw["instances"][0], "name": "moco"})
    assert error(raw, env={}).startswith("instances[1].name: 'moco' is used by two")


def test_base_url_scheme() -> None:
    assert error(minimal(base_url="acme.mocoapp.com"), env={}).startswith("instances[0].base_url:")


@pytest.mark.parametrize("protocol", ["SASL_PLAINTEXT", "SASL_SSL"])
def test_sasl_protocol_without_sasl_section(protocol: str) -> None:
    msg = error({"kafka": {"bootstrap_servers": "k", "security_protocol": protocol}}, env={})
    assert msg == f"kafka: security_protocol {protocol} needs a sasl section"


def test_sasl_with_section() -> None:
    cfg = parse_config(
        {
            "kafka": {
                "bootstrap_servers": "k",
                "security_protocol": "SASL_SSL",
                "sasl": {"mechanism": "SCRAM-SHA-512", "username": "u", "password": "p"},
            }
        },
        env={},
    )
    assert cfg.kafka.sasl is not None
    assert cfg.kafka.sasl.mechanism == "SCRAM-SHA-512"


def test_moco_without_api_key() -> None:
    raw = minimal(commands={"enabled": True})
    del raw["instances"][0]["api_key"]
    msg = error(raw, env={})
    assert msg.startswith("instances[0].api_key: MOCO polling and commands need the user's API")


def test_moco_with_empty_api_key() -> None:
    raw = minimal(api_key="${KEY:-}", polling={"enabled": True, "resources": ["projects"]})
    assert error(raw, env={}).startswith("instances[0].api_key:")


def test_moco_webhooks_only_needs_no_api_key() -> None:
    raw = minimal()
    del raw["instances"][0]["api_key"]
    assert parse_config(raw, env={}).instances[0].api_key is None


def test_moco_webhooks_without_secret() -> None:
    raw = minimal()
    del raw["instances"][0]["webhook_secret"]
    msg = error(raw, env={})
    assert msg.startswith("instances[0].webhook_secret: MOCO signs webhooks")


def test_moco_webhooks_with_empty_secret() -> None:
    msg = error(minimal(webhook_secret="${MOCO_WEBHOOK_SECRET:-}"), env={})
    assert msg.startswith("instances[0].webhook_secret:")


def test_moco_webhooks_disabled_needs_no_secret() -> None:
    raw = minimal(webhooks={"enabled": False})
    del raw["instances"][0]["webhook_secret"]
    assert parse_config(raw, env={}).instances[0].webhook_secret is None


def test_unknown_polling_resource() -> None:
    msg = error(minimal(polling={"resources": ["projects", "widgets"]}), env={})
    assert msg.startswith("instances[0].polling.resources: unknown MOCO resources ['widgets']")
    assert "'projects'" in msg


# --- load_config -----------------------------------------------------------------------------

YAML = """\
kafka:
  bootstrap_servers: ${BOOTSTRAP:-localhost:9092}
  topic_prefix: wb
server:
  port: 9090
instances:
  - vendor: moco
    name: acme
    base_url: https://acme.mocoapp.com/api/v1
    api_key_file: secrets/moco-key
    webhook_secret: ${HOOK}
    polling:
      enabled: true
      resources: [projects, activities]
      interval_s: 15
"""


def test_load_config_yaml_file(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "moco-key").write_text("yaml-key\n")
    path = tmp_path / "workbridge.yaml"
    path.write_text(YAML)
    cfg = load_config(path, env={"HOOK": "hook-secret"})
    assert cfg.kafka.bootstrap_servers == "localhost:9092"
    assert cfg.kafka.topic_prefix == "wb"
    assert cfg.server.port == 9090
    inst = cfg.instances[0]
    assert inst.instance_name == "acme"
    assert inst.api_key == Secret("yaml-key")  # relative to the config file's folder
    assert inst.webhook_secret == Secret("hook-secret")
    assert inst.polling.resources == ["projects", "activities"]
    assert inst.polling.interval_s == 15.0


def test_load_config_invalid_yaml(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("kafka:\n  bootstrap_servers: [unclosed\n")
    with pytest.raises(ConfigError, match="invalid YAML at line 3"):
        load_config(path, env={})


def test_load_config_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read configuration file"):
        load_config(tmp_path / "missing.yaml", env={})


def test_load_config_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(path, env={})


def test_load_config_error_names_the_key(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(YAML.replace("interval_s: 15", "interval_s: soon"))
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "moco-key").write_text("k")
    with pytest.raises(ConfigError) as exc:
        load_config(path, env={"HOOK": "h"})
    assert str(exc.value) == "instances[0].polling.interval_s: Expected float, got str"


@pytest.mark.parametrize(
    ("instance", "expected"),
    [
        (
            {"rate_limit": {"requests": 30, "per_seconds": 15}},
            "exceeds moco's documented 15 per 15s",
        ),
        ({"rate_limit": {"requests": 10, "per_seconds": 5}}, "exceeds moco's documented"),
        ({"polling": {"enabled": True}}, "polling is enabled but resources is empty"),
        (
            {"commands": {"enabled": True, "concurrency": 0}},
            "commands.concurrency: Expected int >= 1",
        ),
        ({"polling": {"overlap_s": -1}}, "polling.overlap_s: Expected float >= 0"),
        ({"polling": {"max_batch": 0}}, "polling.max_batch: Expected int >= 1"),
    ],
)
def test_values_that_cannot_work_stop_start_up(instance: dict[str, Any], expected: str) -> None:
    assert expected in error(minimal(**instance))


def test_rate_limit_within_the_documented_one_is_accepted() -> None:
    config = parse_config(minimal(rate_limit={"requests": 7, "per_seconds": 7.5, "processes": 2}))
    assert config.instances[0].rate_limit is not None


def test_rate_limit_above_documented_only_when_asked_for() -> None:
    raw = minimal(rate_limit={"requests": 1000, "per_seconds": 1, "above_documented": True})
    assert parse_config(raw).instances[0].rate_limit is not None


def test_the_ledger_index_dir_is_the_config_key_else_the_environment_else_private() -> None:
    from adapters.settings import LEDGER_DIR_ENV, LedgerConfig

    assert LedgerConfig(dir="/data/ledger").index_dir({LEDGER_DIR_ENV: "/env"}) == "/data/ledger"
    assert LedgerConfig().index_dir({LEDGER_DIR_ENV: "/env"}) == "/env"
    assert LedgerConfig().index_dir({LEDGER_DIR_ENV: ""}) is None
    assert LedgerConfig().index_dir({}) is None
    assert LedgerConfig().restore_stall_s == 120.0
