"""Agglomerative (hierarchical) clustering of embeddings with a distance threshold.

Shared by every diarization system: the baseline clusters window d-vectors with it, a neural
segmentation model can cluster its local-speaker embeddings the same way. The speaker count comes
from the threshold, optionally bounded by ``min_speakers`` / ``max_speakers``.
"""

from __future__ import annotations

import numpy as np
from scipy.cluster.hierarchy import fcluster
from scipy.cluster.hierarchy import linkage as scipy_linkage
from scipy.spatial.distance import cdist, pdist, squareform

DEFAULT_MAX_POINTS = 5000


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero)."""
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-8)


def condensed_distances(x: np.ndarray, metric: str = "cosine") -> np.ndarray:
    """``scipy.spatial.distance.pdist(x, metric)``, with undefined distances (zero rows under cosine)
    set to the largest possible one.

    Cosine distances come from one matrix product (BLAS) instead of ``pdist``'s pairwise loop: about
    10x faster for the thousands of embeddings of an hour of audio.
    """
    x = np.asarray(x, dtype=np.float64)
    if metric != "cosine":
        distances = pdist(x, metric=metric)
        return np.nan_to_num(distances, nan=float(np.nanmax(distances, initial=1.0)))
    norms = np.linalg.norm(x, axis=1)
    zero = norms == 0
    u = (x / np.where(zero, 1.0, norms)[:, None]).astype(np.float32)  # float32 product: 1e-7 apart
    square = u @ u.T
    np.subtract(1.0, square, out=square)
    np.clip(square, 0.0, 2.0, out=square)
    square[zero, :] = 2.0  # undefined: as far as possible
    square[:, zero] = 2.0
    np.fill_diagonal(square, 0.0)
    return squareform(square, checks=False).astype(np.float64)


def _first_appearance_order(labels: np.ndarray) -> np.ndarray:
    """Relabel to ``0..k-1`` in order of first appearance."""
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    rank = np.empty_like(first)
    rank[np.argsort(first)] = np.arange(first.size)
    return rank[inverse].astype(np.int64)


def _join_nearest_large(x: np.ndarray, labels: np.ndarray, large: np.ndarray, metric: str) -> np.ndarray:
    """Move the members of every cluster not in ``large`` to the nearest ``large`` cluster's mean."""
    centroids = np.stack([x[labels == c].mean(axis=0) for c in large])
    small = ~np.isin(labels, large)
    labels = labels.copy()
    labels[small] = large[cdist(x[small], centroids, metric=metric).argmin(axis=1)]
    return labels


def _reassign_small(
    embeddings: np.ndarray, labels: np.ndarray, min_cluster_size: int, metric: str
) -> np.ndarray:
    """Move members of clusters smaller than ``min_cluster_size`` to the nearest large-cluster centroid."""
    ids, counts = np.unique(labels, return_counts=True)
    large = ids[counts >= min_cluster_size]
    if large.size == 0 or large.size == ids.size:
        return labels
    return _join_nearest_large(embeddings, labels, large, metric)


