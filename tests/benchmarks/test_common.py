"""Benchmark helpers: pipeline overrides from the command line, peak memory of a fresh process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import typer

from benchmarks.common import override_params, parse_overrides, peak_rss_mb
from flywheel.systems.neural import NeuralParams

REPO = Path(__file__).resolve().parents[2]


def test_peak_rss_is_at_least_what_this_process_holds() -> None:
    block = bytearray(64 * 1024 * 1024)
    block[::4096] = b"\x01" * len(block[::4096])  # touch every page
    assert peak_rss_mb() >= 64


def test_a_fresh_subprocess_reports_its_own_peak_not_its_parents() -> None:
    # getrusage's ru_maxrss would report the parent's size here: Linux keeps it across fork + exec
    block = bytearray(400 * 1024 * 1024)
    block[::4096] = b"\x01" * len(block[::4096])
    code = (
        f"import sys; sys.path.insert(0, {str(REPO)!r}); "
        "from benchmarks.common import peak_rss_mb; print(peak_rss_mb())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert 0 < float(out.stdout) < 300
    del block


def test_overrides_parse_to_strings_and_drop_empty_parts() -> None:
    assert parse_overrides("step_s=2.5, stitching=hard,") == {"step_s": "2.5", "stitching": "hard"}
    assert parse_overrides("") == {}


def test_an_override_without_a_value_is_refused() -> None:
    with pytest.raises(typer.BadParameter, match="key=value"):
        parse_overrides("step_s")


def test_overrides_take_the_type_of_each_field() -> None:
    params = NeuralParams(step_s=1.25, refine_iterations=5)
    new = override_params(
        params, parse_overrides("step_s=2.5,refine_iterations=0,stitching=hard,max_speakers=3")
    )
    assert (new.step_s, new.refine_iterations, new.stitching, new.max_speakers) == (2.5, 0, "hard", 3)
    assert isinstance(new.refine_iterations, int) and params.step_s == 1.25  # a copy


def test_an_unknown_field_or_a_bad_value_is_refused() -> None:
    with pytest.raises(typer.BadParameter, match="unknown pipeline parameter 'stiching'"):
        override_params(NeuralParams(), {"stiching": "hard"})
    with pytest.raises(ValueError, match="stitching"):
        override_params(NeuralParams(), {"stitching": "average"})  # the dataclass's own check
