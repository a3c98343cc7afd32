"""Prediction log: batched background writes, audio store, spool while the database is down, replay.

The database outage is real: SQLite held under an exclusive lock by another connection, and a real
PostgreSQL server (Debian's binaries, on a loopback port in a temp dir) killed mid-load and restarted.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select

from flywheel.audio_store import AudioStore
from flywheel.db import Prediction, make_engine
from flywheel.processes import free_port
from serving.prediction_log import PredictionLogger, PredictionRecord, Spool


def record(i: int = 0, **kw: object) -> PredictionRecord:
    base = dict(
        request_id=uuid.uuid4().hex,
        status="ok",
        http_status=200,
        latency_ms=12.5,
        client_id=f"client-{i}",
        arm="fast-cnn",
        model_name="fast-cnn",
        model_version="3",
        audio_duration_s=1.0,
        segments=[{"start": 0.0, "end": 1.0, "speaker": "SPEAKER_00"}],
        num_speakers=1,
    )
    base.update(kw)
    return PredictionRecord(**base)  # type: ignore[arg-type]


def count_rows(url: str) -> int:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(Prediction)).scalar_one())
    finally:
        engine.dispose()


def test_rows_and_audio_are_written_in_the_background(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    store = AudioStore(tmp_path / "audio")
    logger = PredictionLogger(url, tmp_path / "spool", store, flush_interval_s=0.05)
    samples = (np.random.default_rng(0).standard_normal(16000) * 0.1).astype(np.float32)
    t0 = time.perf_counter()
    for i in range(50):
        logger.submit(record(i), samples if i % 10 == 0 else None)
    assert (time.perf_counter() - t0) / 50 < 0.001  # submit never waits for I/O
    assert logger.flush(30)
    logger.close()
    assert count_rows(url) == 50
    engine = make_engine(url)
    with engine.connect() as conn:
        shas = {r[0] for r in conn.execute(select(Prediction.audio_sha256)) if r[0]}
    engine.dispose()
    assert len(shas) == 1 and store.path_for(shas.pop()).exists()


def test_locked_sqlite_spools_then_replays(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    logger = PredictionLogger(
        url, tmp_path / "spool", flush_interval_s=0.05, retry_s=0.3, connect_timeout_s=0.2
    )
    logger.submit(record())
    assert logger.flush(30)  # schema created, first row in
    lock = sqlite3.connect(tmp_path / "p.db", timeout=5)
    lock.execute("BEGIN EXCLUSIVE")  # the database is now unwritable for everyone else
    for i in range(30):
        logger.submit(record(i))
    assert logger.flush(30)
    assert logger.stats()["spooled"] == 30 and not logger.stats()["database_ok"]
    assert len(logger.spool.path.read_text().splitlines()) == 30
    lock.rollback()
    lock.close()
    assert logger.flush(30, replayed=True)
    logger.close()
    assert count_rows(url) == 31
    assert not logger.spool.pending() and not logger.spool.replay_path.exists()


def test_orphan_spool_of_a_dead_process_is_adopted_without_duplicates(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    spool_dir = tmp_path / "spool"
    proc = subprocess.Popen(["true"])
    proc.wait()
    orphan = Spool(spool_dir)
    orphan.path = spool_dir / f"{orphan.host}-{proc.pid}.jsonl"
    records = [record(i) for i in range(5)]
    orphan.append(records + records[:2])  # a replay cut short earlier: duplicates on disk
    logger = PredictionLogger(url, spool_dir, flush_interval_s=0.05, retry_s=0.1)
    assert logger.flush(30, replayed=True)
    logger.close()
    assert count_rows(url) == 5
    assert not orphan.path.exists()


CRASHING_REPLAY = """
import json, os, signal, sys
from serving.prediction_log import PredictionLogger, PredictionRecord, Spool

url, spool_dir, records_file, when = sys.argv[1:5]
records = [PredictionRecord.from_json(line) for line in open(records_file)]
Spool(spool_dir).append(records)  # this process's own spool, waiting for the database


