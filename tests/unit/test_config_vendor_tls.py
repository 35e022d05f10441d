"""Vendor TLS (client certificate, private CA) and trusted proxies in the configuration."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from adapters.config import ConfigError, parse_config
from adapters.core.instance import build_instance
from adapters.registry import VENDORS


def config(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    (tmp_path / "key-password").write_text("s3cret-key-password\n")
    return {
        "kafka": {"bootstrap_servers": "kafka:9092"},
        "instances": [
            {
                "vendor": "moco",
                "base_url": "https://acme.mocoapp.com/api/v1",
                "api_key": "k",
                "webhook_secret": "1d608b9d72219b90ff2393a1d3ee0ac0",
                **extra,
            }
        ],
    }


def test_a_client_certificate_reaches_the_vendor_client(tmp_path: Path) -> None:
    raw = config(
        tmp_path,
        tls={
            "cert_file": "/etc/workbridge/client.pem",
            "key_file": "/etc/workbridge/client.key",
            "key_password_file": str(tmp_path / "key-password"),
            "ca_file": "/etc/workbridge/vendor-ca.pem",
        },
    )
    cfg = parse_config(raw, env={}, vendors=VENDORS)
    inst = build_instance(cfg.instances[0], VENDORS["moco"], "workbridge")
    tls = inst.client.auth.tls
    assert tls is not None
    assert tls.cert_file == "/etc/workbridge/client.pem"
    assert tls.ca_file == "/etc/workbridge/vendor-ca.pem"
    assert tls.key_password is not None and tls.key_password.reveal() == "s3cret-key-password"
    assert "s3cret-key-password" not in repr(cfg)


def test_a_certificate_without_its_key_is_refused_naming_the_key(tmp_path: Path) -> None:
    raw = config(tmp_path, tls={"cert_file": "/etc/workbridge/client.pem"})
    with pytest.raises(ConfigError, match=r"instances\[0\]\.tls.*both cert_file and key_file"):
        parse_config(raw, env={}, vendors=VENDORS)


def test_trusted_proxies_must_be_networks(tmp_path: Path) -> None:
    raw = config(tmp_path)
    raw["server"] = {"trusted_proxies": ["10.0.0.0/8", "fd00::/8", "192.168.1.7"]}
    assert parse_config(raw, env={}).server.trusted_proxies[0] == "10.0.0.0/8"
    raw["server"] = {"trusted_proxies": ["ingress.local"]}
    with pytest.raises(ConfigError, match=r"server.*'ingress\.local' is not an IP address"):
        parse_config(raw, env={})
