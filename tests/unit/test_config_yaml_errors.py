"""A YAML syntax error names file, line, column and key, and never echoes the content."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.cli import EXIT_CONFIG, main

SECRET = "Zq8sV3cr3tValueThatMustNeverBePrinted42"

HEAD = "kafka:\n  bootstrap_servers: kafka:9092\ninstances:\n  - vendor: moco\n"

BROKEN = {
    # A stray ": " after the value: PyYAML's message quotes the whole line.
    "colon-in-value": (
        HEAD + f"    webhook_secret: {SECRET}: x\n",
        5,
        "instances[0].webhook_secret",
    ),
    # An unclosed quote: PyYAML quotes the start of the value.
    "unclosed-quote": (
        HEAD + "    name: a\n  - vendor: moco\n" + f'    api_key: "{SECRET}\n    name: x\n',
        9,
        "instances[1].api_key",
    ),
    "bad-escape": (
        HEAD + f'    api_key: "{SECRET[:10]}\\q{SECRET[10:]}"\n',
        5,
        "instances[0].api_key",
    ),
    "tab-indent": (f"kafka:\n\tpassword: {SECRET}\n", 2, "kafka"),
    "undefined-alias": (HEAD + f"    api_key: *{SECRET}\n", 5, "instances[0].api_key"),
    "unknown-tag": (HEAD + f"    api_key: !{SECRET} x\n", 5, "instances[0].api_key"),
}


def pieces(secret: str, length: int = 6) -> set[str]:
    return {secret[i : i + length] for i in range(len(secret) - length + 1)}


@pytest.mark.parametrize("command", ["run", "check-config"])
@pytest.mark.parametrize("case", sorted(BROKEN))
def test_yaml_errors_name_the_place_but_never_the_content(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str, case: str
) -> None:
    text, line, key = BROKEN[case]
    path = tmp_path / "workbridge.yaml"
    path.write_text(text)
    assert main([command, "--config", str(path)]) == EXIT_CONFIG
    out = capsys.readouterr()
    printed = out.out + out.err
    assert str(path) in printed
    assert f"line {line}," in printed
    assert "column " in printed
    assert f"`{key}" in printed
    leaked = [p for p in pieces(SECRET) if p in printed]
    assert leaked == [], printed
