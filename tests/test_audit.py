"""The model-free label audit: sequence check on planted errors, gaps and ends, several points, scalars, merging,
and the ``imgreg audit`` command."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest

from engine.audit.findings import DUPLICATE, MODEL, SEQUENCE, Finding
from engine.audit.run import audit, merge
from engine.audit.sequence import find_sequences, frame_key
from engine.audit.smooth import fit_sequences
from engine.cli import main
from engine.data import open_dataset
from engine.data.synth import write_image
from engine.labels.store import LabelStore


def path(n: int, d: int = 2, seed: int = 0) -> np.ndarray:
    """A smooth, video-like track of ``n`` frames in ``d`` dimensions with half-pixel label noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    base = [100 + 40 * np.sin(t / 40 + k) + 0.2 * t for k in range(d)]
    return np.stack(base, 1) + rng.normal(0, 0.5, (n, d))


def top(score: np.ndarray, k: int) -> set[int]:
    return set(np.argsort(-np.nan_to_num(score, nan=-1))[:k].tolist())


def test_single_planted_frames_are_found_and_their_neighbours_are_not() -> None:
    y = path(200)
    bad = [30, 31 + 1, 90, 150]  # 30 and 32 sandwich a good frame 31
    y[30] += (6, 0)
    y[32] += (0, -7)
    y[90] += (20, 15)
    y[150] += (-5, 3)
    fit = fit_sequences(np.zeros(200, int), np.arange(200), y)
    assert top(fit.score, 4) == set(bad)
    assert fit.score[31] < 3  # the good frame between two wrong ones
    assert fit.score[90] > fit.score[30]  # the bigger error the higher doubt
    assert np.linalg.norm(fit.expected[90] - (y[90] - (20, 15))) < 2  # expected: where the label belongs


def test_a_drifted_run_is_found_whole() -> None:
    y = path(200, seed=1)
    y[100:106] += (8, -6)  # a tracker slid off for six frames
    fit = fit_sequences(np.zeros(200, int), np.arange(200), y)
    assert top(fit.score, 6) == set(range(100, 106))


def test_a_jump_across_a_gap_is_no_error_and_sequence_ends_are_judged() -> None:
    y = path(120, seed=2)
    t = np.arange(120)
    t[60:] += 40  # 40 frames missing: the head may be anywhere after the gap
    y[60:] += (60, -30)
    y[0] += (9, 0)  # the first frame of the sequence is wrong
    y[119] += (0, 9)  # and the last
    fit = fit_sequences(np.zeros(120, int), t, y)
    assert top(fit.score, 2) == {0, 119}
    assert fit.score[58:62].max() < 3


def test_sequences_do_not_mix_and_short_ones_are_not_judged() -> None:
    y = np.concatenate([path(50, seed=3), path(50, seed=4) + 200])
    seq = np.r_[np.zeros(50, int), np.ones(50, int)]
    fit = fit_sequences(seq, np.r_[np.arange(50), np.arange(50)], y)
    assert np.nanmax(fit.score) < 5  # the jump between the two videos is no one's error


def test_frame_numbers_from_names() -> None:
    assert frame_key("07/frame_00042_rgb.png", "07") == (("07", "07", "frame_", "_rgb", "png"), 42)
    assert frame_key("clips/img_0042.png")[1] == 42
    assert frame_key("a/run_000123.jpg")[1] == 123
    assert frame_key("a/face.jpg") is None
    assert frame_key("img_0042.png")[0] != frame_key("cam_0042.png")[0]


def test_numbered_unrelated_images_are_no_sequence() -> None:
    rng = np.random.default_rng(0)
    names = [f"img/{i:03d}.png" for i in range(40)]
    labs = [tuple(v) for v in rng.uniform(0, 100, (40, 2))]
    assert find_sequences(names, ["img"] * 40, labs).names == []
    smooth = [tuple(v) for v in path(40)]
    assert len(find_sequences(names, ["img"] * 40, smooth).names) == 40


