"""A scripted stand-in for ``imgreg embed DATASET --json --control-stdin``: writes clustered float16 embeddings
for every item with the torch-free storage functions, printing ``embed_progress`` events and a summary."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from engine.data import open_dataset  # noqa: E402
from engine.labels.store import LabelStore  # noqa: E402
from engine.runs.embeddings import Embeddings, embeddings_path, item_key, save_embeddings  # noqa: E402


def clustered(n: int, dim: int = 16, per: int = 4, seed: int = 0) -> np.ndarray:
    """Rows in clusters of ``per`` consecutive items: each item's nearest items are its cluster mates."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n // per + 1, dim))
    return (base[np.arange(n) // per] + 0.05 * rng.normal(size=(n, dim))).astype(np.float16)


def main() -> int:
    """Embed every item of ``argv[1]`` as the ``imagenet-fake`` source (``--slow``: stall until cancelled)."""
    ds = open_dataset(sys.argv[1])
    if "--slow" in sys.argv:
        print(json.dumps({"type": "embed_progress", "done": 0, "total": len(ds.items)}), flush=True)
        for line in sys.stdin:
            if line.strip() == "cancel":
                print(json.dumps({"type": "cancelled", "message": "cancelled"}), flush=True)
                return 1
        return 1
    store = LabelStore.open(ds)
    names = [it.name for it in ds.items]
    for k in range(4):
        done = len(names) * k // 3
        print(json.dumps({"type": "embed_progress", "done": done, "total": len(names)}), flush=True)
    emb = Embeddings(names, clustered(len(names)), [item_key(it.path) for it in ds.items],
                     {"source": "imagenet-fake", "what": "fake"})  # fmt: skip
    path = embeddings_path(store.dir, "imagenet-fake")
    save_embeddings(path, emb)
    store.close()
    print(
        json.dumps({"type": "summary", "source": "imagenet-fake", "n": len(names), "path": str(path)}),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
