"""Clustering: automatic speaker count, bounds, small clusters, edge sizes, centred refinement."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import pdist

from flywheel.clustering import (
    agglomerative_cluster,
    centre_embeddings,
    condensed_distances,
    dissolve_small_clusters,
    recording_centre,
    refine_centred,
)


def blobs(
    sizes: list[int], dim: int = 32, spread: float = 0.05, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Unit-norm points around random directions (well separated in cosine distance), shuffled."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(sizes), dim))
    pairs = zip(centres, sizes, strict=True)
    x = np.concatenate([c + spread * np.linalg.norm(c) * rng.normal(size=(n, dim)) for c, n in pairs])
    truth = np.repeat(np.arange(len(sizes)), sizes)
    order = rng.permutation(truth.size)
    x = x[order] / np.linalg.norm(x[order], axis=1, keepdims=True)
    return x, truth[order]


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    pairs = {(int(i), int(j)) for i, j in zip(a, b, strict=True)}
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


@pytest.mark.parametrize("k", [1, 2, 4])
def test_recovers_the_number_of_well_separated_clusters(k: int) -> None:
    x, truth = blobs([15, 20, 10, 25][:k])
    labels = agglomerative_cluster(x, threshold=0.5)
    assert np.unique(labels).size == k
    assert same_partition(labels, truth)


def test_labels_are_ordered_by_first_appearance() -> None:
    x, _ = blobs([10, 10, 10])
    labels = agglomerative_cluster(x, threshold=0.5)
    _, first = np.unique(labels, return_index=True)
    assert list(np.argsort(first)) == sorted(np.unique(labels))
    assert labels[0] == 0
    assert labels.dtype == np.int64


def test_empty_and_single_inputs() -> None:
    assert agglomerative_cluster(np.zeros((0, 8)), threshold=0.3).shape == (0,)
    assert agglomerative_cluster(np.ones((1, 8)), threshold=0.3).tolist() == [0]


def test_max_speakers_caps_the_count() -> None:
    x, truth = blobs([10, 10, 10, 10])
    labels = agglomerative_cluster(x, threshold=0.5, max_speakers=2)
    assert np.unique(labels).size == 2
    # each true cluster stays whole
    assert all(np.unique(labels[truth == t]).size == 1 for t in range(4))


def test_min_speakers_splits_when_asked() -> None:
    x, _ = blobs([10, 10, 10])
    assert np.unique(agglomerative_cluster(x, threshold=1.9, min_speakers=3)).size == 3


def test_small_clusters_join_the_nearest_large_one() -> None:
    x, truth = blobs([20, 20])
    big = x[truth == 0].mean(axis=0)
    outlier = big + 0.6 * np.random.default_rng(1).normal(size=x.shape[1]) * np.linalg.norm(big)
    x2 = np.vstack([x, outlier / np.linalg.norm(outlier)])
    alone = agglomerative_cluster(x2, threshold=0.3)
    assert np.unique(alone).size == 3  # the outlier forms its own cluster...
    merged = agglomerative_cluster(x2, threshold=0.3, min_cluster_size=2)
    assert np.unique(merged).size == 2  # ... unless singletons are reassigned
    assert merged[-1] == merged[np.flatnonzero(truth == 0)[0]]


def test_large_inputs_are_reduced_first() -> None:
    x, truth = blobs([150, 100, 120], dim=16)
    labels = agglomerative_cluster(x, threshold=0.5, max_points=50)
    assert np.unique(labels).size == 3
    assert same_partition(labels, truth)


def test_euclidean_ward_is_supported() -> None:
    x, truth = blobs([10, 12])
    labels = agglomerative_cluster(x * 10, threshold=5.0, linkage="ward", metric="euclidean")
    assert same_partition(labels, truth)


def test_cosine_distances_match_pdist_and_zero_rows_are_farthest() -> None:
    x = np.random.default_rng(4).standard_normal((60, 8))
    x[7] = 0.0
    fast = condensed_distances(x)
    reference = np.nan_to_num(pdist(x, metric="cosine"), nan=2.0)
    assert fast.dtype == np.float64 and fast.shape == reference.shape
    assert np.abs(fast - reference).max() < 1e-5
    assert np.allclose(condensed_distances(x, "euclidean"), pdist(x))


def test_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        agglomerative_cluster(np.zeros(5), threshold=0.3)
    with pytest.raises(ValueError):
        agglomerative_cluster(np.ones((3, 2)), threshold=0.3, max_speakers=0)


def test_clusters_with_too_little_speech_join_the_nearest_large_one() -> None:
    x, truth = blobs([20, 20, 2], seed=3)
    labels = truth.copy()
    seconds = np.ones(len(x))
    merged = dissolve_small_clusters(x, labels, seconds, min_share=0.1)  # cluster 2 holds 2/42 < 10 %
    assert np.unique(merged).size == 2
    kept = truth != 2
    assert same_partition(merged[kept], truth[kept])
    # the share counts speech, not members: two long embeddings are a speaker
    seconds[truth == 2] = 10.0
    assert np.unique(dissolve_small_clusters(x, labels, seconds, min_share=0.1)).size == 3
    assert np.array_equal(dissolve_small_clusters(x, labels, seconds, min_share=0.0), labels)
    # a small share with a lot of speech stays a speaker (a long recording with many speakers)
    seconds[:] = 1.0
    seconds[truth == 2] = 4.0  # 8 of 48 s < 10 %
    assert np.unique(dissolve_small_clusters(x, labels, seconds, min_share=0.2)).size == 2
    assert np.unique(dissolve_small_clusters(x, labels, seconds, min_share=0.2, keep_weight=8.0)).size == 3


def test_centred_refinement_fixes_a_wrong_cut_and_keeps_the_count() -> None:
    rng = np.random.default_rng(1)
    shared = rng.normal(size=32) * 3.0  # the recording: room, channel, noise
    speakers = rng.normal(size=(2, 32))
    truth = np.repeat([0, 1], 30)
    x = shared + speakers[truth] + 0.3 * rng.normal(size=(60, 32))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    cut = truth.copy()
    cut[:8] = 1  # the agglomerative cut put 8 of speaker 0 with speaker 1
    labels, centre = refine_centred(x, cut, np.ones(60), iterations=5)
    assert np.unique(labels).size == 2
    assert same_partition(labels, truth)
    assert np.allclose(centre, recording_centre(x, np.ones(60)))
    z = centre_embeddings(x, centre)
    assert np.allclose(np.linalg.norm(z, axis=1), 1.0)
    assert abs(float(np.mean(z[truth == 0] @ z[truth == 1].T))) < abs(
        float(np.mean(x[truth == 0] @ x[truth == 1].T))
    )


def test_refinement_leaves_one_cluster_alone() -> None:
    x, _ = blobs([12])
    labels, _ = refine_centred(x, np.zeros(12, dtype=int), np.ones(12), iterations=5)
    assert np.array_equal(labels, np.zeros(12))


def _blobs(rng: np.random.Generator, sizes: list[int], dim: int = 32, spread: float = 0.15) -> tuple:
    centres = rng.standard_normal((len(sizes), dim))
    x = np.concatenate(
        [c + spread * rng.standard_normal((n, dim)) for c, n in zip(centres, sizes, strict=True)]
    )
    truth = np.repeat(np.arange(len(sizes)), sizes)
    return x, truth


def test_spectral_cluster_finds_the_count_from_the_eigengap() -> None:
    from flywheel.clustering import spectral_cluster

    x, truth = _blobs(np.random.default_rng(0), [40, 25, 30])
    labels = spectral_cluster(x)
    assert len(set(labels)) == 3
    for c in range(3):  # every true cluster lands in exactly one predicted cluster
        assert len(set(labels[truth == c])) == 1


def test_spectral_cluster_count_can_be_fixed_or_merged() -> None:
    from flywheel.clustering import spectral_cluster

    x, _ = _blobs(np.random.default_rng(1), [30, 30, 30])
    assert len(set(spectral_cluster(x, num_speakers=2))) == 2
    assert len(set(spectral_cluster(x, merge_threshold=1.5))) == 1  # everything is "close" at 1.5
    assert spectral_cluster(x[:2]).tolist() == [0, 0]