def write_sequence(root: Path, labels: np.ndarray, points: int = 1) -> None:
    """A points CSV of tiny images named like video frames."""
    img = np.zeros((8, 8, 3), np.uint8)
    cols = ",".join(f"x{p + 1},y{p + 1}" if points > 1 else "x,y" for p in range(points))
    rows = [f"image,{cols}"]
    for i, lab in enumerate(labels):
        write_image(root / "clip" / f"img_{i + 1:04d}.png", img)
        rows.append(f"clip/img_{i + 1:04d}.png," + ",".join(f"{v:.3f}" for v in lab))
    (root / "labels.csv").write_text("\n".join(rows) + "\n")


def test_audit_on_a_dataset_with_several_points(tmp_path: Path) -> None:
    y = np.concatenate([path(60, seed=5), path(60, seed=6) + 50], 1)
    y[20, 2:] += (9, 0)  # the second point of frame 21 is wrong
    write_sequence(tmp_path, y, points=2)
    ds = open_dataset(tmp_path)
    assert ds.n_points == 2
    store = LabelStore.open(ds)
    events: list[dict] = []
    try:
        found = audit(ds, store, events.append)
    finally:
        store.close()
    assert found[0].item == "clip/img_0021.png" and found[0].reason == SEQUENCE
    assert found[0].why.startswith("point 2 is ")
    assert len(found[0].expected) == 4
    assert abs(found[0].expected[2] - (y[20, 2] - 9)) < 2
    assert [f.score for f in found] == sorted((f.score for f in found), reverse=True)
    assert len({(f.item, f.reason) for f in found}) == len(found)
    assert {"type": "audit_progress", "done": 3, "total": 3} in events


def test_scalars_in_a_sequence() -> None:
    v = path(100, d=1, seed=7)
    v[40] += 6
    fit = fit_sequences(np.zeros(100, int), np.arange(100), v)
    assert int(np.nanargmax(fit.score)) == 40


def test_merge_makes_one_row_per_item_strongest_reason_first() -> None:
    a = [Finding("x", 4.0, SEQUENCE, "far from frames"), Finding("y", 1.0, SEQUENCE, "fine")]
    b = [
        Finding("x", 6.0, MODEL, "model"),
        Finding("x", 2.0, MODEL, "weaker"),
        Finding("z", 3.0, DUPLICATE, "d"),
    ]
    rows = merge(a, b)
    assert [d.item for d in rows] == ["x", "z", "y"]
    assert rows[0].reasons == (MODEL, SEQUENCE)
    assert rows[0].score == pytest.approx((36 + 16) ** 0.5)
    assert rows[0].why == "model; far from frames"


