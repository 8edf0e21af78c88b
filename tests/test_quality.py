"""Label-quality scores: planted wrong labels rank above clean ones where the raw residual cannot tell them apart."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from engine.data import open_dataset
from engine.data.synth import make_biwi
from engine.labels.quality import doubt, embedding_neighbours, knn_indices, mean_rows, score_rows
from engine.labels.store import LabelStore, PredictionRow


def top(scores: np.ndarray, k: int) -> set[int]:
    """Indices of the ``k`` largest scores."""
    return set(np.argsort(-scores, kind="stable")[:k].tolist())


def ages(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True ages and the predictions of a weak model: pulled towards the mean, errors growing with age."""
    rng = np.random.default_rng(seed)
    age = rng.uniform(1, 90, n)
    pred = 40 + 0.6 * (age - 40) + rng.normal(0, 1, n) * (0.5 + 0.05 * age)
    return age, pred, rng.permutation(n)


def test_scalar_score_undoes_the_pull_to_the_mean_and_the_error_scale() -> None:
    age, pred, perm = ages()
    lab = age.copy()
    # children moved 15 years up look right to the residual (the model predicts them older than they are)
    kids = [i for i in perm if age[i] < 12][:8]
    lab[kids] += 15
    bad = set(kids)
    raw = doubt(lab, pred, method="residual")
    score = doubt(lab, pred)
    assert len(top(raw, 8) & bad) <= 2
    assert len(top(score, 8) & bad) >= 7
    assert len(top(doubt(lab, pred, method="cleanlab"), 8) & bad) >= 6


def test_point_score_weighs_the_residual_against_the_heatmap_spread() -> None:
    rng = np.random.default_rng(1)
    n = 300
    truth = rng.uniform(20, 140, (n, 2))
    spread = np.where(np.arange(n) % 3 == 0, 8.0, 1.0) * rng.uniform(0.8, 1.2, n)
    pred = truth + rng.normal(0, 1, (n, 2)) * spread[:, None]  # hard images (wide heatmaps) miss by more
    lab = truth.copy()
    bad = [i for i in rng.permutation(n) if spread[i] < 2][:9]
    ang = rng.uniform(0, 2 * np.pi, 9)
    lab[bad] += 15 * np.c_[np.cos(ang), np.sin(ang)]
    raw = doubt(lab, pred, spread, method="residual")
    score = doubt(lab, pred, spread)
    assert len(top(raw, 9) & set(bad)) < 9
    assert top(score, 9) == set(bad)


def test_neighbour_labels_are_a_second_opinion() -> None:
    age, pred, perm = ages(seed=2)
    rng = np.random.default_rng(2)
    pred = np.full_like(age, 45.0) + rng.normal(0, 20, len(age))  # a useless model
    lab = age.copy()
    bad = perm[:12]
    lab[bad] = np.where(age[bad] > 45, age[bad] - 30, age[bad] + 30)
    emb = np.c_[age / 10 + rng.normal(0, 0.2, len(age)), rng.normal(0, 1, (len(age), 4))]
    nbr = knn_indices(emb, 10)
    alone = doubt(lab, pred)
    both = doubt(lab, pred, nbr_labels=[lab[j] for j in nbr])
    assert len(top(alone, 12) & set(bad)) <= 4
    assert len(top(both, 12) & set(bad)) >= 10


def test_score_rows_through_item_names_and_embeddings() -> None:
    age, pred, perm = ages(n=200, seed=3)
    names = [f"f{i:03d}.jpg" for i in range(len(age))]
    labels = {n: (float(a),) for n, a in zip(names, age, strict=True)}
    bad = [names[i] for i in perm[:6]]
    for n in bad:
        labels[n] = (labels[n][0] + (35 if labels[n][0] < 50 else -35),)
    rows = [PredictionRow(n, (float(p),)) for n, p in zip(names, pred, strict=True)]
    rows.append(PredictionRow("unlabelled.jpg", (30.0,)))
    emb = np.c_[age / 10, np.zeros(len(age))]
    neighbours = embedding_neighbours(names, emb + 0.01, k=8)
    assert len(neighbours[names[0]]) == 8 and names[0] not in neighbours[names[0]]
    scored = score_rows(rows, labels, neighbours)
    assert scored[-1].score is None and scored[-1].error is None
    assert all(r.score is not None and r.score >= 0 for r in scored[:-1])
    ranked = sorted(scored[:-1], key=lambda r: -r.score)
    assert {r.item for r in ranked[:6]} == set(bad)
    assert scored[0].error == pytest.approx(abs(labels[names[0]][0] - pred[0]))


def test_mean_rows_average_rounds_and_spread_is_their_disagreement() -> None:
    a = [PredictionRow("x", (0.0, 0.0), spread=3.0), PredictionRow("y", (5.0, 5.0))]
    b = [PredictionRow("x", (2.0, 0.0), spread=4.0), PredictionRow("y", (5.0, 5.0))]
    out = {r.item: r for r in mean_rows([a, b])}
    assert out["x"].pred == (1.0, 0.0) and out["y"].pred == (5.0, 5.0)
    assert out["x"].spread == pytest.approx(np.sqrt((9 + 16) / 2 + 1.0))
    assert out["y"].spread == 0.0
    assert mean_rows([a])[1].spread is None


def test_unknown_method_is_refused() -> None:
    with pytest.raises(ValueError, match="method"):
        doubt(np.zeros(5), np.zeros(5), method="magic")


def test_store_keeps_scores_and_migrates_old_stores(tmp_path: Path) -> None:
    make_biwi(tmp_path / "ds", groups=1, frames=2, size=(32, 24))
    ds = open_dataset(tmp_path / "ds")
    store = LabelStore.open(ds)
    a, b = (it.name for it in ds.items)
    store.put_predictions("r1", [PredictionRow(a, (1.0, 2.0), 3.0, 0.5, 4.25), PredictionRow(b, (1.0, 2.0))])
    got = store.predictions("r1")
    assert got[a].score == 4.25 and got[b].score is None
    db = store.db_path
    store.close()
    # a store from before scores: the predictions table without the column
    with sqlite3.connect(db) as conn:
        conn.execute("DROP TABLE predictions")
        conn.execute(
            "CREATE TABLE predictions (run_id TEXT NOT NULL, item TEXT NOT NULL, pred TEXT NOT NULL, error REAL,"
            " spread REAL, PRIMARY KEY (run_id, item))"
        )
        conn.execute("INSERT INTO predictions VALUES ('r1', ?, '[1.0, 2.0]', 3.0, NULL)", (a,))
    store = LabelStore.open(ds)
    assert store.predictions("r1")[a] == PredictionRow(a, (1.0, 2.0), 3.0, None, None)
    store.put_predictions("r1", [PredictionRow(b, (0.0, 0.0), 1.0, None, 2.0)])
    assert store.predictions("r1")[b].score == 2.0
    store.close()
