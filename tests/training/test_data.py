"""Training chunks: shapes, labels and speaker ids, including formant-warped voices."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from pipelines.inventory import Inventory
from pipelines.simulate import SimulationConfig
from training.data import ChunkConfig, ConversationChunks


@pytest.fixture(scope="module")
def inventory(smoke_data: Path) -> Inventory:
    return Inventory.load(smoke_data / "inventory" / "smoke")


def test_warped_voices_get_speaker_ids_of_their_own(inventory: Inventory, params: dict) -> None:
    sim = SimulationConfig.from_params(params["simulation"], duration_s=(30, 40))
    sim = dataclasses.replace(sim, formant_warps=(0.88, 1.14), formant_warp_prob=1.0)
    data = ConversationChunks(inventory, sim, ChunkConfig(), epoch_conversations=2, seed=5, coverage=0.5)
    recorded = len(inventory.by_speaker("train"))
    assert len(data.speaker_index) == 3 * recorded  # recorded + one copy per warp factor
    items = list(data)
    assert items
    for feats, labels, ids in items:
        assert feats.shape[0] == 64 and labels.shape == (125, 3)
        active = labels.sum(dim=0) > 0
        # every speaker of a chunk is a warped copy (probability 1), known to the speaker head
        assert ((ids[active] >= recorded) & (ids[active] < 3 * recorded)).all()


def test_chunk_length_must_be_whole_frames() -> None:
    assert ChunkConfig(chunk_s=10.0).num_frames == 250
    with pytest.raises(ValueError, match="whole number"):
        ChunkConfig(chunk_s=2.5)
