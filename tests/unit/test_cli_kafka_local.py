"""`workbridge kafka-local`: what its usage promises is what it passes to the launcher."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from adapters import cli
from adapters.localkafka import launcher


@pytest.fixture
def launched(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    calls: list[list[str]] = []

    def fake_main(argv: Sequence[str] | None = None) -> int:
        calls.append(list(argv or []))
        return 0

    monkeypatch.setattr(launcher, "main", fake_main)
    return calls


def test_no_options_pick_a_free_port_and_a_temporary_folder(launched: list[list[str]]) -> None:
    assert cli.main(["kafka-local"]) == 0
    assert launched == [[]]


def test_port_and_data_dir_reach_the_launcher(launched: list[list[str]]) -> None:
    assert cli.main(["kafka-local", "--port", "19092", "--data-dir", "/srv/kafka"]) == 0
    assert launched == [["--port", "19092", "--data-dir", "/srv/kafka"]]


def test_usage_does_not_suggest_a_default_port(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["kafka-local", "--help"])
    out = capsys.readouterr().out
    assert "usage: workbridge kafka-local [-h] [--port PORT] [--data-dir DIR]" in out
    assert "9092" not in out
    assert "default: a free port" in out


def test_launcher_accepts_what_the_cli_passes() -> None:
    args = launcher._parse_args(["--port", "19092", "--data-dir", "/srv/kafka"])
    assert (args.port, args.data_dir) == (19092, "/srv/kafka")
