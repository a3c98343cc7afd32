"""Training chunks generated on the fly from the speaker inventory.

Epoch ``e`` is the conversations with seeds ``seed + e * N ... seed + (e + 1) * N - 1`` of the train
split, ``N`` chosen so one epoch holds ``train_hours`` of conversation (20 h for ``full``); every
conversation is reproducible from its seed, so the training data is fixed without being stored.
Each conversation is cut into fixed-length chunks with frame-level labels for up to 3 local speakers.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from pyannote.core import Annotation
from torch.utils.data import IterableDataset, get_worker_info

from flywheel.audio import SAMPLE_RATE
from flywheel.features import FeatureConfig, model_input
from pipelines.build_conversations import conversation_seed
from pipelines.inventory import Inventory
from pipelines.simulate import AudioCache, SimulationConfig, simulate_conversation
from pipelines.voice_warp import variant_name
from training.models.powerset import MAX_SPEAKERS


@dataclass
class ChunkConfig:
    """How recordings are cut for the model (shared with inference through the exported metadata)."""

    chunk_s: float = 5.0
    frame_s: float = 0.04  # model output resolution (4 feature frames)

    def __post_init__(self) -> None:
        frames = self.chunk_s / self.frame_s
        if abs(frames - round(frames)) > 1e-6:
            raise ValueError(f"chunk_s {self.chunk_s} is not a whole number of {self.frame_s} s frames")

    @property
    def num_samples(self) -> int:
        return int(round(self.chunk_s * SAMPLE_RATE))

    @property
    def num_frames(self) -> int:
        return int(round(self.chunk_s / self.frame_s))


def frame_labels(
    reference: Annotation, start: float, cfg: ChunkConfig, speakers: list[str] | None = None
) -> tuple[np.ndarray, list[str]]:
    """Activity ``(num_frames, 3)`` of the (up to) 3 most talkative speakers in ``[start, start+chunk)``.

    A frame is active for a speaker when its centre falls inside one of the speaker's turns.
    Returns the activity and the speaker of each column (``""`` for an empty slot).
    """
    centres = start + (np.arange(cfg.num_frames) + 0.5) * cfg.frame_s
    activity: dict[str, np.ndarray] = {}
    for seg, _, label in reference.itertracks(yield_label=True):
        if seg.end <= start or seg.start >= start + cfg.chunk_s:
            continue
        act = activity.setdefault(label, np.zeros(cfg.num_frames, dtype=bool))
        act |= (centres >= seg.start) & (centres < seg.end)
    ranked = speakers or sorted(activity, key=lambda s: -activity[s].sum())
    ranked = [s for s in ranked if activity.get(s) is not None and activity[s].any()][:MAX_SPEAKERS]
    labels = np.zeros((cfg.num_frames, MAX_SPEAKERS), dtype=np.float32)
    for k, spk in enumerate(ranked):
        labels[:, k] = activity[spk]
    return labels, ranked + [""] * (MAX_SPEAKERS - len(ranked))


class ConversationChunks(IterableDataset):
    """Epoch-sized stream of ``(features, labels, speaker_ids)`` training chunks.

    ``speaker_ids`` holds the index of each local slot's speaker in ``speaker_index`` (``-1`` if empty).
    """

    def __init__(
        self,
        inventory: Inventory,
        sim: SimulationConfig,
        chunk: ChunkConfig,
        epoch_conversations: int,
        seed: int,
        features: FeatureConfig = FeatureConfig(),
        split: str = "train",
        coverage: float = 1.0,
        shuffle_buffer: int = 256,
    ):
        self.inventory = inventory
        self.sim = sim
        self.chunk = chunk
        self.epoch_conversations = epoch_conversations
        self.seed = seed
        self.features = features
        self.split = split
        self.coverage = coverage  # expected number of chunks covering each second
        self.shuffle_buffer = shuffle_buffer
        recorded = sorted(inventory.by_speaker(split))
        # formant-warped copies are speakers of their own, numbered after the recorded ones
        warped = [variant_name(s, a) for a in sim.formant_warps for s in recorded]
        self.speaker_index = {s: i for i, s in enumerate(recorded + warped)}
        self.epoch = 0  # epoch of the next iteration; advanced by each pass, also in persistent workers
        self._audio: AudioCache | None = None

    def set_epoch(self, epoch: int) -> None:
        """Start the next pass at ``epoch`` (call before the DataLoader is created, e.g. on resume)."""
        self.epoch = epoch

    def _conversation_indices(self) -> range:
        info = get_worker_info()
        first = self.epoch * self.epoch_conversations
        workers, wid = (info.num_workers, info.id) if info else (1, 0)
        return range(first + wid, first + self.epoch_conversations, workers)

    def _chunks_of(self, index: int, rng: np.random.Generator) -> Iterator[tuple[np.ndarray, ...]]:
        if self._audio is None:
            self._audio = AudioCache(self.inventory, keep=True)
        seed = conversation_seed(self.seed, self.split, index)
        conv = simulate_conversation(self.inventory, self.split, seed, self.sim, self._audio)
        n = self.chunk.num_samples
        if len(conv.waveform) < n:
            return
        count = max(1, round(conv.duration * self.coverage / self.chunk.chunk_s))
        starts = rng.integers(0, len(conv.waveform) - n + 1, size=count)
        for s in starts:
            audio = conv.waveform[s : s + n] * np.float32(10 ** (rng.uniform(-6, 6) / 20))
            labels, speakers = frame_labels(conv.reference, s / SAMPLE_RATE, self.chunk)
            ids = np.array([self.speaker_index.get(spk, -1) for spk in speakers], dtype=np.int64)
            yield model_input(audio, self.features), labels, ids

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        info = get_worker_info()
        rng = np.random.default_rng((self.seed, self.epoch, info.id if info else 0))
        indices = self._conversation_indices()
        self.epoch += 1
        buffer: list[tuple[np.ndarray, ...]] = []
        for index in indices:
            for item in self._chunks_of(index, rng):
                buffer.append(item)
                if len(buffer) >= self.shuffle_buffer:
                    yield self._tensors(buffer.pop(int(rng.integers(len(buffer)))))
        rng.shuffle(buffer)
        for item in buffer:
            yield self._tensors(item)

    @staticmethod
    def _tensors(item: tuple[np.ndarray, ...]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        feats, labels, ids = item
        return torch.from_numpy(np.ascontiguousarray(feats)), torch.from_numpy(labels), torch.from_numpy(ids)


def conversations_for_hours(hours: float, duration_s: tuple[float, float]) -> int:
    """Conversations per epoch so that an epoch holds about ``hours`` of audio."""
    return max(1, int(np.ceil(hours * 3600 / (sum(duration_s) / 2))))
