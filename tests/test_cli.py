"""Every command answers --help (typer), and the command tree is what the README documents."""

from __future__ import annotations

import re

import pytest
import typer
from typer.main import get_command
from typer.testing import CliRunner

from cli.main import app


def _paths(group: typer.Typer) -> list[list[str]]:
    root = get_command(group)
    out: list[list[str]] = [[]]

    def walk(cmd: object, prefix: list[str]) -> None:
        if hasattr(cmd, "commands"):  # a group (typer ships its own click)
            for name, sub in cmd.commands.items():
                out.append([*prefix, name])
                walk(sub, [*prefix, name])

    walk(root, [])
    return out


@pytest.mark.parametrize("path", _paths(app), ids=lambda p: " ".join(p) or "flywheel")
def test_help_everywhere(path: list[str]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_option_help_survives_rich_markup() -> None:
    """Rich reads ``[default: x]`` as a markup tag and drops it from --help: write ``(default: x)``."""
    root = get_command(app)
    swallowed = []
    for path in _paths(app):
        cmd = root
        for name in path:
            cmd = cmd.commands[name]  # type: ignore[attr-defined]
        for param in getattr(cmd, "params", []):
            if re.search(r"\[[a-z ]+:", getattr(param, "help", None) or ""):
                swallowed.append(f"{' '.join(path)} {param.name}: {param.help}")
    assert not swallowed, swallowed


def test_documented_commands_exist() -> None:
    names = {" ".join(p) for p in _paths(app)}
    for cmd in (
        "data inventory",
        "data conversations",
        "data ami",
        "diarize",
        "evaluate",
        "train",
        "export-onnx",
        "average-checkpoints",
    ):
        assert cmd in names


def test_bench_runs_each_benchmark_with_its_own_options() -> None:
    from cli.bench import BENCHMARKS

    listed = CliRunner().invoke(app, ["bench", "--help"]).output
    assert all(name in listed for name in BENCHMARKS)
    own = CliRunner().invoke(app, ["bench", "compare-models", "--help"])
    assert own.exit_code == 0 and "--model-b" in own.output and "flywheel bench compare-models" in own.output
    wrong = CliRunner().invoke(app, ["bench", "compare-models", "--no-such-option"])
    assert wrong.exit_code == 2 and "No such option" in wrong.output
