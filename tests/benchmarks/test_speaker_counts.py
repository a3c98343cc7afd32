"""The speaker-count robustness benchmark: its comparison overrides are parsed strictly."""

from __future__ import annotations

import pytest
import typer

from benchmarks.speaker_counts import parse_overrides


def test_overrides_parse_to_numbers() -> None:
    assert parse_overrides("step_s=2.5, refine_iterations=0,") == {"step_s": 2.5, "refine_iterations": 0.0}
    assert parse_overrides("") == {}


def test_an_override_without_a_value_is_refused() -> None:
    with pytest.raises(typer.BadParameter, match="key=value"):
        parse_overrides("step_s")
