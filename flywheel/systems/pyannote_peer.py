"""pyannote.audio 4.0.7's own ``SpeakerDiarization`` pipeline as a peer (teacher environment only).

Built from the two local checkpoints, nothing from a hub: segmentation-3.0 and CAM++ behind
:class:`CampPlusEmbedding`, a ``pyannote.audio.Model`` the pipeline accepts as its embedding.
Clustering is pyannote's ``AgglomerativeClustering`` (centroid linkage); its hyper-parameters
(``params.yaml: systems.pyannote``) come from a declared grid search on dev-real + ami-debug dev
(``experiments/tune_pyannote.py``), never on a test set. Audio is passed in memory.

pyannote 4.0.7 insists on loading a PLDA even when the clustering does not use one
(``get_plda(None)`` raises a TypeError); :func:`build_pipeline` passes ``plda=None`` through a
one-line patch of that getter.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from pyannote.audio import Model

# pyannote 3.1's published hyper-parameters, the starting point of the search
DEFAULT_HYPERPARAMETERS: dict[str, Any] = {
    "segmentation": {"min_duration_off": 0.0},
    "clustering": {"method": "centroid", "min_cluster_size": 12, "threshold": 0.7045654963945799},
}
MIN_FRAMES = 20  # fbank frames (0.2 s) an embedding needs; fewer gives NaN, as pyannote expects


class CampPlusEmbedding(Model):
    """CAM++ as a pyannote embedding model: ``forward(waveforms (B, 1, T), weights (B, F))`` -> ``(B, 192)``,
    Kaldi fbank frames selected where the weight (a 0/1 speaker mask on ``F`` frames) is on,
    mean-normalised over them; NaN where fewer than :data:`MIN_FRAMES` remain.

    The network runs from the parity-checked ONNX export (``models/teacher/campplus.onnx``, about 1.8x
    faster than eager torch on one thread here) with the fbank of :mod:`flywheel.kaldi_fbank`; the
    fbank of a chunk is computed once for its local speakers, which pyannote sends one after another."""

    def __init__(self) -> None:
        super().__init__(sample_rate=16000, num_channels=1)
        import onnxruntime as ort

        from flywheel.onnx_model import session_options
        from flywheel.pretrained import CAMPPLUS_ONNX, teacher_onnx

        self.session = ort.InferenceSession(
            str(teacher_onnx(CAMPPLUS_ONNX)), session_options(1), providers=["CPUExecutionProvider"]
        )
        self._last: tuple[bytes, np.ndarray] | None = None

    @property
    def dimension(self) -> int:
        return 192

    def _fbank(self, waveform: np.ndarray) -> np.ndarray:
        from flywheel.kaldi_fbank import kaldi_fbank

        key = waveform[:: max(1, len(waveform) // 64)].tobytes() + str(len(waveform)).encode()
        if self._last is None or self._last[0] != key:
            self._last = (key, kaldi_fbank(waveform))
        return self._last[1]

    def forward(self, waveforms: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        out = np.full((waveforms.shape[0], self.dimension), np.nan, dtype=np.float32)
        for b in range(waveforms.shape[0]):
            if weights is not None and not bool((weights[b] > 0.5).any()):
                continue
            fbank = self._fbank(waveforms[b, 0].detach().cpu().numpy().astype(np.float32))
            if weights is not None:
                w = weights[b].detach().cpu().numpy()
                idx = np.minimum(
                    (np.arange(len(fbank)) * 160 + 200) * len(w) // waveforms.shape[-1], len(w) - 1
                )
                fbank = fbank[w[idx] > 0.5]
            if len(fbank) < MIN_FRAMES:
                continue
            feats = (fbank - fbank.mean(axis=0, keepdims=True))[None]
            out[b] = self.session.run(None, {"fbank": feats})[0][0]
        return torch.from_numpy(out)


def build_pipeline(hyperparameters: dict[str, Any] | None = None, segmentation_step: float = 0.1):
    """The pyannote pipeline over the local checkpoints, instantiated with ``hyperparameters``."""
    from pyannote.audio.pipelines import speaker_diarization

    from flywheel.pretrained import SEGMENTATION_CHECKPOINT, checkpoint

    getter = speaker_diarization.get_plda
    speaker_diarization.get_plda = lambda plda, **kw: None if plda is None else getter(plda, **kw)
    pipeline = speaker_diarization.SpeakerDiarization(
        segmentation=Model.from_pretrained(str(checkpoint(SEGMENTATION_CHECKPOINT))),
        segmentation_step=segmentation_step,
        embedding=CampPlusEmbedding().eval(),
        clustering="AgglomerativeClustering",
        plda=None,
        embedding_batch_size=8,
        segmentation_batch_size=8,
    )
    return pipeline.instantiate(hyperparameters or DEFAULT_HYPERPARAMETERS)


def as_file(waveform: np.ndarray, uri: str = "audio") -> dict[str, Any]:
    """The in-memory file dict pyannote takes."""
    return {
        "waveform": torch.from_numpy(np.asarray(waveform, dtype=np.float32))[None],
        "sample_rate": 16000,
        "uri": uri,
    }


def segments_of(output: Any) -> list[tuple[float, float, str]]:
    """(start, end, label) of the pipeline's output (4.x returns an object with ``.speaker_diarization``)."""
    annotation = getattr(output, "speaker_diarization", output)
    return [(seg.start, seg.end, str(label)) for seg, _, label in annotation.itertracks(yield_label=True)]


class PyannotePeer:
    """The pipeline behind the peer protocol; options are ``params.yaml: systems.pyannote``."""

    def __init__(
        self,
        threshold: float = DEFAULT_HYPERPARAMETERS["clustering"]["threshold"],
        min_cluster_size: int = DEFAULT_HYPERPARAMETERS["clustering"]["min_cluster_size"],
        min_duration_off: float = 0.0,
        segmentation_step: float = 0.1,
        **_: Any,
    ):
        hyperparameters = {
            "segmentation": {"min_duration_off": float(min_duration_off)},
            "clustering": {
                "method": "centroid",
                "min_cluster_size": int(min_cluster_size),
                "threshold": float(threshold),
            },
        }
        self.pipeline = build_pipeline(hyperparameters, segmentation_step)

    def __call__(
        self, waveform: np.ndarray, num_speakers: int | None = None
    ) -> list[tuple[float, float, str]]:
        with torch.inference_mode():
            output = self.pipeline(as_file(waveform), num_speakers=num_speakers)
        return segments_of(output)