class Crashing(PredictionLogger):
    def _write(self, rows):
        if when == "before-commit":
            os.kill(os.getpid(), signal.SIGKILL)
        super()._write(rows)
        if when == "after-commit":
            os.kill(os.getpid(), signal.SIGKILL)


Crashing(url, spool_dir, flush_interval_s=0.05, retry_s=0.1).flush(30, replayed=True)
sys.exit(3)  # not reached: the replay kills the process
"""


@pytest.mark.parametrize("when", ["before-commit", "after-commit"])
def test_a_crash_during_replay_loses_no_spooled_record(tmp_path: Path, when: str) -> None:
    """The process replaying its spool is SIGKILLed between reading it and committing the rows, or
    between the commit and deleting the file: the next process adopts what is left, no loss, no
    duplicates."""
    import sys

    url = f"sqlite:///{tmp_path / 'p.db'}"
    spool_dir = tmp_path / "spool"
    records = [record(i) for i in range(40)]
    records_file = tmp_path / "records.jsonl"
    records_file.write_text("".join(r.to_json() + "\n" for r in records))
    code = [sys.executable, "-c", CRASHING_REPLAY, url, str(spool_dir), str(records_file), when]
    proc = subprocess.run(code, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == -9, proc.stderr[-2000:]  # killed mid-replay, as intended
    left = [p for p in spool_dir.iterdir() if p.stat().st_size > 0]
    assert left and all(p.name.endswith(".jsonl.replay") for p in left)  # moved aside, not emptied
    assert sum(len(Spool.read(p)) for p in left) == 40
    logger = PredictionLogger(url, spool_dir, flush_interval_s=0.05, retry_s=0.1)
    assert logger.flush(30, replayed=True)
    logger.close()
    engine = make_engine(url)
    with engine.connect() as conn:
        ids = sorted(r[0] for r in conn.execute(select(Prediction.request_id)))
    engine.dispose()
    assert ids == sorted(r.request_id for r in records)
    assert not any(p.stat().st_size for p in spool_dir.iterdir())


# -- a real PostgreSQL, killed mid-load ----------------------------------------------------------------


def _pg_bin() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(os.path.realpath(found)).parent
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    return candidates[-1].parent if candidates else None


def _as_postgres(cmd: list[str]) -> list[str]:
    if os.geteuid() == 0:  # the server refuses to run as root
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


class Postgres:
    """A throwaway PostgreSQL cluster on 127.0.0.1 (initdb + pg_ctl)."""

    def __init__(self, root: Path):
        self.bin = _pg_bin()
        self.data = root / "pg" / "data"
        self.sock = root / "pg" / "sock"
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        subprocess.run(_as_postgres([str(self.bin / args[0]), *args[1:]]), check=True, capture_output=True)

    def init(self) -> None:
        self.sock.mkdir(parents=True)
        if os.geteuid() == 0:
            shutil.chown(self.sock.parent, "postgres")
            shutil.chown(self.sock, "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")

    def start(self) -> None:
        opts = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.sock} -c fsync=off"
        log = str(self.data / "log")
        self._run("pg_ctl", "-D", str(self.data), "-o", opts, "-w", "-t", "30", "-l", log, "start")

    def kill(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")


@pytest.fixture
def postgres() -> Iterator[Postgres]:
    if _pg_bin() is None:
        pytest.skip("PostgreSQL server binaries not installed (apt-get install postgresql)")
    root = Path(tempfile.mkdtemp(prefix="flywheel-pg-"))  # pytest's tmp is private to root
    root.chmod(0o755)
    pg = Postgres(root)
    try:
        pg.init()
        pg.start()
        yield pg
    finally:
        subprocess.run(
            _as_postgres([str(pg.bin / "pg_ctl"), "-D", str(pg.data), "-m", "immediate", "stop"]),
            capture_output=True,
            check=False,
        )
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow
def test_postgres_killed_mid_load_loses_nothing(postgres: Postgres, tmp_path: Path) -> None:
    logger = PredictionLogger(
        postgres.url, tmp_path / "spool", flush_interval_s=0.02, retry_s=0.5, connect_timeout_s=1
    )
    total, sent = 600, 0
    killed = restarted = False
    stop = threading.Event()

    def load() -> None:
        nonlocal sent
        for i in range(total):
            logger.submit(record(i))
            sent += 1
            time.sleep(0.005)
        stop.set()

    t = threading.Thread(target=load)
    t.start()
    while not stop.is_set():
        if not killed and sent >= 150:
            postgres.kill()
            killed = True
        elif killed and not restarted and sent >= 400:
            postgres.start()
            restarted = True
        time.sleep(0.01)
    t.join()
    assert killed and restarted
    assert logger.flush(60, replayed=True), logger.stats()
    stats = logger.stats()
    logger.close()
    assert stats["spooled"] > 0, "the outage was not noticed"
    assert count_rows(postgres.url) == total


def test_database_stall_keeps_the_queue_bounded_and_loses_nothing(tmp_path: Path) -> None:
    """With the database locked, a burst beyond ``max_backlog`` goes to the spool from submit()."""
    url = f"sqlite:///{tmp_path / 'p.db'}"
    store = AudioStore(tmp_path / "audio")
    logger = PredictionLogger(
        url,
        tmp_path / "spool",
        store,
        flush_interval_s=0.05,
        retry_s=0.3,
        connect_timeout_s=5.0,
        max_backlog=8,
        batch_size=1,
    )
    logger.submit(record())
    assert logger.flush(30)
    lock = sqlite3.connect(tmp_path / "p.db", timeout=5)
    lock.execute("BEGIN EXCLUSIVE")
    samples = (np.random.default_rng(1).standard_normal(16000) * 0.1).astype(np.float32)
    # The writer takes this one and blocks inside its write (sqlite busy timeout: 5 s), so the burst
    # below meets a writer that drains nothing: without this the writer could take the whole burst
    # into one batch before the queue reached max_backlog, on a fast enough machine.
    logger.submit(record(-1), samples)
    deadline = time.monotonic() + 10
    while logger.stats()["backlog"] and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)
    peak = 0
    for i in range(200):
        logger.submit(record(i), samples)
        peak = max(peak, logger.stats()["backlog"])
    assert peak <= 8
    assert logger.stats()["overflowed"] > 0
    lock.rollback()
    lock.close()
    assert logger.flush(60, replayed=True)
    logger.close()
    assert count_rows(url) == 202
    engine = make_engine(url)
    with engine.connect() as conn:
        missing = conn.execute(
            select(func.count()).select_from(Prediction).where(Prediction.audio_sha256.is_(None))
        ).scalar_one()
    engine.dispose()
    assert missing == 1  # only the first record had no audio


KILLED_WITH_A_QUEUE = """
import sys, time
from serving.prediction_log import PredictionLogger, PredictionRecord

