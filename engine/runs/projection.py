"""2-D projections of item embeddings for the embedding map (no torch): UMAP when installed, else PCA."""

from __future__ import annotations

import numpy as np

from engine import events
from engine.core import OnEvent, no_event
from engine.runs.embeddings import normalised


def projection_method() -> str:
    """The projection used: ``umap`` (umap-learn installed), else ``pca`` (scikit-learn or numpy)."""
    try:
        import umap  # noqa: F401
    except ImportError:
        return "pca"
    return "umap"


def project(
    vecs: np.ndarray, method: str | None = None, seed: int = 0, on_event: OnEvent = no_event
) -> np.ndarray:
    """(n, 2) float32 coordinates of unit-normalised ``vecs``; progress as ``embed_progress`` events (0..2 of 2)."""
    x = normalised(vecs)
    n = len(x)
    on_event(events.progress("embed_progress", 0, 2))
    if n < 3:
        out = np.zeros((n, 2), np.float32)
        out[:, 0] = np.arange(n)
    elif (method or projection_method()) == "umap":
        import umap

        out = umap.UMAP(n_components=2, random_state=seed, metric="euclidean").fit_transform(x)
    else:
        out = pca_2d(x)
    on_event(events.progress("embed_progress", 2, 2))
    return np.asarray(out, dtype=np.float32)


def pca_2d(x: np.ndarray) -> np.ndarray:
    """The first two principal components (scikit-learn's randomized PCA when installed, else numpy's SVD)."""
    try:
        from sklearn.decomposition import PCA
    except ImportError:
        c = x - x.mean(0)
        _, _, vt = np.linalg.svd(c, full_matrices=False)
        return c @ vt[:2].T
    return PCA(n_components=2, svd_solver="randomized", random_state=0).fit_transform(x)
