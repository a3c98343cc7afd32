"""The prediction log, off the request path: a queue, a writer thread, batched inserts, a spool.

``submit()`` only puts the record on a queue (microseconds). A background thread drains it in
batches, stores the request audio in the content-addressed store, and inserts the rows in one
transaction. When the database is unreachable, batches are appended to a local JSONL spool
(fsync'ed) and replayed, oldest first, as soon as the database answers again; inserts skip rows that
already exist, so a replay after a partial failure never duplicates. Spools of dead processes are
adopted, so a crash while the database was down loses nothing either.

A process killed with records still in its queue (SIGKILL, OOM) loses none either: ``submit()`` first
appends the record to this process's journal (one ``write(2)``, no fsync: the kernel keeps it when the
process dies, not when the machine does), and a journal file is deleted once every record in it is
in the database or the spool. Journals of dead processes are replayed like their spools (rows already
written are skipped by request id); only their audio, not yet stored, is missing.

Memory stays bounded when the database stalls (a hung server, a long lock): once ``max_backlog``
records wait in the queue, ``submit()`` itself stores the audio and appends the record to the spool
(about a millisecond of disk I/O: backpressure instead of an ever-growing queue of audio buffers).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import re
import socket
import threading
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Engine, Table, insert

from flywheel.audio_store import AudioStore
from flywheel.db.engine import make_engine
from flywheel.db.models import Prediction
from flywheel.processes import pid_alive

log = logging.getLogger(__name__)
# record, audio, journal generations (of the record, of its request's start line)
_Item = tuple["PredictionRecord", "np.ndarray | None", "tuple[int | None, int | None] | None"]
SPOOL_SUFFIX = ".jsonl"
REPLAY_SUFFIX = ".replay"  # <host>-<pid>.jsonl.replay: a spool moved aside while it is replayed
JOURNAL_MARK = ".journal-"  # <host>-<pid>.jsonl.journal-<n>: records submitted, maybe not yet written
START_PREFIX = "start "  # a journal line of a request that began (its row if it never finishes)
_SPOOL_NAME = re.compile(r"^(?P<host>.+)-(?P<pid>\d+)\.jsonl(?:\.replay|\.journal-\d+)?$")


def spool_owner(path: Path) -> tuple[str, int] | None:
    """``(host, pid)`` of a spool file (``<host>-<pid>.jsonl``, the same plus ``.replay``, or a
    journal ``<host>-<pid>.jsonl.journal-<n>``)."""
    m = _SPOOL_NAME.match(path.name)
    return (m["host"], int(m["pid"])) if m else None


def is_journal(path: Path) -> bool:
    """Whether ``path`` is a journal file (replayed only once its process is dead)."""
    return JOURNAL_MARK in path.name


@dataclass
class PredictionRecord:
    """One request as it goes into the ``predictions`` table."""

    request_id: str
    status: str  # ok | error
    http_status: int
    latency_ms: float
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    client_id: str | None = None
    arm: str | None = None
    model_name: str | None = None
    model_version: str | None = None
    audio_duration_s: float | None = None
    audio_sha256: str | None = None
    segments: list[dict[str, Any]] | None = None
    num_speakers: int | None = None
    error: str | None = None

    def __post_init__(self) -> None:
        # Column widths: a long header must not turn into a row the database refuses forever.
        if self.client_id is not None:
            self.client_id = self.client_id[:200]
        if self.model_version is not None:
            self.model_version = self.model_version[:128]

    def to_json(self) -> str:
        """One spool line."""
        d = asdict(self)
        d["created_at"] = self.created_at.isoformat()
        return json.dumps(d, separators=(",", ":"))

    @classmethod
    def from_json(cls, line: str) -> PredictionRecord:
        """Parse a spool line."""
        d = json.loads(line)
        d["created_at"] = datetime.fromisoformat(d["created_at"])
        return cls(**d)


def _insert_ignoring_duplicates(engine: Engine, table: Table, rows: list[dict[str, Any]]) -> None:
    dialect = engine.dialect.name
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    elif dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        dialect_insert = None
    if dialect_insert is not None:
        stmt = dialect_insert(table).on_conflict_do_nothing(index_elements=["request_id"])
    else:
        stmt = insert(table)
    with engine.begin() as conn:
        conn.execute(stmt, rows)


def _replay_order(path: Path) -> tuple[str, bool]:
    """Sort key: by owner, a file being replayed before the live spool it was moved from."""
    return path.name.removesuffix(REPLAY_SUFFIX), not path.name.endswith(REPLAY_SUFFIX)


class Spool:
    """Append-only JSONL files of records that could not be written yet (one file per process), and
    the journals (:class:`Journal`) of dead processes, replayed the same way."""

    def __init__(self, directory: str | Path):
        self.dir = Path(directory)
        self.host = socket.gethostname()
        self.path = self.dir / f"{self.host}-{os.getpid()}{SPOOL_SUFFIX}"
        self._lock = threading.Lock()  # the writer thread and overflowing submit() both append

    def append(self, records: Iterable[PredictionRecord]) -> int:
        """Append records durably; returns how many."""
        lines = [r.to_json() + "\n" for r in records]
        if not lines:
            return 0
        with self._lock:
            self.dir.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.writelines(lines)
                fh.flush()
                os.fsync(fh.fileno())
        return len(lines)

    @property
    def replay_path(self) -> Path:
        """Where this process's spool is moved while it is being replayed."""
        return self.path.with_name(self.path.name + REPLAY_SUFFIX)

    def take_own(self) -> Path | None:
        """Move this process's spool aside for replay and return that file (None: nothing to replay).

        The rename is atomic and new appends start a fresh spool file, so nothing is lost whatever
        happens next: the caller deletes the returned file only after the rows are committed
        (write, commit, then delete). A replay file left by an earlier failed attempt is returned
        first, before the live spool is moved again.
        """
        with self._lock:
            if self.replay_path.exists():
                return self.replay_path
            if not self.path.exists() or self.path.stat().st_size == 0:
                return None
            os.replace(self.path, self.replay_path)
            return self.replay_path

    def files(self) -> list[Path]:
        """This process's spool files plus those of dead processes on this host (adopted), oldest
        first: a file being replayed comes before the live spool of the same process."""
        if not self.dir.exists():
            return []
        out = []
        for path in self.dir.iterdir():
            owner = spool_owner(path)
            if owner is None:
                continue
            host, pid = owner
            mine = host == self.host and pid == os.getpid()
            if mine and is_journal(path):  # our own journal: its records are still on their way
                continue
            orphan = host == self.host and not mine and not pid_alive(pid)
            try:
                if (mine or orphan) and path.stat().st_size > 0:
                    out.append(path)
            except FileNotFoundError:  # replayed meanwhile by another process
                continue
        return sorted(out, key=_replay_order)

    def pending(self) -> bool:
        """Whether anything waits to be replayed."""
        return bool(self.files())

    @staticmethod
    def read(*paths: Path) -> list[PredictionRecord]:
        """Records of spool or journal files, read together (a torn last line from a crash is
        skipped). A journal's start line (:meth:`Journal.begin`) stands for its request only when
        no finished record of that request is among them: the process died while handling it."""
        finished: dict[str, PredictionRecord] = {}
        started: dict[str, PredictionRecord] = {}
        for path in paths:
            for line in path.read_text(encoding="utf-8").splitlines():
                if not line.strip():
                    continue
                try:
                    if line.startswith(START_PREFIX):
                        rec = PredictionRecord.from_json(line[len(START_PREFIX) :])
                        started.setdefault(rec.request_id, rec)
                    else:
                        rec = PredictionRecord.from_json(line)
                        finished.setdefault(rec.request_id, rec)
                except (json.JSONDecodeError, TypeError, KeyError):
                    log.warning("skipping a malformed spool line in %s", path)
        return list(finished.values()) + [r for i, r in started.items() if i not in finished]


