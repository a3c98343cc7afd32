"""Review selection (ranking, budget, arm balance) and ``label push --from-pseudo-labels``."""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import insert
from typer.testing import CliRunner

from cli.main import app
from flywheel.db import make_engine
from labeling.pseudo_db import pending_items, pseudo_labels
from labeling.push import push_items
from labeling.selection import Candidate, SelectionRules, rank, review_items_from_log, select

sys.path.insert(0, str(Path(__file__).parent))
from pseudo_fixtures import T0, make_log


def _c(rid: str, arm: str, d: float, c: float, minute: int = 0, duration: float = 10.0) -> Candidate:
    return Candidate(rid, arm, d, c, T0 + timedelta(minutes=minute), duration)


def test_rank_by_disagreement_and_low_confidence() -> None:
    pool = [
        _c("low", "x", 0.1, 0.95, 0),  # 0.15
        _c("unsure", "x", 0.2, 0.3, 1),  # 0.9
        _c("disagrees", "x", 0.9, 0.9, 2),  # 1.0
        _c("capped", "x", 3.0, 0.99, 3),  # DER capped at 1: 1.01
        _c("tie-old", "x", 0.5, 0.5, 4),  # 1.0, older than tie-new
        _c("tie-new", "x", 0.5, 0.5, 5),
        _c("short", "x", 1.0, 0.0, 6, duration=0.5),  # under min_duration_s: never picked
    ]
    order = [c.request_id for c in rank(pool, SelectionRules(w_arm_balance=0.0))]
    assert order == ["capped", "disagrees", "tie-old", "tie-new", "unsure", "low"]
    only_confidence = SelectionRules(w_disagreement=0.0, w_arm_balance=0.0)
    assert [c.request_id for c in rank(pool, only_confidence)][:2] == ["unsure", "tie-old"]
    assert [c.request_id for c in select(pool, SelectionRules(budget=2, w_arm_balance=0.0))] == [
        "capped",
        "disagrees",
    ]
    assert len(select(pool, SelectionRules(budget=2), budget=4)) == 4


def test_arm_balance_keeps_one_arm_from_filling_the_queue() -> None:
    pool = [
        _c("a1", "fast", 1.0, 1.0, 0),
        _c("a2", "fast", 0.95, 1.0, 1),
        _c("a3", "fast", 0.9, 1.0, 2),
        _c("b1", "hubert", 0.5, 1.0, 3),
    ]
    ids = lambda rules: [c.request_id for c in rank(pool, rules)]  # noqa: E731
    assert ids(SelectionRules(w_arm_balance=0.0)) == ["a1", "a2", "a3", "b1"]  # pure score
    # 0.5: a2 at 0.95 - 0.25 still beats b1 (0.5); a3 at 0.9 - 0.5 does not
    assert ids(SelectionRules(w_arm_balance=0.5)) == ["a1", "a2", "b1", "a3"]
    assert ids(SelectionRules(w_arm_balance=10.0)) == ["a1", "b1", "a2", "a3"]  # round robin


def test_rules_come_from_params_yaml() -> None:
    rules = SelectionRules.from_params(
        {"review": {"budget": 7, "min_duration_s": 2, "weights": {"arm_balance": 0.0, "disagreement": 2}}}
    )
    assert rules == SelectionRules(
        budget=7, w_disagreement=2.0, w_confidence=1.0, w_arm_balance=0.0, min_duration_s=2.0
    )
    assert SelectionRules.from_params().budget == 20  # the checked-in params.yaml: review.budget


def _pseudo_log(tmp_path: Path) -> tuple:
    """Three stored recordings plus one purged, with pseudo-label rows of known scores."""
    rng = np.random.default_rng(0)
    waves = [(0.05 * rng.standard_normal(16_000 * 6)).astype(np.float32) for _ in range(3)]
    log = make_log(
        tmp_path,
        [
            ("calm", waves[0], [(0.0, 5.0, "S")], "fast-cnn", 0),
            ("argued", waves[1], [(0.0, 5.0, "S")], "fast-cnn", 1),
            ("other-arm", waves[2], [(0.0, 5.0, "S")], "distilhubert", 2),
            ("purged", None, [(0.0, 5.0, "S")], "distilhubert", 3),
        ],
    )
    scores = {"calm": (0.05, 0.95), "argued": (0.8, 0.7), "other-arm": (0.3, 0.6), "purged": (1.0, 0.1)}
    engine = make_engine(log.url)
    items = {i.request_id: i for i in pending_items(engine)}
    with engine.begin() as conn:
        conn.execute(
            insert(pseudo_labels),
            [
                {
                    "request_id": log.ids[name],
                    "audio_sha256": items[log.ids[name]].audio_sha256,
                    "status": "ok",
                    "teacher_version": "teacher-abc123",
                    "created_at": T0,
                    "duration_s": 6.0,
                    "segments": [[0.5, 2.0, "SPEAKER_00"], [2.5, 5.5, "SPEAKER_01"]],
                    "confidence": conf,
                    "disagreement": der,
                }
                for name, (der, conf) in scores.items()
            ],
        )
    engine.dispose()
    return log, scores


def test_review_items_from_the_log(tmp_path: Path) -> None:
    log, scores = _pseudo_log(tmp_path)
    items = review_items_from_log(log.url, log.audio_dir, SelectionRules(w_arm_balance=0.0))
    # purged audio cannot be reviewed; the rest in score order
    assert [i.item_id for i in items] == [log.ids["argued"], log.ids["other-arm"], log.ids["calm"]]
    top = items[0]
    assert top.model_version == "teacher-abc123" and top.score == pytest.approx(scores["argued"][1])
    assert top.segments == ((0.5, 2.0, "SPEAKER_00"), (2.5, 5.5, "SPEAKER_01"))
    assert top.audio_path.exists() and top.duration == 6.0


def test_push_from_pseudo_labels_through_the_cli(label_studio, ls_settings, tmp_path: Path) -> None:
    log, scores = _pseudo_log(tmp_path)
    items = review_items_from_log(log.url, log.audio_dir, SelectionRules(w_arm_balance=0.0))
    with label_studio.client() as client:
        first = push_items(items, client, ls_settings, budget=1)
        assert first.created == [f"{log.ids['argued']}@0"]
        (task,) = [client.request("GET", f"/api/tasks/{t['id']}") for t in client.tasks(first.project_id)]
        (prediction,) = task["predictions"]
        assert prediction["model_version"] == "teacher-abc123"
        assert prediction["score"] == pytest.approx(scores["argued"][1])
        assert len(prediction["result"]) == 2  # the teacher's two turns as pre-annotations

    from test_review_queue import _cli_env

    env = _cli_env(ls_settings, FLYWHEEL_AUDIO_DIR=str(log.audio_dir), FLYWHEEL_DATABASE_URL=log.url)
    args = ["label", "push", "--from-pseudo-labels", "--budget", "1"]
    second = CliRunner().invoke(app, args, env=env)
    assert second.exit_code == 0, second.output
    assert "3 pseudo-labelled items ranked" in second.output
    assert "1 new tasks from 1 items, 1 already there" in second.output  # the next one down the list
    with label_studio.client() as client:
        keys = {t["data"]["key"] for t in client.tasks(first.project_id)}
    # argued was pushed first; other-arm (0.3 + 0.4) ranks above calm (0.05 + 0.05) next
    assert keys == {f"{log.ids['argued']}@0", f"{log.ids['other-arm']}@0"}
    neither = CliRunner().invoke(app, ["label", "push"], env=env)
    assert neither.exit_code == 1 and "exactly one of" in neither.output