def test_cli_audit_csv_and_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    y = path(40, seed=8)
    y[10] += (10, 0)
    write_sequence(tmp_path / "ds", y)
    out = tmp_path / "a.csv"
    assert main(["audit", str(tmp_path / "ds"), "--out", str(out), "--top", "5"]) == 0
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert list(rows[0]) == ["rank", "item", "score", "reason", "why", "expected_x", "expected_y"]
    assert len(rows) == 5 and rows[0]["item"] == "clip/img_0011.png" and rows[0]["reason"] == "sequence"
    assert abs(float(rows[0]["expected_x"]) - (y[10, 0] - 10)) < 2
    capsys.readouterr()
    assert main(["audit", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("imgreg: error:") and err.count("\n") == 1
    assert main(["audit", str(tmp_path / "ds"), "--top", "0"]) == 2


def test_rank_merges_the_model_with_the_audit(tmp_path: Path) -> None:
    from engine.audit.run import with_audit
    from engine.labels.store import PredictionRow

    y = path(40, seed=9)
    y[10] += (12, 0)  # the sequence sees it; the model below doubts another frame
    write_sequence(tmp_path, y)
    ds = open_dataset(tmp_path)
    store = LabelStore.open(ds)
    try:
        names = [it.name for it in ds.items]
        rows = [PredictionRow(n, tuple(y[i]), 0.5, None, 1.0) for i, n in enumerate(names)]
        rows[10] = PredictionRow(names[10], tuple(y[10] - (12, 0)), 12.0, None, 5.0)
        rows[30] = PredictionRow(names[30], tuple(y[30]), 4.0, None, 4.0)
        ranked, doubts = with_audit(ds, store, rows)
    finally:
        store.close()
    assert ranked[0].item == names[10] and ranked[1].item == names[30]
    assert set(doubts[names[10]].reasons) == {SEQUENCE, MODEL}
    assert doubts[names[30]].reasons[0] == MODEL


def test_look_alike_and_duplicate_findings_from_stored_embeddings(tmp_path: Path) -> None:
    from engine.audit.findings import NEIGHBOURS
    from engine.data.synth import make_points_csv
    from engine.runs.embeddings import Embeddings, embeddings_path, item_key, save_embeddings

    syn = make_points_csv(tmp_path / "pts", n=24)
    ds = open_dataset(syn.root)
    names = [it.name for it in ds.items]
    rng = np.random.default_rng(0)
    centres = np.array([[20.0, 20.0], [60.0, 40.0]])
    with LabelStore.open(ds) as store:
        for i, n in enumerate(names):  # two clusters of look-alikes share a label; item 0's is 15 px off
            lab = centres[i % 2] + rng.normal(0, 0.3, 2) + ((15, 0) if i == 0 else (0, 0))
            store.correct(n, tuple(float(v) for v in lab))
        vecs = rng.normal(size=(2, 16))[np.arange(24) % 2] + 0.6 * rng.normal(size=(24, 16))
        vecs[23] = vecs[20]  # an exact duplicate of item 20 ...
        store.correct(names[23], tuple(float(v) for v in centres[1] + (9, 9)))  # ... labelled elsewhere
        keys = [item_key(it.path) for it in ds.items]
        save_embeddings(embeddings_path(store.dir, "imagenet-x"), Embeddings(names, vecs, keys, {}))
        found = audit(ds, store)
    nb = [f for f in found if f.reason == NEIGHBOURS]
    assert {nb[0].item, nb[1].item} == {names[0], names[23]}
    assert "look-alike" in nb[0].why
    dup = [f for f in found if f.reason == DUPLICATE]
    assert {f.item for f in dup} == {names[20], names[23]}  # which of the two is wrong: a person decides
    assert not [f for f in found if f.reason == SEQUENCE]  # numbered names, but no video


def test_a_still_video_is_a_sequence(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    y = np.array([50.0, 30.0]) + rng.normal(0, 0.3, (30, 2))  # someone sitting still
    y[12] += (6, 0)
    write_sequence(tmp_path, y)
    ds = open_dataset(tmp_path)
    with LabelStore.open(ds) as store:
        found = audit(ds, store)
    assert found[0].item == "clip/img_0013.png" and found[0].reason == SEQUENCE


def test_scalar_dataset_csv_has_one_expected_column(tmp_path: Path) -> None:
    v = path(30, d=1, seed=12)[:, 0]
    v[7] += 8
    img = np.zeros((8, 8, 3), np.uint8)
    rows = ["image,value"]
    for i, x in enumerate(v):
        write_image(tmp_path / "ds" / "clip" / f"img_{i + 1:04d}.png", img)
        rows.append(f"clip/img_{i + 1:04d}.png,{x:.3f}")
    (tmp_path / "ds" / "values.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "a.csv"
    assert main(["audit", str(tmp_path / "ds"), "--out", str(out)]) == 0
    got = list(csv.DictReader(io.StringIO(out.read_text())))
    assert list(got[0]) == ["rank", "item", "score", "reason", "why", "expected"]
    assert got[0]["item"] == "clip/img_0008.png" and "where frames" in got[0]["why"]
    assert abs(float(got[0]["expected"]) - (v[7] - 8)) < 2
