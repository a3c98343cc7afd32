"""Evaluation end to end on the smoke test set, through the Python API and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from cli.main import app
from experiments.evaluate import evaluate, report_table
from flywheel.segments import read_rttm


def test_evaluate_baseline_writes_rttm_and_report(smoke_data: Path, tmp_path: Path) -> None:
    test_set = smoke_data / "conversations" / "smoke" / "test"
    report = evaluate("baseline", test_set, tmp_path)
    assert set(report["total"]) == {"collar_0", "collar_0.25"}
    total0, total25 = report["total"]["collar_0"], report["total"]["collar_0.25"]
    assert 0.0 <= total25["der"] <= total0["der"] <= 1.5
    for key in ("missed", "false_alarm", "confusion", "speaker_count_error"):
        assert key in total0
    assert json.loads((tmp_path / "report.json").read_text())["system"] == "baseline"
    for f in report["files"]:
        assert (
            f["uri"] in read_rttm(tmp_path / "rttm" / f"{f['uri']}.rttm")
            or f["collar_0"]["hyp_speakers"] == 0
        )
    assert report_table(report).row_count == len(report["files"]) + 1


def test_cli_evaluate_and_diarize(smoke_data: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    test_set = smoke_data / "conversations" / "smoke" / "test"
    result = runner.invoke(
        app,
        ["evaluate", "--system", "baseline", "--test-set", str(test_set), "--out-dir", str(tmp_path / "r")],
    )
    assert result.exit_code == 0, result.output
    assert "TOTAL" in result.output and (tmp_path / "r" / "report.json").exists()

    wav = sorted(test_set.glob("*.wav"))[0]
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio at all" * 100)
    result = runner.invoke(
        app, ["diarize", "--system", "baseline", "--out-dir", str(tmp_path / "o"), str(wav), str(bad)]
    )
    assert result.exit_code == 1  # one bad input: reported, the good one still written
    assert (tmp_path / "o" / f"{wav.stem}.rttm").exists()
