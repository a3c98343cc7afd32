"""``flywheel ab report`` on a synthetic prediction log whose latencies, labels and errors are known."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import insert
from typer.testing import CliRunner

from cli.main import app
from experiments.ab_report import ab_report, build_report, corpus_interval, unpaired_bootstrap
from flywheel.db import Prediction, make_engine, upgrade
from flywheel.metrics import DERBreakdown
from flywheel.segments import annotation_from_turns, write_rttm, write_uem
from labeling.pseudo_db import pseudo_labels

T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
REFERENCE = [(0.0, 10.0, "A"), (10.0, 20.0, "B")]


def _row(
    rid: str,
    arm: str | None,
    latency: float,
    minute: float,
    status: str = "ok",
    http: int = 200,
    segments: list | None = None,
) -> dict:
    return {
        "request_id": rid,
        "created_at": T0 + timedelta(minutes=minute),
        "client_id": None,
        "arm": arm,
        "model_name": arm,
        "model_version": f"{arm}-v1" if arm else None,
        "latency_ms": latency,
        "audio_duration_s": 20.0,
        "audio_sha256": None,
        "num_speakers": 2,
        "status": status,
        "http_status": http,
        "error": None if status == "ok" else "boom",
        "segments": [{"start": s, "end": e, "speaker": k} for s, e, k in (segments or [])],
    }


def _pseudo(rid: str, missed: float, confusion: float, confidence: float) -> dict:
    return {
        "request_id": rid,
        "status": "ok",
        "created_at": T0,
        "teacher_version": "teacher-x",
        "confidence": confidence,
        "disagreement": (missed + confusion) / 20.0,
        "reference_speech_s": 20.0,
        "missed_s": missed,
        "false_alarm_s": 0.0,
        "confusion_s": confusion,
        "duration_s": 20.0,
    }


@pytest.fixture
def synthetic(tmp_path: Path) -> tuple[str, Path]:
    """fast-cnn: 100 ok (1..100 ms), two 500s, one 413, one client_closed; distilhubert: 50 ok
    (10..500 ms); three unrouted 422s. Reviewed: 4 requests per arm; pseudo-labels: 2 per arm."""
    rows = [_row(f"f{i:03d}", "fast-cnn", float(i), i * 1.2, segments=REFERENCE) for i in range(1, 101)]
    rows += [
        _row("f-500a", "fast-cnn", 5.0, 10, "error", 500),
        _row("f-500b", "fast-cnn", 5.0, 11, "error", 500),
        _row("f-413", "fast-cnn", 1.0, 12, "error", 413),
        _row("f-gone", "fast-cnn", 3.0, 13, "client_closed", 499),
    ]
    rows += [
        _row(f"h{i:03d}", "distilhubert", 10.0 * i, i * 2.0, segments=[(0.0, 20.0, "X")])
        for i in range(1, 51)
    ]
    rows += [_row(f"u{i}", None, 0.5, 30 + i, "error", 422) for i in range(3)]
    # fast-cnn's reviewed files: the turn change served k seconds late -> DER k / 20 (k = 0..3)
    for k in range(4):
        rows[k]["segments"] = [
            {"start": 0.0, "end": 10.0 + k, "speaker": "A"},
            {"start": 10.0 + k, "end": 20.0, "speaker": "B"},
        ]
    url = f"sqlite:///{tmp_path / 'predictions.db'}"
    upgrade(url)
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(insert(Prediction.__table__), rows)
        conn.execute(
            insert(pseudo_labels),
            [
                _pseudo("f050", 1.0, 1.0, 0.9),
                _pseudo("f051", 1.0, 1.0, 0.8),  # DER 0.1 each
                _pseudo("h010", 0.0, 6.0, 0.7),
                _pseudo("h011", 0.0, 6.0, 0.5),  # DER 0.3 each
            ],
        )
    engine.dispose()
    reviewed = tmp_path / "reviewed"
    for rid in ("f001", "f002", "f003", "f004", "h001", "h002", "h003", "h004"):
        write_rttm(reviewed / "rttm" / f"{rid}.rttm", annotation_from_turns(REFERENCE, uri=rid))
        write_uem(
            reviewed / "uem" / f"{rid}.uem", rid, [annotation_from_turns(REFERENCE).get_timeline().extent()]
        )
    return url, reviewed


def test_report_numbers_html_and_figures(synthetic, tmp_path: Path, capsys) -> None:
    url, reviewed = synthetic
    out = tmp_path / "ab"
    report = ab_report(url, reviewed, out, track=True)  # MLflow is down in these tests (conftest)
    assert report.mlflow_run_id is None and "MLflow unreachable" in capsys.readouterr().err
    assert (report.total_rows, report.unrouted) == (157, 3)
    fast, hubert = sorted(report.arms, key=lambda s: s.arm != "fast-cnn")
    assert fast.arm == "fast-cnn" and hubert.arm == "distilhubert"
    assert (fast.requests, fast.ok, fast.errors, fast.client_errors, fast.client_closed) == (
        103,
        100,
        2,
        1,
        1,
    )
    assert fast.share == pytest.approx(103 / 153) and hubert.share == pytest.approx(50 / 153)
    assert fast.error_rate == pytest.approx(2 / 103) and fast.client_error_rate == pytest.approx(1 / 103)
    assert hubert.error_rate == 0.0
    assert (fast.p50_ms, fast.p95_ms, fast.p99_ms) == pytest.approx((50.5, 95.05, 99.01))
    assert (hubert.p50_ms, hubert.p95_ms, hubert.p99_ms) == pytest.approx((255.0, 475.5, 495.1))
    assert fast.model_versions == ["fast-cnn-v1"]

    # reviewed: fast-cnn (0 + 1 + 2 + 3) / 80 s; distilhubert one speaker for two: half confused
    assert fast.reviewed.files == 4 and fast.reviewed.der == pytest.approx(6 / 80)
    assert 0.0 <= fast.reviewed.low <= 6 / 80 <= fast.reviewed.high <= 0.15
    assert hubert.reviewed.der == pytest.approx(0.5) and hubert.reviewed.low == pytest.approx(0.5)
    assert fast.teacher.files == 2 and fast.teacher.der == pytest.approx(0.1)
    assert hubert.teacher.der == pytest.approx(0.3) and hubert.mean_confidence == pytest.approx(0.6)

    assert (fast.rule, fast.rule_source, hubert.rule) == ("champion", "reviewed", "rejected")
    (comp,) = report.comparisons
    assert (comp.a, comp.b, comp.source) == ("fast-cnn", "distilhubert", "reviewed")
    assert comp.delta == pytest.approx(0.5 - 6 / 80) and comp.significant and comp.low > 0.3
    assert "move traffic to fast-cnn" in report.recommendation
    assert "distilhubert: should get no traffic" in report.recommendation

    page = (out / "report.html").read_text()
    for name in ("latency.png", "der.png", "traffic.png"):
        assert f'<img src="{name}"' in page
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    assert "move traffic to fast-cnn" in page and "50.5" in page
    saved = json.loads((out / "report.json").read_text())
    assert saved["arms"][1]["p99_ms"] == pytest.approx(99.01) and saved["arms"][1]["arm"] == "fast-cnn"


def test_since_and_teacher_only_comparison_not_significant(tmp_path: Path) -> None:
    rows = [_row(f"a{i}", "fast-cnn", 10.0, i) for i in range(6)] + [
        _row(f"b{i}", "teacher", 20.0, i) for i in range(4)
    ]
    pseudo = [
        {**_pseudo(f"a{i}", 0.0, c, 0.9), "arm": "fast-cnn"} for i, c in enumerate((0.0, 8.0, 2.0, 6.0))
    ]
    pseudo += [
        {**_pseudo(f"b{i}", 0.0, c, 0.9), "arm": "teacher"} for i, c in enumerate((1.0, 7.0, 3.0, 5.0))
    ]
    for r in rows:
        r["created_at"] = r["created_at"].replace(tzinfo=None)
    report = build_report(rows, pseudo, reviewed={})
    (comp,) = report.comparisons
    assert comp.source == "teacher" and not comp.significant and comp.low < 0 < comp.high
    assert (
        "not significant yet" in report.recommendation and "a proxy until reviewed" in report.recommendation
    )
    assert report.arms[0].reviewed.files == 0 and math.isnan(report.arms[0].reviewed.der)


def test_intervals() -> None:
    same = [DERBreakdown(0.2, 1.0, 0.0, 1.0, 10.0)] * 5
    iv = corpus_interval(same)
    assert (iv.der, iv.low, iv.high, iv.files) == pytest.approx((0.2, 0.2, 0.2, 5))
    better = [DERBreakdown(0.1, 1.0, 0.0, 0.0, 10.0)] * 5
    diff = unpaired_bootstrap(same, better)
    assert diff.delta == pytest.approx(-0.1) and diff.verdict() == "B better" and diff.b_better_share == 1.0
    with pytest.raises(ValueError):
        unpaired_bootstrap([], better)


def test_logged_to_mlflow(synthetic, sqlite_uri: str, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    url, reviewed = synthetic
    report = ab_report(url, reviewed, tmp_path / "ab", track=True, tracking_uri=sqlite_uri)
    assert report.mlflow_run_id
    client = MlflowClient(tracking_uri=sqlite_uri)
    run = client.get_run(report.mlflow_run_id)
    assert run.data.tags["kind"] == "ab-report"
    assert run.data.metrics["fast-cnn.p50_ms"] == pytest.approx(50.5)
    assert run.data.metrics["distilhubert.der_reviewed"] == pytest.approx(0.5)
    logged = {f.path for f in client.list_artifacts(report.mlflow_run_id, "ab-report")}
    assert {
        "ab-report/report.html",
        "ab-report/latency.png",
        "ab-report/der.png",
        "ab-report/traffic.png",
    } <= logged


def test_cli(synthetic, tmp_path: Path) -> None:
    url, reviewed = synthetic
    out = tmp_path / "cli"
    args = [
        "ab",
        "report",
        "--database-url",
        url,
        "--reviewed-dir",
        str(reviewed),
        "--out-dir",
        str(out),
        "--no-track",
        "--since",
        "2026-11-20T09:00",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "recommendation:" in result.output and (out / "report.html").exists()
    saved = json.loads((out / "report.json").read_text())
    # since 09:00: fast-cnn rows at 60..120 min (f050..f100) and distilhubert rows at 60..100 min
    counts = {a["arm"]: a["requests"] for a in saved["arms"]}
    assert counts == {"fast-cnn": 51, "distilhubert": 21}
    assert saved["since"] == "2026-11-20T09:00:00+00:00"


def test_recommendation_with_one_request_per_arm_or_no_good_arm() -> None:
    def report(fast: list[float], other: list[float]):
        rows = [_row(f"a{i}", "fast-cnn", 10.0, i) for i in range(len(fast) + 1)]
        rows += [_row(f"b{i}", "teacher", 10.0, i) for i in range(len(other))]
        pseudo = [{**_pseudo(f"a{i}", 0.0, 20 * d, 0.9), "arm": "fast-cnn"} for i, d in enumerate(fast)]
        pseudo += [{**_pseudo(f"b{i}", 0.0, 20 * d, 0.9), "arm": "teacher"} for i, d in enumerate(other)]
        return build_report(rows, pseudo, reviewed={})

    single = report([0.1], [0.5])
    assert not single.comparisons[0].significant
    assert "too few labelled requests to judge" in single.recommendation
    bad = report([0.4, 0.4], [0.6, 0.6])
    assert bad.comparisons[0].significant and [s.rule for s in bad.arms] == ["rejected", "rejected"]
    assert "neither arm should be served" in bad.recommendation


def test_shed_requests_are_counted_apart_from_errors() -> None:
    from experiments.ab_report import build_report

    rows = [_row(f"t{i}", "teacher", 100.0, i) for i in range(3)]
    rows += [_row("t-shed", "teacher", 1.0, 4, "shed", 503), _row("t-500", "teacher", 5.0, 5, "error", 500)]
    (stats,) = build_report(rows, [], {}, samples=100).arms
    assert (stats.requests, stats.shed, stats.errors) == (5, 1, 1)
