"""senko 0.2.2's own CPU pipeline as a peer (teacher environment only): silero VAD, CAM++ on 1.5 s
windows, spectral clustering (UMAP + HDBSCAN past 20 minutes). No overlap: one speaker per instant."""

from __future__ import annotations

from typing import Any

import numpy as np


class SenkoPeer:
    """``senko.Diarizer(device="cpu")`` on in-memory 16 kHz audio."""

    def __init__(self, **_: Any):
        import senko

        self.diarizer = senko.Diarizer(device="cpu", warmup=False, quiet=True)

    def __call__(
        self, waveform: np.ndarray, num_speakers: int | None = None
    ) -> list[tuple[float, float, str]]:
        """senko's merged segments (``num_speakers`` is not supported by senko and is ignored)."""
        result = self.diarizer.diarize_samples(np.ascontiguousarray(waveform, dtype=np.float32), 16000)
        if not result:  # senko returns None when its VAD finds no speech
            return []
        return [(s["start"], s["end"], s["speaker"]) for s in result["merged_segments"]]
