"""JSON Schemas in schemas/, generated from the msgspec models (commands, events, results)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec

from adapters.core.command_result import CommandResult
from adapters.registry import VENDORS

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def _schema(model: Any, title: str, description: str = "") -> dict[str, Any]:
    schema = msgspec.json.schema(model)
    schema = {"$schema": SCHEMA_DIALECT, "title": title, **schema}
    if description:
        schema["description"] = description.strip()
    return schema


def render_all() -> dict[str, str]:
    """Every schema file as relative path → text (sorted keys, trailing newline)."""
    files: dict[str, Any] = {}
    catalogue: dict[str, Any] = {}
    for vendor_id, spec in sorted(VENDORS.items()):
        actions = []
        for type_, cmd in sorted(spec.commands.items()):
            files[f"commands/{type_}.json"] = _schema(cmd.model, type_, cmd.description)
            actions.append(
                {
                    "type": type_,
                    "kind": cmd.kind,
                    "method": cmd.method,
                    "path": cmd.path,
                    "path_source": (
                        "not given: set options.command_paths to enable"
                        if cmd.path_not_documented
                        else "guess (not in the vendor document)"
                        if cmd.path_guessed
                        else "vendor document"
                    ),
                    "repeat_safe": cmd.repeat_safe,
                    "description": cmd.description.strip(),
                    "schema": f"commands/{type_}.json",
                }
            )
        catalogue[vendor_id] = actions
        for type_, model in sorted(spec.event_models.items()):
            files[f"events/{type_}.json"] = _schema(model, type_, model.__doc__ or "")
    files["commands/catalogue.json"] = catalogue
    files["results/command-result.json"] = _schema(
        CommandResult, "command result", CommandResult.__doc__ or ""
    )
    return {path: json.dumps(body, indent=2, sort_keys=True) + "\n" for path, body in files.items()}


def write(root: Path) -> list[str]:
    """Write all schemas under `root`, removing stale ones; returns the paths written."""
    rendered = render_all()
    for old in root.rglob("*.json"):
        if str(old.relative_to(root)) not in rendered:
            old.unlink()
    for rel, text in rendered.items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    return sorted(rendered)


def diff(root: Path) -> list[str]:
    """Paths whose checked-in content differs from what the code generates."""
    rendered = render_all()
    problems = []
    for rel, text in rendered.items():
        target = root / rel
        if not target.exists():
            problems.append(f"missing: {rel}")
        elif target.read_text(encoding="utf-8") != text:
            problems.append(f"out of date: {rel}")
    for old in root.rglob("*.json"):
        if str(old.relative_to(root)) not in rendered:
            problems.append(f"stale: {old.relative_to(root)}")
    return problems
