"""Worker loop of the peer systems, run in the teacher environment (``.venv-teacher``).

Protocol on stdin/stdout (one file at a time): the parent writes a JSON header line
``{"uri", "num_samples", "num_speakers"}`` followed by ``num_samples`` float32 samples (16 kHz mono);
the worker answers one JSON line, ``{"segments": [[start, end, label], ...]}`` or ``{"error": ...}``.
The first line it writes is ``{"status": "ready"}`` once the peer is loaded. Anything the libraries
print goes to stderr (the parent's log file), never into the protocol.

    .venv-teacher/bin/python -m flywheel.systems.peer_worker senko --options '{}'
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from collections.abc import Callable
from typing import Any, BinaryIO

import numpy as np
import typer

# (waveform, num_speakers) -> [(start, end, label), ...]
Peer = Callable[[np.ndarray, "int | None"], list[tuple[float, float, str]]]


def load_peer(name: str, options: dict[str, Any]) -> Peer:
    """Build the named peer (imports its library here, inside the teacher environment)."""
    if name == "senko":
        from flywheel.systems.senko_peer import SenkoPeer

        return SenkoPeer(**options)
    if name == "pyannote":
        from flywheel.systems.pyannote_peer import PyannotePeer

        return PyannotePeer(**options)
    raise ValueError(f"unknown peer {name!r}; choose senko or pyannote")


def serve(peer: Peer, requests: BinaryIO, replies: BinaryIO) -> None:
    """Answer requests until stdin closes."""
    while True:
        line = requests.readline()
        if not line:
            return
        header = json.loads(line)
        n = int(header["num_samples"])
        samples = np.frombuffer(requests.read(4 * n), dtype=np.float32, count=n)
        try:
            segments = peer(samples, header.get("num_speakers"))
            reply: dict[str, Any] = {"segments": [[float(s), float(e), str(lab)] for s, e, lab in segments]}
        except Exception as exc:  # one bad file must not end the worker
            traceback.print_exc(file=sys.stderr)
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        replies.write(json.dumps(reply).encode() + b"\n")
        replies.flush()


def main(
    name: str = typer.Argument(..., help="Peer to run: senko or pyannote."),
    options: str = typer.Option("{}", help="JSON options for the peer (params.yaml: systems.<name>)."),
    threads: int = typer.Option(1, help="torch threads."),
) -> None:
    """Run one peer over the stdin/stdout protocol."""
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # library prints (Python or C) go to stderr, not into the protocol
    sys.stdout = sys.stderr
    import torch

    torch.set_num_threads(threads)
    try:
        peer = load_peer(name, json.loads(options))
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        replies.write(
            json.dumps({"status": "failed", "error": f"{type(exc).__name__}: {exc}"}).encode() + b"\n"
        )
        replies.flush()
        raise typer.Exit(1) from exc
    replies.write(b'{"status": "ready"}\n')
    replies.flush()
    serve(peer, sys.stdin.buffer, replies)


if __name__ == "__main__":
    typer.run(main)
