"""The chart's vendor facts are the registry's: vendor ids, options, resources, rate limits.

`workbridge schemas` writes them into values.schema.json and values.yaml; these tests fail
when the checked-in chart and the registry disagree (no helm needed for that part), and,
with a helm binary, check that helm refuses per vendor what the app would refuse.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from adapters.core.vendor import RateLimit
from adapters.registry import VENDORS
from adapters.schemas_gen import (
    CHART_SCHEMA,
    CHART_VALUES,
    diff_chart,
    options_schema,
    render_chart,
    write_chart,
)
from adapters.settings import CommandsConfig, PollingConfig, WebhooksConfig
from tests.helm.test_chart import HELM

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "workbridge"


def _instance_schema(chart: Path = CHART) -> dict[str, Any]:
    schema = json.loads((chart / CHART_SCHEMA).read_text(encoding="utf-8"))
    item: dict[str, Any] = schema["properties"]["instances"]["items"]
    return item


def test_the_checked_in_chart_matches_the_registry() -> None:
    assert diff_chart(CHART) == []


def test_schema_lists_the_registrys_vendors_with_their_options() -> None:
    item = _instance_schema()
    assert item["properties"]["vendor"]["enum"] == sorted(VENDORS)
    rules = {
        rule["if"]["properties"]["vendor"]["const"]: rule["then"]["properties"]
        for rule in item["allOf"]
    }
    assert set(rules) == set(VENDORS)
    for vendor_id, spec in VENDORS.items():
        options = rules[vendor_id]["options"]
        assert options == options_schema(spec)
        assert set(options["properties"]) == set(spec.options.__struct_fields__)
        assert options["additionalProperties"] is False
        polling = rules[vendor_id]["polling"]["properties"]
        if spec.poll is None:
            assert polling["enabled"]["const"] is False
        else:
            assert polling["resources"]["items"]["enum"] == sorted(spec.poll.resources)


def test_values_carry_the_documented_rate_limits() -> None:
    values = yaml.safe_load((CHART / CHART_VALUES).read_text(encoding="utf-8"))
    documented = {
        vendor_id: {
            "requests": spec.rate_limit.requests,
            "per_seconds": spec.rate_limit.per_seconds,
        }
        for vendor_id, spec in VENDORS.items()
        if spec.rate_limit is not None
    }
    assert values["vendorRateLimits"] == documented


@pytest.fixture
def chart_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "workbridge"
    shutil.copytree(CHART, copy)
    return copy


def test_a_chart_that_disagrees_fails_the_check_and_is_rewritten(chart_copy: Path) -> None:
    schema_path = chart_copy / CHART_SCHEMA
    schema = json.loads(schema_path.read_text(encoding="utf-8"))
    schema["properties"]["instances"]["items"]["properties"]["vendor"]["enum"] = ["moco"]
    schema_path.write_text(json.dumps(schema, indent=2) + "\n", encoding="utf-8")
    values_path = chart_copy / CHART_VALUES
    values = values_path.read_text(encoding="utf-8")
    block = "  moco:\n    requests: 15\n"
    assert block in values
    values_path.write_text(values.replace(block, block.replace("15", "30")), encoding="utf-8")

    problems = diff_chart(chart_copy)
    assert len(problems) == 2
    assert all("vendor facts differ from the registry" in p for p in problems)
    assert sorted(write_chart(chart_copy)) == [CHART_SCHEMA, CHART_VALUES]
    assert diff_chart(chart_copy) == []
    assert values_path.read_text(encoding="utf-8") == values


def test_a_new_vendor_shows_up_in_the_chart(chart_copy: Path) -> None:
    zeta = dataclasses.replace(VENDORS["mobilitywork"], id="zeta", rate_limit=RateLimit(5, 1.5))
    extra = {**VENDORS, "zeta": zeta}
    rendered = render_chart(chart_copy, extra)
    schema = json.loads(rendered[CHART_SCHEMA])
    assert "zeta" in schema["properties"]["instances"]["items"]["properties"]["vendor"]["enum"]
    assert "zeta" in schema["properties"]["vendorRateLimits"]["properties"]
    limits = yaml.safe_load(rendered[CHART_VALUES])["vendorRateLimits"]
    assert limits["zeta"] == {"requests": 5, "per_seconds": 1.5}


def test_values_without_the_generated_block_are_an_error(chart_copy: Path) -> None:
    values_path = chart_copy / CHART_VALUES
    text = values_path.read_text(encoding="utf-8")
    values_path.write_text(text.replace("# --- end of generated", "# --- end"), encoding="utf-8")
    [problem] = diff_chart(chart_copy)
    assert "no generated vendorRateLimits block" in problem


# --- helm refuses per vendor what the app refuses ---------------------------------------------

needs_helm = pytest.mark.skipif(
    HELM is None or not os.access(HELM, os.X_OK),
    reason="no helm binary: run scripts/helm-validate or set HELM=/path/to/helm",
)
MW = ["instances[0].vendor=mobilitywork", "instances[0].base_url=https://api.mobility-work.com"]
MOCO = ["instances[0].vendor=moco", "instances[0].base_url=https://acme.mocoapp.com/api/v1"]


def _template(*sets: str) -> subprocess.CompletedProcess[str]:
    assert HELM is not None
    args = [HELM, "template", "wb", str(CHART)]
    for item in sets:
        args += ["--set", item]
    return subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)


@needs_helm
@pytest.mark.parametrize(
    ("sets", "where"),
    [
        ([*MW, "instances[0].options.colour=red"], "/instances/0/options"),
        ([*MW, "instances[0].options.signature_tolerance_s=soon"], "signature_tolerance_s"),
        ([*MW, "instances[0].options.signature_tolerance_s=0"], "signature_tolerance_s"),
        ([*MW, "instances[0].polling.enabled=true"], "/instances/0/polling/enabled"),
        ([*MOCO, "instances[0].polling.resources[0]=widgets"], "/instances/0/polling/resources"),
        ([*MOCO, "instances[0].options.network_name=x"], "/instances/0/options"),
        (
            [*MOCO, "instances[0].options.resource_paths.widgets=/w"],
            "/instances/0/options/resource_paths",
        ),
        (
            [*MW, "instances[0].options.command_paths.workbridge\\.mobilitywork\\.x=/x"],
            "/instances/0/options/command_paths",
        ),
        (
            ["vendorRateLimits.jira.requests=1", "vendorRateLimits.jira.per_seconds=1"],
            "at '/vendorRateLimits': additional properties 'jira' not allowed",
        ),
    ],
)
def test_the_schema_refuses_what_the_vendor_refuses(sets: list[str], where: str) -> None:
    result = _template(*sets)
    assert result.returncode != 0, "helm accepted values the vendor refuses"
    assert where in result.stderr


@needs_helm
def test_the_schema_takes_each_vendors_own_options() -> None:
    result = _template(
        *MW,
        "instances[0].options.network_name=plant-north",
        "instances[0].options.signature_tolerance_s=120",
        "instances[0].options.command_paths.workbridge\\.mobilitywork\\.task\\.complete=/t/{id}",
        "instances[1].vendor=moco",
        "instances[1].base_url=https://acme.mocoapp.com/api/v1",
        "instances[1].options.resource_paths.deals=/crm/deals",
        "instances[1].polling.resources[0]=deals",
    )
    assert result.returncode == 0, result.stderr


def test_the_blocks_the_chart_passes_through_take_every_key_the_app_takes() -> None:
    instance = _instance_schema()
    for key, struct in (
        ("polling", PollingConfig),
        ("commands", CommandsConfig),
        ("webhooks", WebhooksConfig),
    ):
        block = instance["properties"][key]
        assert set(block["properties"]) == set(struct.__struct_fields__), key
        assert block["additionalProperties"] is False


@needs_helm
def test_polling_tuning_keys_reach_the_apps_config() -> None:
    result = _template(
        *MOCO,
        "instances[0].polling.enabled=true",
        "instances[0].polling.resources[0]=deals",
        "instances[0].polling.max_pages=7",
        "instances[0].polling.seen_limit=20000",
        "instances[0].polling.date_margin_s=2",
        "instances[0].polling.max_budget_share=1",
        "instances[0].polling.max_staleness_s=900",
    )
    assert result.returncode == 0, result.stderr
    for text in ("max_pages: 7", "seen_limit: 20000", "date_margin_s: 2", "max_staleness_s: 900"):
        assert text in result.stdout
    bad = _template(*MOCO, "instances[0].polling.seen_limit=0")
    assert bad.returncode != 0
    assert "seen_limit" in bad.stderr
