"""The reliability benchmark's bookkeeping (benchmarks/reliability.py): what counts as failed, and
the table it prints (the phases themselves need a live Serve app: run the benchmark)."""

from __future__ import annotations

from benchmarks.reliability import SHED, Load, table


def test_a_shed_request_is_counted_apart_from_failures() -> None:
    load = Load(["http://127.0.0.1:1"], b"", rate=1.0, prefix="t-")
    load.results = [
        (0.1, 20.0, 200, ""),
        (0.2, 21.0, 503, SHED),  # the overload policy: 503 + Retry-After
        (0.3, 5.0, 500, "internal error"),
        (0.4, 60000.0, 0, "ReadTimeout"),
    ]
    out = load.summary()
    assert (out["sent"], out["answered"], out["ok"], out["failed"], out["shed"]) == (4, 3, 1, 2, 1)
    assert out["failure_times_s"] == [0.3, 0.4] and out["failed_share"] == 0.5


def test_the_table_names_kills_recoveries_and_the_versions_served() -> None:
    base = {"sent": 100, "failed": 0, "shed": 0, "failed_share": 0.0, "rows_lost": 0}
    base.update(p50_ms=20, p99_ms=90)
    report = {
        "faults": {
            "replica_kill": {
                **base,
                "shed": 2,
                "kills": 3,
                "replaced_each_s": [9.5, 10.1, 8.7],
                "replaced_s": 10.1,
                "last_failure_after_kill_s": 0.0,
            },
            "mlflow_stop": {**base, "champion_version": "1", "fast_cnn_versions": ["1"]},
            "postgres_stop": {"skipped": "PostgreSQL server binaries not installed"},
        }
    }
    text = table(report)
    assert "3 kills, replaced in 9.5 s, 10.1 s, 8.7 s" in text and "0 (+2 shed)" in text
    assert "champion v1; fast-cnn answered with v1" in text
    assert "| postgres_stop | skipped: PostgreSQL server binaries not installed" in text