class Journal:
    """This process's record of what was submitted and is not yet durable (database or spool).

    Records go to generation files ``<host>-<pid>.jsonl.journal-<n>`` (a new one every
    ``rotate_records`` records); a generation is deleted once all its records are handled and it is
    no longer the current one. Appends are single unbuffered ``write(2)`` calls on an ``O_APPEND``
    file: they survive the process (SIGKILL) but are not fsync'ed (they do not survive the machine).
    A failing journal (disk full) is logged once and never fails a request.
    """

    def __init__(self, directory: str | Path, rotate_records: int = 1000):
        self.dir = Path(directory)
        self.prefix = f"{socket.gethostname()}-{os.getpid()}{SPOOL_SUFFIX}{JOURNAL_MARK}"
        self.rotate_records = max(1, rotate_records)
        self.gen = 0
        self.outstanding: dict[int, int] = {}
        self._fd: int | None = None
        self._count = 0
        self._lock = threading.Lock()
        self._warned = False

    def path(self, gen: int) -> Path:
        """The file of generation ``gen``."""
        return self.dir / f"{self.prefix}{gen}"

    def _delete_if_done(self, gen: int) -> None:
        """Delete generation ``gen`` when none of its records is pending (the caller holds the lock)."""
        if not self.outstanding.get(gen):
            self.outstanding.pop(gen, None)
            self.path(gen).unlink(missing_ok=True)

    def _open_next(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            self._delete_if_done(self.gen)
        self.gen += 1
        self.dir.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path(self.gen), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._count = 0

    def append(self, record: PredictionRecord, start: bool = False) -> int | None:
        """Journal one record (``start``: as the row of a request that has only begun); returns its
        generation (None when the journal could not be written)."""
        line = ((START_PREFIX if start else "") + record.to_json() + "\n").encode()
        with self._lock:
            try:
                if self._fd is None or self._count >= self.rotate_records:
                    self._open_next()
                assert self._fd is not None
                os.write(self._fd, line)
            except OSError as err:
                if not self._warned:
                    log.error("prediction journal not writable (%s): a crash could lose queued rows", err)
                    self._warned = True
                return None
            self._count += 1
            self.outstanding[self.gen] = self.outstanding.get(self.gen, 0) + 1
            return self.gen

    def done(self, gens: Iterable[int | None]) -> None:
        """Records of these generations are durable; delete generations left with none pending."""
        with self._lock:
            for gen in gens:
                if gen is not None and gen in self.outstanding:
                    self.outstanding[gen] -= 1
            for gen in [g for g in self.outstanding if g != self.gen]:
                self._delete_if_done(gen)

    def close(self) -> None:
        """Close the current file; delete it when nothing in it is pending."""
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            self._delete_if_done(self.gen)  # done() already deleted the older generations it could


class PredictionLogger:
    """Background, batched, loss-free writer of :class:`PredictionRecord` rows."""

    def __init__(
        self,
        database_url: str,
        spool_dir: str | Path,
        audio_store: AudioStore | None = None,
        batch_size: int = 256,
        flush_interval_s: float = 0.5,
        retry_s: float = 2.0,
        auto_migrate: bool = True,
        connect_timeout_s: float = 5.0,
        max_backlog: int = 1024,
        journal: bool = True,
    ):
        self.database_url = database_url
        self.spool = Spool(spool_dir)
        self.journal = Journal(spool_dir) if journal else None
        self._started: dict[str, int] = {}  # request id -> journal generation of its start line
        self.audio_store = audio_store
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.retry_s = retry_s
        self.auto_migrate = auto_migrate
        self.connect_timeout_s = connect_timeout_s
        self.max_backlog = max_backlog
        self.overflowed = 0
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._engine: Engine | None = None
        self._migrated = not auto_migrate
        self._db_ok = True
        self._last_failure = 0.0
        self._spool_pending = True  # unknown at start: scan once (orphans of dead processes)
        self._last_scan = 0.0
        self._lock = threading.Condition()
        self._submitted = 0
        self._handled = 0
        self.written = 0
        self.spooled = 0
        self.replayed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    # -- request path ---------------------------------------------------------------------------
    def submit(self, record: PredictionRecord, samples: np.ndarray | None = None) -> None:
        """Queue a record (and the audio to store); no I/O unless ``max_backlog`` records are waiting,
        in which case the record goes straight to the spool (bounded memory, nothing lost)."""
        started = self._started.pop(record.request_id, None)
        if self._queue.qsize() >= self.max_backlog:
            self._overflow(record, samples)
            if self.journal is not None:
                self.journal.done([started])
            return
        gen = self.journal.append(record) if self.journal is not None else None
        with self._lock:
            self._submitted += 1
        self._queue.put((record, samples, (gen, started)))

    def begin(self, record: PredictionRecord) -> None:
        """A request has begun: journal ``record`` as its row in case this process dies before
        :meth:`submit` (``record`` says so: status ``error``, HTTP 500, which is what the client of a
        killed ingress gets from the proxy). Replays use it only when no finished record exists."""
        if self.journal is None:
            return
        gen = self.journal.append(record, start=True)
        if gen is not None:
            self._started[record.request_id] = gen

    def _overflow(self, record: PredictionRecord, samples: np.ndarray | None) -> None:
        self._store_audio([(record, samples, None)])
        self.spool.append([record])
        with self._lock:
            self.overflowed += 1
            self.spooled += 1
            self._spool_pending = True

    # -- control --------------------------------------------------------------------------------
    def flush(self, timeout_s: float = 30.0, replayed: bool = False) -> bool:
        """Wait until every submitted record is in the database or the spool (and, with
        ``replayed``, until the spool is empty). Returns False on timeout."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while self._handled < self._submitted or (replayed and self.spool.pending()):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(min(left, 0.1))
        return True

    def close(self, timeout_s: float = 30.0) -> None:
        """Write what is queued (database or spool), then stop the thread."""
        self._stop.set()
        self._queue.put(None)
        self._thread.join(timeout_s)
        if self.journal is not None and not self._thread.is_alive():
            self.journal.close()
        if self._engine is not None:
            self._engine.dispose()

    def stats(self) -> dict[str, Any]:
        """Counters for health checks and tests."""
        return {
            "submitted": self._submitted,
            "written": self.written,
            "spooled": self.spooled,
            "replayed": self.replayed,
            "overflowed": self.overflowed,
            "backlog": self._queue.qsize(),
            "database_ok": self._db_ok,
            "spool_pending": self.spool.pending(),
        }

    # -- writer thread --------------------------------------------------------------------------
    def _drain(self) -> list[_Item]:
        """Up to ``batch_size`` items, collected for at most ``flush_interval_s`` after the first one
        (few, large transactions: the writer thread costs the request path as little CPU as possible)."""
        items: list[_Item] = []
        try:
            first = self._queue.get(timeout=self.flush_interval_s)
        except queue.Empty:
            return items
        if first is None:
            return items
        items.append(first)
        deadline = time.monotonic() + self.flush_interval_s
        while len(items) < self.batch_size:
            left = deadline - time.monotonic()
            try:
                item = self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:  # close(): write what we have now
                break
            items.append(item)
        return items

    def _store_audio(self, items: list[_Item]) -> list[PredictionRecord]:
        records = []
        for record, samples, _ in items:
            if samples is not None and self.audio_store is not None and record.audio_sha256 is None:
                try:
                    record.audio_sha256 = self.audio_store.put_samples(samples)
                except OSError as err:
                    log.error("audio store write failed: %s", err)
            records.append(record)
        return records

    def _engine_ready(self) -> Engine:
        if self._engine is None:
            self._engine = make_engine(self.database_url, connect_timeout_s=self.connect_timeout_s)
        if not self._migrated:
            from flywheel.db.migrate import upgrade

            upgrade(self.database_url)
            self._migrated = True
        return self._engine

    def _write(self, records: list[PredictionRecord]) -> None:
        engine = self._engine_ready()
        rows = [asdict(r) for r in records]
        _insert_ignoring_duplicates(engine, Prediction.__table__, rows)

    def _pending(self) -> bool:
        """Cached view of the spool: rescanned (for orphans) at most every ``retry_s``."""
        now = time.monotonic()
        if not self._spool_pending and now - self._last_scan >= self.retry_s:
            self._last_scan = now
            self._spool_pending = self.spool.pending()
        return self._spool_pending

    def _try_replay(self) -> bool:
        """Replay every spool file we own or adopted; True when nothing is left.

        Order per file: read, write and commit, then delete. A crash (or a database failure) before
        the delete leaves the file to be replayed again; rows already committed are skipped by
        request id, so that costs duplicates of nothing.
        """
        files = self.spool.files()
        journals: dict[tuple[str, int] | None, list[Path]] = {}
        for path in files:
            if is_journal(path):  # a dead process's: all its generations at once, after its spool
                journals.setdefault(spool_owner(path), []).append(path)
                continue
            if path == self.spool.path:
                taken = self.spool.take_own()  # renamed aside: new appends go to a fresh file
                if taken is None:
                    continue
                path = taken
            self._replay_files([path])
        for paths in journals.values():
            self._replay_files(paths)
        self._spool_pending = False
        return True

    def _replay_files(self, paths: list[Path]) -> None:
        """Write the records of ``paths`` (read together), then delete them."""
        try:
            records = Spool.read(*paths)
        except FileNotFoundError:  # an orphan another process replayed meanwhile
            return
        for i in range(0, len(records), 1000):
            self._write(records[i : i + 1000])
        for path in paths:
            path.unlink(missing_ok=True)  # only now: the rows are committed
        self.replayed += len(records)
        names = ", ".join(p.name for p in paths)
        log.info("replayed %d spooled predictions from %s", len(records), names)

    def _handle(self, records: list[PredictionRecord]) -> None:
        now = time.monotonic()
        may_try = self._db_ok or now - self._last_failure >= self.retry_s
        if may_try:
            try:
                if self._pending():
                    self._try_replay()
                if records:
                    self._write(records)
                    self.written += len(records)
                self._db_ok = True
                return
            except Exception as err:  # any database failure: spool and retry later
                if self._db_ok:
                    log.warning("prediction database unavailable, spooling: %s", err)
                self._db_ok = False
                self._last_failure = time.monotonic()
        self.spooled += self.spool.append(records)
        self._spool_pending = self._spool_pending or bool(records)

    def _run(self) -> None:
        while True:
            items = self._drain()
            records = self._store_audio(items)
            durable = False
            try:
                if records or self._pending():
                    self._handle(records)
                durable = True
            except Exception:  # never let the writer die
                log.exception("prediction log writer error; spooling the batch")
                with contextlib.suppress(Exception):
                    self.spooled += self.spool.append(records)
                    self._spool_pending = True
                    durable = True
            if durable and self.journal is not None:  # else the journal keeps them for a replay
                self.journal.done(gen for _, _, gens in items for gen in (gens or ()))
            with self._lock:
                self._handled += len(items)
                self._lock.notify_all()
            if self._stop.is_set() and self._queue.empty():
                break