def agglomerative_cluster(
    embeddings: np.ndarray,
    threshold: float,
    linkage: str = "average",
    metric: str = "cosine",
    min_cluster_size: int = 1,
    max_speakers: int | None = None,
    min_speakers: int = 1,
    max_points: int = DEFAULT_MAX_POINTS,
    seed: int = 0,
) -> np.ndarray:
    """Cluster ``embeddings`` ``(n, d)``; returns ``n`` integer labels ``0..k-1`` (first appearance order).

    The dendrogram (``scipy.cluster.hierarchy.linkage``) is cut at distance ``threshold``
    (e.g. cosine distance ``1 - cos`` in ``[0, 2]``), so the number of clusters is automatic.
    Then clusters with fewer than ``min_cluster_size`` members are dissolved and their members moved to
    the nearest remaining centroid (unless every cluster is small). If more than ``max_speakers``
    (or fewer than ``min_speakers``) clusters remain, the tree is cut at that count instead.

    Args:
        embeddings: one row per item; rows with zero norm are allowed but meaningless for cosine.
        threshold: maximum linkage distance within a cluster.
        linkage: ``"average"``, ``"complete"``, ``"single"``, ``"weighted"`` (any metric) or
            ``"ward"``, ``"centroid"``, ``"median"`` (meaningful with ``metric="euclidean"`` only).
        metric: any ``scipy.spatial.distance.pdist`` metric.
        min_cluster_size: smaller clusters are reassigned (1 keeps everything).
        max_speakers: upper bound on the number of clusters (``None``: no bound).
        min_speakers: lower bound on the number of clusters (when there are enough items).
        max_points: above this many items, k-means first reduces them to ``max_points`` centroids
            (the condensed distance matrix grows as n²: 5000 items already take 100 MB).
        seed: k-means seed (only used above ``max_points``).

    Raises:
        ValueError: ``embeddings`` is not 2-D or bounds are inconsistent.
    """
    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"embeddings must be 2-D (n, dim), got shape {x.shape}")
    if max_speakers is not None and max_speakers < max(min_speakers, 1):
        raise ValueError(f"max_speakers={max_speakers} is below min_speakers={min_speakers}")
    n = x.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if n == 1:
        return np.zeros(1, dtype=np.int64)

    if n > max_points:
        # Bounded memory: over-cluster with k-means, run the agglomeration on the centroids.
        from sklearn.cluster import MiniBatchKMeans

        points = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12) if metric == "cosine" else x
        km = MiniBatchKMeans(n_clusters=max_points, random_state=seed, n_init=1, batch_size=4096)
        assignment = km.fit_predict(points)
        sub = agglomerative_cluster(
            km.cluster_centers_,
            threshold,
            linkage=linkage,
            metric=metric,
            max_speakers=max_speakers,
            min_speakers=min_speakers,
            max_points=max_points,
        )
        labels = sub[assignment]
        if min_cluster_size > 1:
            labels = _reassign_small(x, labels, min_cluster_size, metric)
        return _first_appearance_order(labels)

    tree = scipy_linkage(condensed_distances(x, metric), method=linkage)
    labels = fcluster(tree, t=threshold, criterion="distance")
    if min_cluster_size > 1:
        labels = _reassign_small(x, labels, min_cluster_size, metric)

    k = int(np.unique(labels).size)
    target = None
    if max_speakers is not None and k > max_speakers:
        target = max_speakers
    elif k < min_speakers <= n:
        target = min_speakers
    if target is not None:
        labels = fcluster(tree, t=target, criterion="maxclust")
        if min_cluster_size > 1:
            labels = _reassign_small(x, labels, min_cluster_size, metric)
    return _first_appearance_order(np.asarray(labels))


def spectral_cluster(
    embeddings: np.ndarray,
    merge_threshold: float = 0.0,
    max_speakers: int | None = None,
    min_speakers: int = 1,
    num_speakers: int | None = None,
    pval: float = 0.02,
    min_neighbours: int = 6,
    max_points: int = DEFAULT_MAX_POINTS,
    seed: int = 0,
) -> np.ndarray:
    """Spectral clustering of ``embeddings`` ``(n, d)`` with the speaker count from the eigengap.

    The cosine-similarity matrix keeps, per row, its ``max(min_neighbours, pval * n)`` largest entries
    (the rest set to 0), is symmetrised, and the count is the position of the largest gap between
    consecutive eigenvalues of its Laplacian (within ``[min_speakers, max_speakers]``, 10 at most
    by default); k-means on the first ``k`` eigenvectors gives the labels. Clusters whose centroids are
    closer than ``merge_threshold`` (cosine distance, average linkage) are then merged: the count is
    automatic, the threshold only joins what the eigengap split too finely. ``num_speakers`` fixes
    the count (no merging). Above ``max_points`` items (the eigendecomposition grows as n³) this
    falls back to :func:`agglomerative_cluster` at ``merge_threshold``.

    Returns ``n`` labels ``0..k-1`` in first-appearance order.
    """
    x = unit_rows(np.asarray(embeddings, dtype=np.float64))
    n = len(x)
    if n < 3:
        return np.zeros(n, dtype=np.int64)
    if n > max_points:
        bound = num_speakers or max_speakers
        return agglomerative_cluster(
            x, merge_threshold, max_speakers=bound, min_speakers=num_speakers or min_speakers
        )
    from sklearn.cluster import KMeans

    sim = x @ x.T
    keep = min(n, max(min_neighbours, int(round(pval * n))))
    pruned = np.where(sim >= np.sort(sim, axis=1)[:, -keep][:, None], sim, 0.0)
    affinity = np.maximum(0.5 * (pruned + pruned.T), 0.0)
    np.fill_diagonal(affinity, 0.0)
    laplacian = np.diag(affinity.sum(axis=1)) - affinity
    eigvals, eigvecs = np.linalg.eigh(laplacian)
    if num_speakers is not None:
        k = min(num_speakers, n)
    else:
        upper = min(max_speakers or 10, n - 1)
        lower = min(max(min_speakers, 1), upper)
        gaps = np.diff(eigvals[: upper + 1])
        k = int(np.argmax(gaps[lower - 1 : upper])) + lower
    if k <= 1:
        return np.zeros(n, dtype=np.int64)
    labels = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(eigvecs[:, :k])
    if num_speakers is None and merge_threshold > 0:
        ids = np.unique(labels)
        centroids = np.stack([x[labels == c].mean(axis=0) for c in ids])
        merged = agglomerative_cluster(centroids, merge_threshold, min_speakers=min(min_speakers, len(ids)))
        labels = merged[np.searchsorted(ids, labels)]
    return _first_appearance_order(labels)