url, spool_dir, records_file = sys.argv[1:4]
# the writer collects for a minute before it writes: every record is still queued when we die
logger = PredictionLogger(url, spool_dir, flush_interval_s=60, batch_size=10_000)
for line in open(records_file):
    logger.submit(PredictionRecord.from_json(line))
for i in range(3):  # requests still being handled when the process dies: begun, never submitted
    logger.begin(PredictionRecord(f"in-flight-{i}", "error", 500, 0.0, error="500 the ingress process died"))
print("submitted", flush=True)
time.sleep(120)
"""


def test_a_process_killed_with_queued_records_loses_none_of_them(tmp_path: Path) -> None:
    """SIGKILL while 25 records wait in the writer's queue and 3 requests are still being handled:
    all are in the process's journal, and the next logger on the same spool folder writes the 25
    and one error row for each unfinished request (and deletes the journal)."""
    import sys

    url = f"sqlite:///{tmp_path / 'p.db'}"
    spool_dir = tmp_path / "spool"
    records = [record(i) for i in range(25)]
    records_file = tmp_path / "records.jsonl"
    records_file.write_text("".join(r.to_json() + "\n" for r in records))
    code = [sys.executable, "-c", KILLED_WITH_A_QUEUE, url, str(spool_dir), str(records_file)]
    proc = subprocess.Popen(code, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "submitted"
    finally:
        proc.kill()
        proc.wait(30)
    journals = [p for p in spool_dir.iterdir() if ".journal-" in p.name]
    assert len(journals) == 1 and len(Spool.read(journals[0])) == 28
    logger = PredictionLogger(url, spool_dir, flush_interval_s=0.05, retry_s=0.1)
    assert logger.flush(30, replayed=True)
    logger.close()
    engine = make_engine(url)
    with engine.connect() as conn:
        rows = {
            r[0]: r[1:]
            for r in conn.execute(select(Prediction.request_id, Prediction.status, Prediction.http_status))
        }
    engine.dispose()
    assert sorted(rows) == sorted([r.request_id for r in records] + [f"in-flight-{i}" for i in range(3)])
    assert all(rows[f"in-flight-{i}"] == ("error", 500) for i in range(3))
    assert all(rows[r.request_id] == ("ok", 200) for r in records)
    assert not any(".journal-" in p.name for p in spool_dir.iterdir())


def test_a_finished_record_wins_over_its_start_line_whatever_file_it_is_in(tmp_path: Path) -> None:
    first, second = tmp_path / "a.jsonl.journal-9", tmp_path / "a.jsonl.journal-10"
    done = record(1)
    begun = PredictionRecord(done.request_id, "error", 500, 0.0, error="died")
    only_begun = PredictionRecord("never-finished", "error", 500, 0.0, error="died")
    first.write_text(f"start {begun.to_json()}\nstart {only_begun.to_json()}\n")
    second.write_text(done.to_json() + "\n")
    got = {r.request_id: r for r in Spool.read(first, second)}
    assert set(got) == {done.request_id, "never-finished"}
    assert got[done.request_id].status == "ok" and got["never-finished"].http_status == 500


def test_begun_and_finished_requests_leave_one_row_each_and_no_journal(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    logger = PredictionLogger(url, tmp_path / "spool", flush_interval_s=0.05)
    records = [record(i) for i in range(6)]
    for r in records:
        logger.begin(PredictionRecord(r.request_id, "error", 500, 0.0, error="died"))
        logger.submit(r)
    assert logger.flush(30)
    assert not logger._started
    logger.close()
    engine = make_engine(url)
    with engine.connect() as conn:
        statuses = [r[0] for r in conn.execute(select(Prediction.status))]
    engine.dispose()
    assert statuses == ["ok"] * 6
    assert not any(".journal-" in p.name for p in (tmp_path / "spool").iterdir())


def test_the_journal_keeps_only_what_is_not_yet_written(tmp_path: Path) -> None:
    """In normal running the journal rotates and its written generations disappear; a live
    process's journal is never replayed by itself (it is not an orphan); close() leaves none."""
    from serving.prediction_log import Journal

    url = f"sqlite:///{tmp_path / 'p.db'}"
    spool_dir = tmp_path / "spool"
    logger = PredictionLogger(url, spool_dir, flush_interval_s=0.05)
    assert logger.journal is not None
    logger.journal = Journal(spool_dir, rotate_records=3)
    for i in range(10):
        logger.submit(record(i))
    assert logger.flush(30)
    journals = sorted(p.name for p in spool_dir.iterdir() if ".journal-" in p.name)
    assert journals == [logger.journal.path(logger.journal.gen).name]  # only the current one
    assert logger.journal.gen == 4 and not logger.spool.files()  # 10 records in files of 3
    logger.close()
    assert count_rows(url) == 10
    assert not any(".journal-" in p.name for p in spool_dir.iterdir())
