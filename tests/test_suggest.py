"""Labelling new images fast: unlabelled Biwi frames, ``imgreg suggest`` (cold start and with a run) and
``imgreg accept`` (confident proposals within a calibrated bound)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.audit.accept import AcceptError, accept, safe_proposals, split_proposals
from engine.audit.suggest import suggest, unlabelled
from engine.cli import main
from engine.data import open_dataset
from engine.data.synth import make_biwi, make_scalar_csv
from engine.labels.store import LabelStore, PredictionRow
from engine.runs.embeddings import Embeddings

REPO = Path(__file__).resolve().parents[1]


def new_frames(root: Path, groups: int = 3, frames: int = 6, keep: int = 0) -> Path:
    """A Biwi set whose pose files are gone except the first ``keep`` frames of group 01 (new, unlabelled)."""
    s = make_biwi(root, groups=groups, frames=frames, size=(64, 48))
    for i, name in enumerate(sorted(s.truth)):
        if i >= keep:
            (root / name.replace("_rgb.png", "_pose.txt")).unlink()
    return root


def vectors(names: list[str], seed: int = 0, dim: int = 16) -> Embeddings:
    """Random unit-ish embeddings, one per name (distinct items sit about 1.4 apart)."""
    rng = np.random.default_rng(seed)
    return Embeddings(list(names), rng.normal(size=(len(names), dim)).astype(np.float16), ["k"] * len(names))


def test_unlabelled_biwi_frames_are_items_not_problems(tmp_path: Path) -> None:
    root = new_frames(tmp_path / "b", keep=2)
    for g in ("02", "03"):
        (root / g / "rgb.cal").unlink()  # new frames need no calibration
    ds = open_dataset(root)
    assert len(ds.items) == 18 and not ds.problems
    assert sum(it.label is not None for it in ds.items) == 2
    assert any("frames without a pose file (unlabelled)" in n for n in ds.notes)
    with LabelStore.open(ds) as store:
        assert len(unlabelled(ds, store)) == 16


def test_cold_start_spreads_over_groups_skips_duplicates_stable(tmp_path: Path) -> None:
    ds = open_dataset(new_frames(tmp_path / "b", groups=3, frames=6, keep=1))
    names = [it.name for it in ds.items]
    emb = vectors(names)
    # planted near-duplicates: every frame of group 02 is a copy of 02's first frame
    g2 = [n for n in names if n.startswith("02/")]
    emb.vecs[[names.index(n) for n in g2]] = emb.vecs[names.index(g2[0])]
    with LabelStore.open(ds) as store:
        todo = set(unlabelled(ds, store))
        picks, notes = suggest(ds, store, emb, 6)
        again, _ = suggest(ds, store, emb, 6)
    items = [p.item for p in picks]
    assert items == [p.item for p in again] and [p.rank for p in picks] == list(range(1, 7))
    assert set(items) <= todo and names[0] not in items  # only unlabelled items
    assert sum(n in g2 for n in items) == 1  # one of the copies, never two
    assert {n.split("/")[0] for n in items} == {"01", "02", "03"}
    assert all("cold start" in p.reason for p in picks)
    # a duplicate of a labelled item is never suggested
    emb.vecs[names.index(names[1])] = emb.vecs[names.index(names[0])]
    with LabelStore.open(ds) as store:
        picks, _ = suggest(ds, store, emb, 20)
    assert names[1] not in [p.item for p in picks]
    assert len(picks) == len(todo) - 1 - (len(g2) - 1)  # every distinct unlabelled item, nothing twice
    assert any("near-duplicates" in n for n in notes) is False  # 6 asked, 6 distinct found


def test_frames_of_one_video_are_suggested_least_alike_first_copies_never(tmp_path: Path) -> None:
    # Real Biwi frames of one person sit 0.04-0.28 apart in ImageNet space: all "near-duplicates" by the 0.35 of
    # `imgreg duplicates`, so suggest once returned nothing for them.
    ds = open_dataset(new_frames(tmp_path / "b", groups=3, frames=6, keep=1))
    names = [it.name for it in ds.items]
    vecs = np.zeros((len(names), 16), np.float32)
    vecs[:, 0] = 1.0
    for i in range(14):
        vecs[i, i + 1] = 0.2  # 0.28 from one another: alike, not copies
    vecs[14, 15] = 0.35  # 0.39 from the others: the one not alike
    vecs[15:18] = vecs[1:4]  # exact copies of three frames
    emb = Embeddings(names, vecs.astype(np.float16), ["k"] * len(names))
    with LabelStore.open(ds) as store:
        picks, notes = suggest(ds, store, emb, 20)
    items = [p.item for p in picks]
    assert items[0] == names[14] and "cold start" not in picks[1].reason
    assert len(items) == 14 and len(set(items)) == 14  # every frame but the labelled one, no copy twice
    assert all(len({names[i], names[i + 14]} & set(items)) == 1 for i in (1, 2, 3))
    assert all(p.reason.startswith("alike to a labelled or chosen image (distance 0.2") for p in picks[1:])
    assert any("13 of them are alike" in n for n in notes) and any("not copies" in n for n in notes)


def test_with_run_uncertain_but_diverse_first(tmp_path: Path) -> None:
    ds = open_dataset(new_frames(tmp_path / "b", groups=3, frames=6, keep=3))
    names = [it.name for it in ds.items]
    emb = vectors(names, seed=1)
    with LabelStore.open(ds) as store:
        todo = unlabelled(ds, store)
        hard = todo[5]
        twins = [todo[6], todo[7]]  # as unsure as `hard` and nearly the same image
        pose = np.zeros(emb.vecs.shape[1], np.float16)
        pose[0] = 4  # a pose unlike every other image, labelled or not
        emb.vecs[names.index(hard)] = pose
        for t in twins:
            emb.vecs[names.index(t)] = pose * np.float16(1.01)
        radius = {m: 2.0 for m in todo} | {hard: 20.0, twins[0]: 19.0, twins[1]: 19.5}
        rows = [PredictionRow(m, (30.0, 20.0), interval=(radius[m],), coverage=0.9) for m in todo]
        store.put_predictions("r1", rows)
        picks, _ = suggest(ds, store, emb, 3, store.predictions("r1"))
    items = [p.item for p in picks]
    # first the part of the pool where the model is unsurest (the hard pose and its two twins), one of them only
    assert items[0] in {hard, *twins} and len({hard, *twins} & set(items)) == 1
    assert len(set(items)) == 3  # then other parts of the pool, not the twins
    assert picks[0].reason.startswith("the model is unsure: 90% radius ")


def test_accept_respects_bound_never_touches_labels_is_journaled(tmp_path: Path) -> None:
    ds = open_dataset(new_frames(tmp_path / "b", groups=2, frames=4, keep=2))
    with LabelStore.open(ds) as store:
        todo = unlabelled(ds, store)
        done = [it.name for it in ds.items if it.label is not None]
        before = {n: store.effective(n) for n in done}
        rows = [
            PredictionRow(m, (10.0 + i, 12.0), interval=(1.0 + i,), coverage=0.9) for i, m in enumerate(todo)
        ]
        rows += [PredictionRow(n, (1.0, 1.0), interval=(0.1,), coverage=0.9) for n in done]
        store.put_predictions("r1", rows)
        store.put_predictions("bare", [PredictionRow(m, (10.0, 12.0), spread=1.0) for m in todo])
        with pytest.raises(AcceptError, match="no intervals"):
            safe_proposals(ds, store, "bare", max_radius=5)
        with pytest.raises(AcceptError, match="max-radius"):
            safe_proposals(ds, store, "r1", max_width=5)
        safe, unsure = split_proposals(ds, store, "r1", max_radius=3.0)
        assert [r.item for r in safe] == todo[:3] and len(unsure) == len(todo) - 3
        n_hist = len(store.history())
        assert accept(store, safe) == 3
        assert {n: store.effective(n) for n in done} == before  # labelled items untouched
        for i, m in enumerate(todo[:3]):
            rec = store.record(m)
            assert rec.source == "prediction" and rec.effective == (10.0 + i, 12.0)
        assert len(store.history()) == n_hist + 3
        assert store.effective(todo[3]) is None
        assert not safe_proposals(ds, store, "r1", max_radius=3.0)  # now labelled: not proposed again
    entries = (ds.root / ".imgreg").rglob("*journal*")
    assert any(todo[0] in p.read_text(errors="replace") for p in entries if p.is_file())


def test_accept_max_width_takes_only_narrow_scalar_intervals(tmp_path: Path, capsys) -> None:
    """Scalars: ``accept --max-width V`` labels the unlabelled items whose interval is at most V wide."""
    root = make_scalar_csv(tmp_path / "s", n=8).root
    lines = (root / "values.csv").read_text().splitlines()
    (root / "values.csv").write_text(
        "\n".join(lines[:3] + [ln.split(",")[0] + "," for ln in lines[3:]]) + "\n"
    )
    ds = open_dataset(root)
    with LabelStore.open(ds) as store:
        todo = unlabelled(ds, store)
        assert len(todo) == 6
        widths = [2.0, 4.0, 6.0, 8.0, 10.0, 12.0]
        rows = [
            PredictionRow(m, (40.0 + i,), interval=(40.0 + i - w / 2, 40.0 + i + w / 2), coverage=0.9)
            for i, (m, w) in enumerate(zip(todo, widths))
        ]
        store.put_predictions("r1", rows)
        with pytest.raises(AcceptError, match="max-width"):
            safe_proposals(ds, store, "r1", max_radius=5)
    source = (root / "values.csv").read_bytes()
    assert main(["accept", str(root), "--run", "r1", "--max-width", "6"]) == 0
    capsys.readouterr()
    with LabelStore.open(open_dataset(root)) as store:
        for i, m in enumerate(todo):
            rec = store.record(m)
            if widths[i] <= 6:
                assert rec.source == "prediction" and rec.effective == (40.0 + i,)
            else:
                assert rec.effective is None
    assert (root / "values.csv").read_bytes() == source  # the source CSV is untouched


def test_cli_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = new_frames(tmp_path / "b", groups=2, frames=3, keep=1)
    ds = open_dataset(root)
    with LabelStore.open(ds) as store:
        store.put_predictions("bare", [PredictionRow(it.name, (1.0, 1.0), spread=1.0) for it in ds.items])
    cases = [
        (["suggest", str(root), "--n", "0"], "--n"),
        (["suggest", str(tmp_path / "nope")], "does not exist"),
        (["suggest", str(root), "--run", "ghost"], "ghost"),
        (["accept", str(root), "--run", "bare", "--max-radius", "3"], "--coverage 0.9"),
        (["accept", str(root), "--run", "bare", "--max-width", "3"], "--max-radius"),
        (["accept", str(root), "--run", "ghost", "--max-radius", "3"], "ghost"),
    ]
    for argv, words in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and words in err, (argv, err)


def test_cli_suggest_and_accept_on_stored_rows(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = new_frames(tmp_path / "b", groups=3, frames=4, keep=2)
    ds = open_dataset(root)
    names = [it.name for it in ds.items]
    from engine.runs.embeddings import embeddings_path, item_key, save_embeddings

    with LabelStore.open(ds) as store:
        emb = vectors(names, seed=3)
        emb.keys = [item_key(it.path) for it in ds.items]
        emb.meta = {"source": "imagenet-test"}
        save_embeddings(embeddings_path(store.dir, "imagenet-test"), emb)  # stored: no torch needed
        todo = unlabelled(ds, store)
        store.put_predictions(
            "r1",
            [PredictionRow(m, (5.0, 5.0), interval=(1.0 + i,), coverage=0.9) for i, m in enumerate(todo)],
        )
    assert main(["suggest", str(root), "--n", "4", "--run", "r1", "--json"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert lines[-1]["type"] == "summary" and [d["rank"] for d in lines[-1]["items"]] == [1, 2, 3, 4]
    assert set(lines[-1]["items"][0]) == {"rank", "item", "reason"}
    assert {d["item"] for d in lines[-1]["items"]} <= set(todo)
    assert main(["suggest", str(root), "--n", "2"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "rank,item,reason" and len(out) == 3
    assert main(["accept", str(root), "--run", "r1", "--max-radius", "2.5", "--json"]) == 0
    s = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert s["accepted"] == 2 and s["too_uncertain"] == len(todo) - 2


def test_training_skips_and_predict_covers_unlabelled_frames(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from engine.learn.predict import predict
    from engine.learn.train import TrainConfig, train

    ds = open_dataset(new_frames(tmp_path / "b", groups=2, frames=6, keep=6))  # group 01 labelled, 02 new
    with LabelStore.open(ds) as store:
        cfg = TrainConfig(arch="tiny", pretrained=False, size=(32, 32), epochs=1, bs=4, device="cpu")
        info = train(ds, store, cfg)
        assert info.summary["n_train"] + info.summary["n_valid"] == 6
        rows = predict(info.run_dir, ds, store)
        assert {r.item for r in rows} == {it.name for it in ds.items}
        assert set(unlabelled(ds, store)) <= set(store.predictions(info.run_id))


def test_suggest_cancel_on_stdin_stops_the_embedding(tmp_path: Path) -> None:
    root = new_frames(tmp_path / "b", groups=2, frames=4, keep=1)
    cmd = [sys.executable, "-m", "engine.cli", "suggest", str(root), "--n", "2", "--json", "--control-stdin"]
    res = subprocess.run(cmd, input="cancel\n", capture_output=True, text=True, timeout=300, cwd=REPO)
    lines = [json.loads(s) for s in res.stdout.splitlines()]
    assert res.returncode == 1 and lines[-1] == {"type": "summary", "cancelled": True}
    assert any(e["type"] == "cancelled" for e in lines)
