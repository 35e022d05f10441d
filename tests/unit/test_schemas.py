"""schemas/ is generated from the code: the checked-in files must match it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from adapters.cli import main
from adapters.moco import SPEC
from adapters.moco.commands import COMMANDS
from adapters.schemas_gen import diff, render_all

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


def test_checked_in_schemas_match_the_code() -> None:
    assert diff(SCHEMAS) == []


def test_every_moco_command_has_a_schema_file() -> None:
    for type_ in COMMANDS:
        path = SCHEMAS / "commands" / f"{type_}.json"
        assert path.is_file(), path
        schema = json.loads(path.read_text(encoding="utf-8"))
        assert schema["title"] == type_
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_every_moco_event_type_has_a_schema_file() -> None:
    for type_ in SPEC.event_models:
        assert (SCHEMAS / "events" / f"{type_}.json").is_file(), type_


def test_catalogue_lists_every_command() -> None:
    catalogue = json.loads((SCHEMAS / "commands" / "catalogue.json").read_text(encoding="utf-8"))
    listed = {entry["type"]: entry for entry in catalogue["moco"]}
    assert set(listed) == set(COMMANDS)
    update = listed["workbridge.moco.activity.update"]
    assert update["method"] == "PUT"
    assert update["path"] == "/activities/{id}"
    assert update["kind"] == "update"
    assert update["schema"] == "commands/workbridge.moco.activity.update.json"


def test_activity_create_schema_requires_date_and_project() -> None:
    rendered = json.loads(render_all()["commands/workbridge.moco.activity.create.json"])
    definition = rendered["$defs"]["ActivityCreate"]
    assert sorted(definition["required"]) == ["date", "project_id"]
    assert definition["additionalProperties"] is False


def test_diff_reports_problems(tmp_path: Path) -> None:
    assert "missing: commands/catalogue.json" in diff(tmp_path)
    (tmp_path / "commands").mkdir()
    (tmp_path / "commands" / "catalogue.json").write_text("{}\n")
    (tmp_path / "old.json").write_text("{}")
    problems = diff(tmp_path)
    assert "out of date: commands/catalogue.json" in problems
    assert "stale: old.json" in problems


def test_render_all_takes_the_vendor_table() -> None:
    only_moco = render_all({"moco": SPEC})
    assert json.loads(only_moco["commands/catalogue.json"]).keys() == {"moco"}
    assert not [path for path in only_moco if "mobilitywork" in path]


CHART = Path(__file__).resolve().parents[2] / "helm" / "workbridge"


def test_schemas_check_covers_the_chart(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The CI step `workbridge schemas --check` fails when the chart and the registry disagree.
    assert main(["schemas", "--check", "--dir", str(SCHEMAS), "--chart", str(CHART)]) == 0
    assert f"so does {CHART}" in capsys.readouterr().out
    chart = tmp_path / "workbridge"
    shutil.copytree(CHART, chart)
    schema = json.loads((chart / "values.schema.json").read_text(encoding="utf-8"))
    del schema["properties"]["instances"]["items"]["allOf"]
    (chart / "values.schema.json").write_text(json.dumps(schema), encoding="utf-8")
    assert main(["schemas", "--check", "--dir", str(SCHEMAS), "--chart", str(chart)]) == 1
    assert "values.schema.json (vendor facts differ" in capsys.readouterr().err
    # `workbridge schemas` writes it back.
    assert main(["schemas", "--dir", str(tmp_path / "schemas"), "--chart", str(chart)]) == 0
    assert main(["schemas", "--check", "--dir", str(SCHEMAS), "--chart", str(chart)]) == 0
