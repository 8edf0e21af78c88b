"""``imgreg rank --run`` takes neighbours' labels in stored embeddings as a second opinion and stores the scores."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from engine.cli import main
from engine.data import open_dataset
from engine.data.synth import make_utkface
from engine.labels.store import LabelStore, PredictionRow
from engine.runs.embeddings import Embeddings, embeddings_path, item_key, save_embeddings
from engine.runs.files import runs_dir
from engine.runs.neighbours import pick_source, stored_neighbours

N = 24


def _setup(tmp_path: Path, embed: bool) -> tuple[Path, list[str]]:
    """Items in clusters of 4 with equal labels; item 0's label is wrong (its prediction agrees with its cluster)."""
    syn = make_utkface(tmp_path / "utk", n=N, size=32)
    ds = open_dataset(syn.root)
    names = [it.name for it in ds.items]
    with LabelStore.open(ds) as store:
        for i, n in enumerate(names):
            store.correct(n, (float(10 * (i // 4)) + (40.0 if i == 0 else 0.0),))
        rng = np.random.default_rng(0)
        rows = [PredictionRow(n, (10.0 * (i // 4) + rng.normal(),), None, None) for i, n in enumerate(names)]
        store.put_predictions("r1", rows)
        run = runs_dir(store.dir) / "r1"
        run.mkdir(parents=True)
        (run / "config.json").write_text("{}")
        (run / "model.safetensors").write_bytes(b"")
        if embed:
            base = rng.normal(size=(N // 4, 8))
            vecs = base[np.arange(N) // 4] + 0.01 * rng.normal(size=(N, 8))
            keys = [item_key(it.path) for it in ds.items]
            save_embeddings(embeddings_path(store.dir, "imagenet-x"), Embeddings(names, vecs, keys, {}))
    return syn.root, names


def _rank(root: Path, capsys) -> list[dict]:
    assert main(["rank", str(root), "--run", "r1", "--json"]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]


def test_stored_neighbours_pick_the_run_then_the_backbone(tmp_path: Path) -> None:
    root, names = _setup(tmp_path, embed=True)
    store_dir = root / ".imgreg"
    assert pick_source(store_dir, "r1") == "imagenet-x"
    nbrs, src = stored_neighbours(store_dir, names, "r1", k=3)
    assert src == "imagenet-x" and set(nbrs[names[0]]) == {names[1], names[2], names[3]}
    assert stored_neighbours(tmp_path / "nowhere", names) == (None, None)


def test_rank_uses_stored_embeddings_and_stores_scores(tmp_path: Path, capsys) -> None:
    root, names = _setup(tmp_path / "a", embed=True)
    events = _rank(root, capsys)
    assert any(e["type"] == "note" and "second opinion" in e["message"] for e in events)
    summary = events[-1]
    assert summary["type"] == "summary" and summary["top"][0]["item"] == names[0]
    with LabelStore.open(open_dataset(root)) as store:
        preds = store.predictions("r1")
    assert all(p.score is not None for p in preds.values())
    with_nbrs = preds[names[0]].score
    # Without embeddings: no note, and the neighbours' agreement no longer adds to the wrong label's doubt.
    root_b, names_b = _setup(tmp_path / "b", embed=False)
    events = _rank(root_b, capsys)
    assert not any(e["type"] == "note" for e in events)
    with LabelStore.open(open_dataset(root_b)) as store:
        without = store.predictions("r1")[names_b[0]].score
    assert with_nbrs != without  # the second opinion changed the score
