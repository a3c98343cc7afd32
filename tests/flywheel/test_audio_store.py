"""Content-addressed audio store: naming by SHA-256, write-once, retention purge."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from flywheel.audio_store import AudioStore


def test_samples_stored_once_under_their_hash(tmp_path: Path) -> None:
    store = AudioStore(tmp_path / "audio")
    x = (np.sin(np.arange(16000) / 10) * 0.3).astype(np.float32)
    sha = store.put_samples(x)
    path = store.path_for(sha)
    assert path == tmp_path / "audio" / sha[:2] / f"{sha}.wav"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == sha
    data, sr = sf.read(path)
    assert sr == 16000 and len(data) == 16000
    assert store.put_samples(x) == sha  # same content: same file
    assert len(list((tmp_path / "audio").rglob("*.wav"))) == 1
    assert not list((tmp_path / "audio").rglob(".tmp-*"))


def test_purge_removes_only_expired_files(tmp_path: Path) -> None:
    store = AudioStore(tmp_path, retention_days=7)
    old = store.put_bytes(b"old audio")
    new = store.put_bytes(b"new audio")
    ten_days_ago = time.time() - 10 * 86400
    os.utime(store.path_for(old), (ten_days_ago, ten_days_ago))
    assert store.purge() == 1
    assert not store.path_for(old).exists() and store.path_for(new).exists()
    assert not store.path_for(old).parent.exists() or store.path_for(old).parent == store.path_for(new).parent
    assert store.purge(older_than_days=0, now=time.time() + 1) == 1


def test_bad_hash_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        AudioStore(tmp_path).path_for("../../etc/passwd")
