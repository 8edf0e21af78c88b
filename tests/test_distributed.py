"""Several processes: DDP training through torchrun (gloo on the CPU), out-of-fold folds side by side, failures."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.data import open_dataset
from engine.data.synth import make_biwi, make_scalar_csv, make_utkface
from engine.labels.store import LabelStore
from engine.learn.distributed import shard
from engine.learn.rank import out_of_fold
from engine.learn.train import TrainConfig, TrainingError, train

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--arch", "tiny", "--no-pretrained", "--size", "32x32", "--device", "cpu"]


def _imgreg(args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    """``python -m engine.cli ARGS`` in a fresh process; every descendant carries a marker in its environment."""
    full = {**os.environ, "PYTHONPATH": str(ROOT), "IMGREG_TEST_MARK": str(tmp_path), **env}
    return subprocess.run(
        [sys.executable, "-m", "engine.cli", *args],
        capture_output=True,
        text=True,
        env=full,
        timeout=300,
        cwd=ROOT,
    )


def _left_running(mark: str) -> list[int]:
    """Processes still alive whose environment carries ``mark`` (what a test started and did not end)."""
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            env = (d / "environ").read_bytes().split(b"\0")
            state = (d / "stat").read_text().split(") ")[-1][:1]
        except OSError:
            continue
        if f"IMGREG_TEST_MARK={mark}".encode() in env and state != "Z":
            pids.append(int(d.name))
    return pids


def _events(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def test_shards_cover_every_item_in_equal_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    import engine.learn.distributed as d

    idx = list(range(3, 14))  # 11 items over 3 ranks: 4 each, one item twice
    parts = []
    for r in range(3):
        monkeypatch.setattr(d, "world_size", lambda: 3)
        monkeypatch.setattr(d, "rank", lambda r=r: r)
        parts.append(shard(idx, seed=1))
    assert [len(p) for p in parts] == [4, 4, 4]
    assert set().union(*map(set, parts)) == set(idx)
    monkeypatch.undo()
    assert shard(idx) == idx  # one process: everything


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_two_gloo_processes_train_one_run(tmp_path: Path) -> None:
    make_scalar_csv(tmp_path / "utk", n=40, size=32, seed=3)
    args = [
        "train",
        str(tmp_path / "utk"),
        "--nproc",
        "2",
        *TINY,
        "--epochs",
        "4",
        "--bs",
        "4",
        "--lr",
        "3e-3",
    ]
    res = _imgreg([*args, "--json"], tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    events = _events(res.stdout)
    # the decoded-image cache is built once, by rank 0, before training
    assert sum(e["type"] == "cache_progress" and e["done"] == 0 for e in events) <= 1
    prepared = next(e for e in events if e["type"] == "prepared")
    assert prepared["world_size"] == 2
    # each of the two processes trains on half of the training items
    assert prepared["n_batches"] == (prepared["n_train"] // 2) // 4
    epochs = [e for e in events if e["type"] == "epoch"]
    assert len(epochs) == 4 and epochs[-1]["train_loss"] < epochs[0]["train_loss"]
    assert min(e["valid_loss"] for e in epochs[1:]) < epochs[0]["valid_loss"]
    assert [e["type"] for e in events][-2:] == ["finished", "summary"]
    runs = list((tmp_path / "utk" / ".imgreg" / "runs").iterdir())
    assert len(runs) == 1  # rank 0 alone writes
    summary = json.loads((runs[0] / "summary.json").read_text())
    assert summary["world_size"] == 2 and events[-1]["world_size"] == 2
    # the metric covers the whole validation set: it equals a prediction pass over every validation item
    from engine.learn.predict import predict

    ds = open_dataset(tmp_path / "utk")
    assert len(summary["valid_items"]) == summary["n_valid"] == prepared["n_valid"]
    rows = predict(runs[0], ds, items=summary["valid_items"])
    assert len(rows) == summary["n_valid"]
    assert np.mean([r.error for r in rows]) == pytest.approx(summary["metrics"]["mae"], rel=1e-3)
    assert _left_running(str(tmp_path)) == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_crashing_rank_ends_both_with_one_error(tmp_path: Path) -> None:
    make_utkface(tmp_path / "utk", n=16, size=32)
    args = ["train", str(tmp_path / "utk"), "--nproc", "2", *TINY, "--epochs", "2", "--bs", "4", "--json"]
    res = _imgreg(args, tmp_path, IMGREG_FAIL_RANK="1")
    assert res.returncode == 2
    failed = [e for e in _events(res.stdout) if e["type"] == "failed"]
    assert (
        len(failed) == 1 and failed[0]["message"] == "rank 1: injected failure in rank 1 (IMGREG_FAIL_RANK)"
    )
    err = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith("imgreg: error: rank 1: injected failure")  # no traceback
    assert not (tmp_path / "utk" / ".imgreg" / "runs").exists() or not any(
        (tmp_path / "utk" / ".imgreg" / "runs").iterdir()
    )
    assert _left_running(str(tmp_path)) == []


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (["--nproc", "2", "--lr", "find"], "--lr-find"),
        (["--parallel", "2"], "--folds K"),
        (["--folds", "2", "--nproc", "2"], "--parallel P"),
        (["--gpus", "0", "--nproc", "1"], "0 GPU"),
    ],
)
def test_option_mistakes_get_one_line_errors(tmp_path: Path, capsys, extra: list[str], says: str) -> None:
    from engine.cli import main

    make_utkface(tmp_path / "utk", n=8, size=32)
    assert main(["train", str(tmp_path / "utk"), *TINY, *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and says in err[0]


@pytest.fixture
def biwi(tmp_path: Path) -> Path:
    make_biwi(tmp_path / "ds", groups=4, frames=6, size=(32, 32), distractors=0, seed=1)
    return tmp_path / "ds"


def _oof_cfg() -> TrainConfig:
    return TrainConfig(arch="tiny", pretrained=False, size=(32, 32), bs=4, epochs=1, device="cpu")


@pytest.mark.usefixtures("one_torch_thread")
def test_parallel_folds_rank_as_the_serial_loop(biwi: Path) -> None:
    ds = open_dataset(biwi)
    store = LabelStore.open(ds)
    serial = out_of_fold(ds, store, _oof_cfg(), folds=2)
    events: list[dict] = []
    par = out_of_fold(ds, store, _oof_cfg(), folds=2, on_event=events.append, parallel=2)
    store.close()
    assert [r.item for r in par.rows] == [r.item for r in serial.rows]
    assert [r.error for r in par.rows] == pytest.approx([r.error for r in serial.rows], rel=1e-6)
    assert par.metrics == pytest.approx(serial.metrics, rel=1e-6)
    assert sorted(e["fold"] for e in events if e["type"] == "fold") == [1, 2]
    # every forwarded progress event says which fold it belongs to
    assert all("fold" in e for e in events if e["type"] in ("prepared", "batch", "epoch"))
    assert events[-1]["type"] == "finished"
    assert multiprocessing.active_children() == []


@pytest.mark.usefixtures("one_torch_thread")
def test_a_failing_fold_stops_every_process(biwi: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMGREG_FAIL_FOLD", "2")
    ds = open_dataset(biwi)
    events: list[dict] = []
    with pytest.raises(TrainingError, match="fold 2: injected failure"):
        out_of_fold(ds, None, _oof_cfg(), folds=3, on_event=events.append, parallel=2)
    assert [e["type"] for e in events].count("failed") == 1
    assert multiprocessing.active_children() == []


@pytest.mark.usefixtures("one_torch_thread")
def test_one_process_ddp_trains_exactly_as_plain_training(tmp_path: Path) -> None:
    make_utkface(tmp_path / "utk", n=24, size=32, seed=3)
    args = ["train", str(tmp_path / "utk"), "--nproc", "1", *TINY, "--epochs", "2", "--bs", "4", "--json"]
    res = _imgreg(args, tmp_path, OMP_NUM_THREADS="1")
    assert res.returncode == 0, res.stderr[-2000:]
    ddp = [e for e in _events(res.stdout) if e["type"] == "epoch"]
    events: list[dict] = []
    cfg = TrainConfig(arch="tiny", pretrained=False, size=(32, 32), bs=4, epochs=2, device="cpu")
    train(open_dataset(tmp_path / "utk"), None, cfg, events.append, out_dir=tmp_path / "plain")
    plain = [e for e in events if e["type"] == "epoch"]
    for a, b in zip(ddp, plain, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
        assert a["valid_loss"] == pytest.approx(b["valid_loss"], rel=1e-5)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_stop_after_epoch_reaches_every_rank(tmp_path: Path) -> None:
    make_utkface(tmp_path / "utk", n=24, size=32)
    args = ["train", str(tmp_path / "utk"), "--nproc", "2", *TINY, "--epochs", "6", "--bs", "2"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "IMGREG_TEST_MARK": str(tmp_path)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", *args, "--json", "--control-stdin"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, cwd=ROOT,
    )  # fmt: skip
    events = []
    for line in proc.stdout:
        events.append(json.loads(line))
        if len(events) == 2:  # the first batch: ask rank 0 to stop after this epoch
            proc.stdin.write("stop-epoch\n")
            proc.stdin.flush()
    assert proc.wait(120) == 0
    types = [e["type"] for e in events]
    assert types.count("epoch") == 1 and types[-2:] == ["cancelled", "summary"]
    assert events[-1]["cancelled"] is True and events[-1]["world_size"] == 2
    assert (Path(events[-1]["run_dir"]) / "summary.json").is_file()
    assert _left_running(str(tmp_path)) == []
