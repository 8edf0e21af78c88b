"""The decoded-image cache: equal to today's decode, rebuilt when changed or damaged, safe to cancel and to build from
two processes at once, shared by the folds of ``rank --folds``, and used by the app's training child."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.core import Cancelled, CancelToken
from engine.data import cache as cache_mod
from engine.data import open_dataset
from engine.data.cache import cache_dir, ensure_cache, list_caches, open_cache
from engine.data.images import load_image
from engine.data.squish import squish
from engine.data.synth import make_biwi, make_utkface

SIZE = (24, 32)


def _items(ds):
    return [(it.name, it.path) for it in ds.items if not it.problem]


def _truth(ds, size=SIZE) -> dict[str, np.ndarray]:
    return {n: squish(load_image(p), size) for n, p in _items(ds)}


def _assert_matches(c, ds, size=SIZE) -> None:
    for n, img in _truth(ds, size).items():
        got = c.get(n, ds.item(n).path)
        if got is not None:
            assert np.abs(got.astype(int) - img.astype(int)).max() <= 1, n


@pytest.fixture
def biwi(tmp_path):
    make_biwi(tmp_path / "biwi", groups=3, frames=8, size=(64, 48))
    return open_dataset(tmp_path / "biwi")


def _progress(events):
    return [e for e in events if e["type"] == "cache_progress"]


def test_cached_batches_equal_todays_decode_and_points(biwi):
    import torch

    from engine.learn.dls import make_dls, split_groups, usable_samples
    from engine.learn.feed import build_for, feed_dls

    s = usable_samples(biwi).samples
    _, valid, _ = split_groups(s)
    cache, slots = build_for(s, biwi.root / ".imgreg", SIZE)
    old = make_dls(s, valid, "point", SIZE, 4, torch.device("cpu"), augment=False)
    new = feed_dls(s, valid, "point", SIZE, 4, torch.device("cpu"), cache.array, slots, augment=False)
    n = 0
    for (xo, yo), (xn, yn) in zip(old.valid, new.valid, strict=True):
        assert (xo * 255 - xn * 255).abs().max() <= 1.0 + 1e-4
        assert torch.equal(yo, yn)
        assert type(xo) is type(xn) and type(yo) is type(yn)
        n += len(xn)
    assert n == len(valid)
    assert [it.name for it in new.valid.items] == [s[i].name for i in valid]
    # the training loader shuffles whole batches with augmentation and normalisation on them
    aug = feed_dls(
        s, valid, "point", SIZE, 4, torch.device("cpu"), cache.array, slots, stats=([0.5] * 3, [0.25] * 3)
    )
    x, y = aug.one_batch()
    assert x.shape == (4, 3, *SIZE) and y.shape == (4, 1, 2) and len(aug.train) == (len(s) - len(valid)) // 4


def test_cached_scalars(tmp_path):
    import torch

    from engine.learn.dls import make_dls, split_groups, usable_samples
    from engine.learn.feed import build_for, feed_dls

    make_utkface(tmp_path / "utk", n=12, size=40)
    ds = open_dataset(tmp_path / "utk")
    s = usable_samples(ds).samples
    _, valid, _ = split_groups(s)
    cache, slots = build_for(s, tmp_path / "store", SIZE)
    old = make_dls(s, valid, "scalar", SIZE, 4, torch.device("cpu"), augment=False)
    new = feed_dls(s, valid, "scalar", SIZE, 4, torch.device("cpu"), cache.array, slots, augment=False)
    for (xo, yo), (xn, yn) in zip(old.valid, new.valid, strict=True):
        assert (xo * 255 - xn * 255).abs().max() <= 1.0 + 1e-4
        assert torch.equal(yo, yn)


def test_cache_equals_decode_and_is_reused(biwi, tmp_path):
    d = cache_dir(tmp_path, SIZE)
    ev = []
    c = ensure_cache(d, SIZE, _items(biwi), ev.append)
    assert _progress(ev)[-1] == {"type": "cache_progress", "done": 24, "total": 24}
    assert len(c.entries) == 24
    _assert_matches(c, biwi)
    assert c.orig_size(biwi.items[0].name) == (64, 48)
    ev.clear()
    again = ensure_cache(d, SIZE, _items(biwi), ev.append)
    assert ev == [] and again.entries == c.entries
    assert list_caches(tmp_path)[0]["items"] == 24


def test_changed_file_is_decoded_again(biwi, tmp_path):
    d = cache_dir(tmp_path, SIZE)
    ensure_cache(d, SIZE, _items(biwi))
    it = biwi.items[3]
    other = load_image(biwi.items[5].path)
    import cv2

    cv2.imwrite(str(it.path), cv2.cvtColor(other, cv2.COLOR_RGB2BGR))
    os.utime(it.path, ns=(os.stat(it.path).st_atime_ns, os.stat(it.path).st_mtime_ns + 10**9))
    old = open_cache(d, SIZE)
    assert old.get(it.name, it.path) is None  # stale: its file changed
    ev = []
    c = ensure_cache(d, SIZE, _items(biwi), ev.append)
    assert _progress(ev)[-1]["total"] == 1
    assert np.abs(c.get(it.name, it.path).astype(int) - squish(other, SIZE).astype(int)).max() <= 1
    _assert_matches(c, biwi)


@pytest.mark.parametrize("damage", ["truncate", "manifest", "missing-data"])
def test_damaged_cache_reads_absent_and_is_rebuilt(biwi, tmp_path, damage):
    d = cache_dir(tmp_path, SIZE)
    c = ensure_cache(d, SIZE, _items(biwi))
    data = d / json.loads((d / "manifest.json").read_text())["data"]
    if damage == "truncate":
        with open(data, "r+b") as f:
            f.truncate(c.array.nbytes // 2)
    elif damage == "manifest":
        (d / "manifest.json").write_text('{"version": 1, "items": ')
    else:
        data.unlink()
    del c
    assert open_cache(d, SIZE) is None
    ev = []
    c = ensure_cache(d, SIZE, _items(biwi), ev.append)
    assert _progress(ev)[-1]["total"] == 24
    _assert_matches(c, biwi)


def test_cancelled_build_leaves_nothing_trusted(biwi, tmp_path):
    d = cache_dir(tmp_path, SIZE)
    token = CancelToken()

    def on_event(e):
        if e["type"] == "cache_progress" and e["done"] > 0:
            token.cancel("now")

    with pytest.raises(Cancelled):
        ensure_cache(d, SIZE, _items(biwi), on_event, token, workers=1)
    part = open_cache(d, SIZE)
    kept = len(part.entries) if part is not None else 0
    assert kept < 24
    if part is not None:
        _assert_matches(part, biwi)
        assert all(e[3] < len(part.array) for e in part.entries.values())
    # bytes past the manifest's slots (a torn write) are never read: scribble over them
    data = next(d.glob("images-*.u8"))
    with open(data, "ab") as f:
        f.write(b"\xff" * 5000)
    ev = []
    c = ensure_cache(d, SIZE, _items(biwi), ev.append)
    assert _progress(ev)[-1]["total"] == 24 - kept
    assert len(c.entries) == 24
    _assert_matches(c, biwi)


def test_two_processes_build_one_cache_at_once(biwi, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    cmd = [sys.executable, "-m", "engine.cli", "cache", str(biwi.root), "--size", "24x32", "--json"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    decoded = 0
    for out, _ in outs:
        events = [json.loads(line) for line in out.decode().splitlines() if line.startswith("{")]
        prog = _progress(events)
        decoded += prog[-1]["total"] if prog else 0
        assert events[-1]["type"] == "summary" and events[-1]["caches"][0]["items"] == 24
    assert decoded == 24  # one process decoded everything, the other found it done
    c = open_cache(cache_dir(biwi.root / ".imgreg", SIZE), SIZE)
    assert len(c.entries) == 24
    _assert_matches(c, biwi)


def test_full_disk_falls_back_to_decoding_with_a_note(biwi, monkeypatch):
    from engine.learn.train import TrainConfig, train

    monkeypatch.setattr(cache_mod, "free_bytes", lambda d: 0)
    ev = []
    cfg = TrainConfig(arch="tiny", pretrained=False, size=SIZE, epochs=1, bs=4)
    info = train(biwi, None, cfg, ev.append)
    notes = [e["message"] for e in ev if e["type"] == "note"]
    assert any("disk space" in m and "on the fly" in m for m in notes), notes
    assert info.metrics
    assert open_cache(cache_dir(biwi.root / ".imgreg", SIZE), SIZE) is None


def test_rank_folds_decodes_each_file_once(biwi, monkeypatch):
    from collections import Counter

    import engine.data.squish as squish_mod
    import engine.learn.dls as dls_mod
    from engine.labels.store import LabelStore
    from engine.learn.rank import out_of_fold
    from engine.learn.train import TrainConfig

    seen: Counter = Counter()

    def counting(path, *a, **k):
        seen[str(path)] += 1
        return load_image(path, *a, **k)

    for mod in (cache_mod, dls_mod, squish_mod):
        monkeypatch.setattr(mod, "load_image", counting)
    store = LabelStore.open(biwi)
    try:
        cfg = TrainConfig(arch="tiny", pretrained=False, size=SIZE, epochs=1, bs=4)
        res = out_of_fold(biwi, store, cfg, folds=3)
    finally:
        store.close()
    assert len(res.rows) == 24
    assert len(seen) == 24 and set(seen.values()) == {1}, seen


def test_no_cache_trains_without_one(biwi):
    from engine.learn.train import TrainConfig, train

    ev = []
    cfg = TrainConfig(arch="tiny", pretrained=False, size=SIZE, epochs=1, bs=4, cache=False)
    train(biwi, None, cfg, ev.append)
    assert not _progress(ev)
    assert not (biwi.root / ".imgreg" / "cache").exists()


def test_app_child_trains_from_the_cache(biwi):
    from imgreg_gui.jobs.process import engine_command

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root), "QT_QPA_PLATFORM": "offscreen"}
    args = ["train", str(biwi.root), "--arch", "tiny", "--no-pretrained", "--size", "24x32", "--epochs", "1"]
    out = subprocess.run(
        engine_command(*args, "--json", "--control-stdin"),
        input="",
        capture_output=True,
        text=True,
        env=env,
        cwd=root,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    events = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    types = [e["type"] for e in events]
    assert "cache_progress" in types and "finished" in types
    assert any(e["type"] == "note" and "decoded-image cache" in e["message"] for e in events)
    c = open_cache(cache_dir(biwi.root / ".imgreg", SIZE), SIZE)
    assert c is not None and len(c.entries) == 24


def test_cli_cache_and_info(biwi, capsys):
    from engine.cli import main

    assert main(["cache", str(biwi.root), "--size", "24x32,16x16", "--json"]) == 0
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert out[-1]["type"] == "summary" and [c["items"] for c in out[-1]["caches"]] == [24, 24]
    assert main(["info", str(biwi.root), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert sorted(c["size"] for c in info["caches"]) == ["16x16", "24x32"]
    assert all(c["state"] == "ok" and c["bytes"] > 0 for c in info["caches"])
    assert main(["cache", str(biwi.root), "--size", "16x16", "--clear"]) == 0
    capsys.readouterr()
    assert [c["size"] for c in list_caches(biwi.root / ".imgreg")] == ["24x32"]


def test_two_builders_overlapping_decode_each_image_once(biwi, tmp_path, monkeypatch):
    import threading
    import time

    calls = []
    real = cache_mod._decode

    def slow(path, size):
        calls.append(path)
        time.sleep(0.1)
        return real(path, size)

    monkeypatch.setattr(cache_mod, "_decode", slow)
    d = cache_dir(tmp_path, SIZE)
    evs: list[list] = [[], []]
    results = [None, None]

    def build(k):
        results[k] = ensure_cache(d, SIZE, _items(biwi), evs[k].append, workers=2)

    threads = [threading.Thread(target=build, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 24
    assert any(e["type"] == "note" and "another process" in e["message"] for ev in evs for e in ev)
    for c in results:
        assert len(c.entries) == 24
        _assert_matches(c, biwi)


@pytest.mark.parametrize("shape", [(48, 64), (64, 40)])
def test_batch_augmentation_moves_points_with_the_image(shape):
    import torch

    from engine.learn.augment import Aug, augment

    torch.manual_seed(0)
    h, w = shape
    bs = 64
    pts = torch.rand(bs, 1, 2) * 1.2 - 0.6  # inside the image, in [-1, 1]
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    px = (pts[:, 0, 0] + 1) / 2 * (w - 1)
    py = (pts[:, 0, 1] + 1) / 2 * (h - 1)
    d2 = (xs[None] - px[:, None, None]) ** 2 + (ys[None] - py[:, None, None]) ** 2
    img = (0.05 + 0.9 * torch.exp(-d2 / 4.0))[:, None].expand(bs, 3, h, w).contiguous()
    out, moved = augment(img, pts.clone(), Aug())
    assert out.shape == img.shape and moved.shape == pts.shape
    assert not torch.allclose(moved, pts)  # something moved
    flat = out[:, 0].reshape(bs, -1).argmax(1)
    peak = torch.stack([(flat % w).float() / (w - 1) * 2 - 1, (flat // w).float() / (h - 1) * 2 - 1], -1)
    inside = (moved[:, 0].abs() < 0.9).all(-1)
    err_px = ((peak - moved[:, 0]) * torch.tensor([w - 1, h - 1]) / 2).norm(dim=-1)
    assert inside.sum() > bs // 2
    assert err_px[inside].max() < 1.5, err_px[inside]


def test_resident_images_gather_the_same_batches(biwi):
    import torch

    from engine.learn.dls import usable_samples
    from engine.learn.feed import Images, build_for

    s = usable_samples(biwi).samples
    cache, slots = build_for(s, biwi.root / ".imgreg", SIZE)
    idx = torch.tensor([5, 0, 17, 3])
    mapped = Images(cache.array, slots, torch.device("cpu"))
    resident = Images(cache.array, slots, torch.device("cpu"), mode="device")
    assert mapped.mode == "host" and resident.mode == "device"
    a, b = mapped.fetch(idx, idx), resident.fetch(idx, idx)
    assert torch.equal(a, b) and a.shape == (4, *SIZE, 3)
    assert torch.equal(a[2], torch.from_numpy(np.array(cache.array[slots[17]])))


def test_stale_slots_are_compacted(biwi, tmp_path):
    d = cache_dir(tmp_path, SIZE)
    ensure_cache(d, SIZE, _items(biwi))
    for _ in range(4):
        for it in biwi.items:
            st = os.stat(it.path)
            os.utime(it.path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
        c = ensure_cache(d, SIZE, _items(biwi))
    # every round re-decodes all 24 changed files; once stale slots outnumber live ones the file is rewritten
    assert len(c.array) < 24 * 5
    assert len(list(d.glob("images-*.u8"))) == 1
    assert len(c.entries) == 24
    _assert_matches(c, biwi)