def dissolve_small_clusters(
    embeddings: np.ndarray,
    labels: np.ndarray,
    weights: np.ndarray,
    min_share: float,
    keep_weight: float = float("inf"),
) -> np.ndarray:
    """Merge clusters holding less than ``min_share`` of the total ``weights`` into the nearest large one.

    Weights are e.g. seconds of speech behind each embedding, so a "speaker" made of a few short,
    noisy embeddings does not survive as its own speaker. A cluster holding at least ``keep_weight``
    is large whatever its share: in a long recording with many speakers each one holds a small share
    of the speech. Nearest means highest cosine similarity to a large cluster's mean. Nothing changes
    when every cluster is small or none is. Returns labels ``0..k-1`` in first-appearance order.
    """
    labels = np.asarray(labels)
    if min_share <= 0 or labels.size == 0:
        return labels
    ids = np.unique(labels)
    held = np.array([weights[labels == i].sum() for i in ids])
    share = held / max(float(np.sum(weights)), 1e-12)
    large = ids[(share >= min_share) | (held >= keep_weight)]
    if large.size == 0 or large.size == ids.size:
        return _first_appearance_order(labels)
    x = unit_rows(np.asarray(embeddings, dtype=np.float64))
    return _first_appearance_order(_join_nearest_large(x, labels, large, "cosine"))


def recording_centre(embeddings: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted mean of the unit-normalised embeddings: what all speakers of one recording share
    (room, channel, noise), removed before cosine comparisons by :func:`refine_centred`."""
    x = unit_rows(np.asarray(embeddings, dtype=np.float64))
    w = np.asarray(weights, dtype=np.float64)
    return (x * w[:, None]).sum(axis=0) / max(float(w.sum()), 1e-12)


def centre_embeddings(embeddings: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """Unit embeddings minus the recording ``centre``, renormalised (the space clusters live in)."""
    return unit_rows(unit_rows(np.asarray(embeddings, dtype=np.float64)) - centre)


def refine_centred(
    embeddings: np.ndarray, labels: np.ndarray, weights: np.ndarray, iterations: int
) -> tuple[np.ndarray, np.ndarray]:
    """Refine a clustering (its speaker count kept) with cosine k-means in the recording-centred space.

    Agglomerative clustering decides how many speakers there are; its cut leaves borderline
    embeddings in the wrong cluster. Removing the recording's mean embedding first spreads the
    speakers apart (they all share the recording's acoustics), then up to ``iterations`` rounds move
    every embedding to its nearest weighted centroid. A round that would empty a cluster stops the
    refinement. Returns ``(labels, centre)``; compare other embeddings of the recording to the result
    after :func:`centre_embeddings` with the same ``centre``.
    """
    labels = _first_appearance_order(np.asarray(labels))
    centre = recording_centre(embeddings, weights)
    k = int(labels.max()) + 1 if labels.size else 0
    if k < 2 or iterations <= 0:
        return labels, centre
    z = centre_embeddings(embeddings, centre)
    w = np.asarray(weights, dtype=np.float64)[:, None]
    for _ in range(iterations):
        centroids = unit_rows(np.stack([(z[labels == i] * w[labels == i]).sum(axis=0) for i in range(k)]))
        new = (z @ centroids.T).argmax(axis=1)
        if np.unique(new).size < k or np.array_equal(new, labels):
            break
        labels = new
    return labels, centre
