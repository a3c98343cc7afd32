"""Benchmark helpers: the peak memory of a fresh process is its own, not its parent's."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from benchmarks.common import peak_rss_mb

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
