"""Ranking: order by error, whole-group folds, out-of-fold predictions find planted label errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from engine.data import open_dataset
from engine.data.synth import make_biwi, make_utkface
from engine.labels.quality import mean_rows, rank_rows, rank_run, score_rows
from engine.labels.store import LabelStore, PredictionRow
from engine.learn.dls import Sample
from engine.learn.folds import fold_indices
from engine.learn.rank import default_model_neighbours, out_of_fold
from engine.learn.train import TrainConfig, TrainingError, prepare
from engine.runs.files import read_json

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_rank_rows_orders_largest_error_first() -> None:
    rows = [
        PredictionRow("a", (0.0,), 1.0),
        PredictionRow("b", (0.0,), None),
        PredictionRow("c", (0.0,), 5.0),
    ]
    assert [r.item for r in rank_rows(rows)] == ["c", "a", "b"]


def test_fold_indices_hold_out_whole_groups() -> None:
    samples = [
        Sample(f"{g}/{i}", g, Path("x"), (0.0, 0.0), (8, 8)) for g in "abcdefg" for i in range(2 + (g == "a"))
    ]
    folds = fold_indices(samples, 3, seed=0)
    flat = sorted(i for f in folds for i in f)
    assert flat == list(range(len(samples)))
    groups = [{samples[i].group for i in f} for f in folds]
    assert all(not (groups[a] & groups[b]) for a in range(3) for b in range(a + 1, 3))
    assert max(map(len, folds)) - min(map(len, folds)) <= 3
    # fewer groups than folds: items are spread instead
    single = [Sample(f"{i}", ".", Path("x"), (0.0,), (8, 8)) for i in range(7)]
    assert sorted(len(f) for f in fold_indices(single, 3)) == [2, 2, 3]
    with pytest.raises(ValueError):
        fold_indices(single, 1)


@pytest.mark.slow
def test_out_of_fold_ranks_planted_errors_first(tmp_path: Path) -> None:
    syn = make_biwi(tmp_path / "ds", groups=6, frames=20, size=(64, 48), distractors=0, corrupt=3, seed=5)
    ds = open_dataset(tmp_path / "ds")
    store = LabelStore.open(ds)
    # the spatial (DSNT) head learns this from scratch in a few epochs; the pooled head needs many more
    cfg = TrainConfig(
        arch="tiny", head="spatial", pretrained=False, size=(48, 64), bs=8, lr=3e-3, epochs=8, device="cpu"
    )
    events: list[dict] = []
    res = out_of_fold(ds, store, cfg, folds=3, on_event=events.append)
    assert res.run_id.startswith("oof-")
    assert len(res.rows) == len(ds.items)
    assert [e["fold"] for e in events if e["type"] == "fold"] == [1, 2, 3]
    assert events[-1]["type"] == "finished" and events[-1]["run_id"] == res.run_id
    # the raw out-of-fold error puts every planted error in the top 5
    by_error = rank_rows(res.rows, by="error")
    assert syn.corrupted <= {r.item for r in by_error[:5]}, (by_error[:5], syn.corrupted)
    # the label-quality score (the default order) puts a planted error first and most of them in the top 5; on a set
    # this small (12 neighbours per local scale) it can rank one planted error whose image the model finds hard far
    # lower, where the raw error does not (bench_label_errors.py measures both on larger sets)
    assert res.rows[0].item in syn.corrupted
    assert len(syn.corrupted & {r.item for r in res.rows[:5]}) >= 2, (res.rows[:5], syn.corrupted)
    assert res.metrics["median_error"] < 8
    scores = [r.score for r in res.rows]
    assert scores == sorted(scores, reverse=True)
    assert [r.item for r in rank_run(store, res.run_id)] == [r.item for r in res.rows]
    assert (res.run_dir / "summary.json").is_file()
    store.close()


def test_out_of_fold_needs_enough_items(tmp_path: Path) -> None:
    make_biwi(tmp_path / "ds", groups=1, frames=2, size=(32, 24))
    ds = open_dataset(tmp_path / "ds")
    with pytest.raises(TrainingError, match="folds"):
        out_of_fold(ds, None, TrainConfig(arch="tiny", pretrained=False), folds=5)


def test_rank_run_uses_current_labels(tmp_path: Path) -> None:
    make_biwi(tmp_path / "ds", groups=1, frames=3, size=(32, 24))
    ds = open_dataset(tmp_path / "ds")
    store = LabelStore.open(ds)
    a, b, c = (it.name for it in ds.items)
    store.put_predictions("r1", [PredictionRow(n, (10.0, 10.0), 0.0) for n in (a, b, c)])
    store.correct(b, (13.0, 14.0))
    store.correct(a, (10.0, 11.0))
    store.correct(c, (10.0, 10.0))
    ranked = rank_run(store, "r1")
    assert [r.item for r in ranked] == [b, a, c]
    assert [r.error for r in ranked] == pytest.approx([5.0, 1.0, 0.0])
    store.close()


@pytest.mark.slow
def test_repeats_are_reproducible_and_differ_from_each_other(tmp_path: Path) -> None:
    make_biwi(tmp_path / "ds", groups=4, frames=4, size=(32, 24), distractors=0, seed=1)
    ds = open_dataset(tmp_path / "ds")
    store = LabelStore.open(ds)
    cfg = TrainConfig(
        arch="tiny", head="spatial", pretrained=False, size=(24, 32), bs=4, epochs=1, device="cpu"
    )
    events: list[dict] = []
    one = out_of_fold(ds, store, cfg, folds=2, repeats=2, on_event=events.append)
    two = out_of_fold(ds, store, cfg, folds=2, repeats=2)
    assert [(e["fold"], e["folds"]) for e in events if e["type"] == "fold"] == [
        (1, 4),
        (2, 4),
        (3, 4),
        (4, 4),
    ]
    assert len(one.rounds) == 2 and all(len(r) == 16 for r in one.rounds)
    preds = {r.item: r.pred for r in one.rows}
    assert preds == {r.item: r.pred for r in two.rows}
    # the second round has its own seed and split: other predictions, whose disagreement is in the spread
    first = {r.item: r.pred for r in one.rounds[0]}
    assert any(first[r.item] != r.pred for r in one.rounds[1])
    assert all(r.spread is not None and r.score is not None for r in one.rows)
    stored = store.predictions(one.run_id)
    assert {n: r.score for n, r in stored.items()} == {r.item: r.score for r in one.rows}
    assert read_json(one.run_dir / "summary.json")["repeats"] == 2
    # the same models without the mirror images averaged in (flip TTA, on by default) predict otherwise
    plain = out_of_fold(ds, store, cfg, folds=2, repeats=2, tta=False)
    assert any(preds[r.item] != r.pred for r in plain.rows)
    assert [read_json(r.run_dir / "summary.json")["tta"] for r in (one, plain)] == [True, False]
    store.close()


def test_scalar_neighbours_come_from_the_fold_models(tmp_path: Path) -> None:
    syn = make_utkface(tmp_path / "utk", n=16, size=32)
    twin_of = sorted(syn.truth)[0]
    twin = f"{twin_of.split('_')[0]}_0_0_20170109999999999.jpg.chip.jpg"
    shutil.copy(tmp_path / "utk" / twin_of, tmp_path / "utk" / twin)
    ds = open_dataset(tmp_path / "utk")
    store = LabelStore.open(ds)
    cfg = TrainConfig(arch="tiny", pretrained=False, size=(32, 32), bs=4, epochs=1, device="cpu", seed=3)
    res = out_of_fold(ds, store, cfg, folds=2, repeats=2, model_neighbours=3)
    _, samples, _ = prepare(ds, store, cfg)
    names = [s.name for s in samples]
    splits = [fold_indices(samples, 2, cfg.seed + r) for r in range(2)]
    apart = 0
    for r, folds in enumerate(splits):
        for fold in folds:
            held = {names[i] for i in fold}
            for name in held:
                # three per round, in round order, each an item this fold's model trained on
                nbrs = res.neighbours[name][3 * r : 3 * r + 3]
                assert len(nbrs) == 3 and not set(nbrs) & held
            if (twin in held) != (twin_of in held):
                apart += 1
                # an identical image in the training folds is the model's nearest
                assert res.neighbours[twin if twin in held else twin_of][3 * r] in (twin, twin_of)
    assert apart >= 1
    # the score takes them as its second opinion
    labels = store.effective_labels()
    want = score_rows(mean_rows(res.rounds), labels, res.neighbours)
    assert {r.item: r.score for r in res.rows} == pytest.approx({r.item: r.score for r in want})
    assert read_json(res.run_dir / "summary.json")["model_neighbours"] == 3
    # by default only scalars ranked over several rounds ask the fold models (one round's ten labels misled)
    assert [default_model_neighbours(k, r) for k, r in (("scalar", 3), ("scalar", 1), ("point", 3))] == [
        10,
        0,
        0,
    ]
    off = out_of_fold(ds, store, cfg, folds=2)
    assert off.neighbours == {} and read_json(off.run_dir / "summary.json")["model_neighbours"] == 0
    store.close()
