"""Which stored embeddings apply, and the neighbours in them that ``imgreg rank`` takes as a second opinion on
labels (``engine.labels.quality.score_rows(..., neighbours)``); no torch."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from engine.labels.quality import embedding_neighbours
from engine.runs.embeddings import EMBED_DIR, EmbeddingError, embeddings_path, load_embeddings

BACKBONE_PREFIXES = ("imagenet-", "random-")
MIN_ITEMS = 3


def pick_source(store_dir: Path | str, run_id: str | None = None) -> str | None:
    """The stored source to use: the run's embeddings when stored, else the ImageNet (or fallback) backbone's."""
    if run_id and embeddings_path(store_dir, run_id).is_file():
        return run_id
    folder = Path(store_dir) / EMBED_DIR
    for prefix in BACKBONE_PREFIXES:
        files = sorted(folder.glob(f"{prefix}*.npz")) if folder.is_dir() else []
        if files:
            return files[0].stem
    return None


def stored_neighbours(
    store_dir: Path | str, items: Sequence[str], run_id: str | None = None, k: int = 10
) -> tuple[dict[str, list[str]] | None, str | None]:
    """Each of ``items``' ``k`` nearest items in the stored embeddings (among ``items``) and the source used;
    ``(None, None)`` when nothing usable is stored (no file, unreadable, or fewer than 3 items embedded)."""
    src = pick_source(store_dir, run_id)
    if src is None:
        return None, None
    try:
        emb = load_embeddings(embeddings_path(store_dir, src))
    except EmbeddingError:
        return None, None
    if emb is None:
        return None, None
    sub = emb.subset(list(items))
    if len(sub) < MIN_ITEMS:
        return None, None
    return embedding_neighbours(sub.names, np.asarray(sub.vecs, dtype=np.float32), k), src
