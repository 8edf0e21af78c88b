"""``imgreg train / predict / rank`` end to end with --json, errors as one line and exit code 2, stdin control."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.cli import main
from engine.data.synth import make_biwi, make_utkface
from engine.events import check_event

FAST = ["--arch", "tiny", "--no-pretrained", "--size", "48x64", "--bs", "8", "--device", "cpu"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def json_lines(text: str) -> list[dict]:
    """Every stdout line parsed as an event of engine/events.py (fails on any other output)."""
    return [dict(check_event(json.loads(line))) for line in text.splitlines() if line.strip()]


@pytest.mark.slow
def test_train_predict_rank_json(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    make_biwi(tmp_path / "ds", groups=3, frames=6, size=(64, 48), corrupt=1)
    ds = str(tmp_path / "ds")
    assert main(["train", ds, *FAST, "--epochs", "2", "--valid-groups", "03", "--json"]) == 0
    events = json_lines(capsys.readouterr().out)
    types = [e["type"] for e in events if e["type"] not in ("cache_progress", "note")]
    assert types[0] == "prepared" and types[-2:] == ["finished", "summary"]
    assert types.count("epoch") == 2 and "batch" in types
    summary = events[-1]
    run_id, run_dir = summary["run_id"], Path(summary["run_dir"])
    assert (run_dir / "model.safetensors").is_file() and run_dir.name == run_id
    assert set(summary["metrics"]) >= {"valid_loss", "rmse", "mean_px", "median_px"}

    out = tmp_path / "pred.csv"
    assert main(["predict", run_id, ds, "--out", str(out), "--json"]) == 0
    events = json_lines(capsys.readouterr().out)
    assert events[-1]["type"] == "summary" and events[-1]["n"] == 18
    rows = list(csv.DictReader(out.open()))
    # The default (spatial) head adds each prediction's heatmap spread as a last column.
    assert list(rows[0]) == ["item", "pred_x", "pred_y", "label_x", "label_y", "error", "spread"]
    assert len(rows) == 18 and all(float(r["error"]) >= 0 for r in rows)

    # a run folder path works too, and without --out the CSV goes to stdout
    assert main(["predict", str(run_dir), ds, "--tta"]) == 0
    table = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(table) == 18

    assert main(["rank", ds, "--run", run_id, "--top", "5"]) == 0
    ranked = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["rank"] for r in ranked] == ["1", "2", "3", "4", "5"]
    scores = [float(r["score"]) for r in ranked]
    assert scores == sorted(scores, reverse=True)
    # the raw error stays one option away
    assert main(["rank", ds, "--run", run_id, "--top", "5", "--by", "error"]) == 0
    errs = [float(r["error"]) for r in csv.DictReader(io.StringIO(capsys.readouterr().out))]
    assert errs == sorted(errs, reverse=True)


@pytest.mark.slow
def test_rank_out_of_fold_and_scalar_columns(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    make_utkface(tmp_path / "utk", n=12, size=32)
    ds = str(tmp_path / "utk")
    out = tmp_path / "rank.csv"
    args = ["rank", ds, "--folds", "2", "--repeats", "2", "--epochs", "1", "--out", str(out), "--json"]
    assert main([*args, *FAST[:-6], "--size", "32x32", "--bs", "4", "--device", "cpu"]) == 0
    events = json_lines(capsys.readouterr().out)
    assert [(e["fold"], e["folds"]) for e in events if e["type"] == "fold"] == [
        (1, 4),
        (2, 4),
        (3, 4),
        (4, 4),
    ]
    assert events[-1]["type"] == "summary" and events[-1]["run_id"].startswith("oof-")
    # scalars: the labels of the fold models' nearest training items are the score's second opinion
    assert any("nearest training items by the fold models" in e.get("message", "") for e in events)
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 12 and list(rows[0]) == ["rank", "item", "error", "score"]
    scores = [float(r["score"]) for r in rows]
    assert scores == sorted(scores, reverse=True)
    # predictions of a scalar run have value columns
    assert main(["train", ds, *FAST[:-6], "--size", "32x32", "--bs", "4", "--epochs", "1", "--json"]) == 0
    run_id = json_lines(capsys.readouterr().out)[-1]["run_id"]
    assert main(["predict", run_id, ds]) == 0
    header = capsys.readouterr().out.splitlines()[0]
    assert header == "item,pred_value,label_value,error"


def test_errors_are_one_line_with_exit_code_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    make_biwi(tmp_path / "ds", groups=2, frames=2, size=(32, 24))
    ds = str(tmp_path / "ds")
    cases = [
        (["train", str(tmp_path / "missing"), *FAST], "does not exist"),
        (["predict", "no-such-run", ds], "unknown run"),
        (["train", ds, "--weights", str(tmp_path / "w.pth")], "weights file"),
        (["train", ds, "--arch", "resnet18", "--device", "cpu"], "--no-pretrained"),
        (["train", ds, *FAST, "--valid-groups", "99"], "99"),
    ]
    for argv, needle in cases:
        assert main(argv) == 2, argv
        out, err = capsys.readouterr()
        assert out == "" and err.count("\n") == 1 and needle in err and "Traceback" not in err, (argv, err)


def test_register_adds_subcommands() -> None:
    import argparse

    from engine.cli.model import register
    from engine.core import ARCH_NAMES
    from engine.learn.backbones import ARCHS

    p = argparse.ArgumentParser()
    register(p.add_subparsers(dest="command"))
    a = p.parse_args(
        ["train", "d", "--size", "120x160", "--sizes", "60x80,120x160", "--valid-groups", "07,08"]
    )
    assert a.size == (120, 160) and a.sizes == [(60, 80), (120, 160)] and a.valid_groups == ["07", "08"]
    assert p.parse_args(["train", "d", "--lr", "find"]).lr is None
    assert set(ARCH_NAMES) == set(ARCHS)


@pytest.mark.slow
def test_control_stdin_cancels_a_child_process(tmp_path: Path) -> None:
    make_biwi(tmp_path / "ds", groups=2, frames=12, size=(64, 48))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    cmd = [
        sys.executable,
        "-m",
        "engine.cli",
        "train",
        str(tmp_path / "ds"),
        *FAST,
        "--bs",
        "2",
        "--epochs",
        "50",
    ]
    proc = subprocess.Popen(
        [*cmd, "--json", "--control-stdin"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    events = []
    for line in proc.stdout:
        events.append(dict(check_event(json.loads(line))))
        if events[-1]["type"] == "epoch":
            proc.stdin.write("stop-epoch\n")
            proc.stdin.flush()
            break
    rest, err = proc.communicate(timeout=120)
    events += json_lines(rest)
    assert proc.returncode == 0, err
    types = [e["type"] for e in events]
    assert types[-2:] == ["cancelled", "summary"] and events[-1]["cancelled"] is True
    assert types.count("epoch") <= 3  # the epoch under way when the line arrived finishes, then it stops
    assert Path(events[-1]["run_dir"], "model.safetensors").is_file()
    assert "Traceback" not in err and "Warning" not in err


def test_lr_find_only(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    make_biwi(tmp_path / "ds", groups=2, frames=4, size=(64, 48))
    assert main(["train", str(tmp_path / "ds"), *FAST, "--bs", "2", "--lr-find", "--json"]) == 0
    events = json_lines(capsys.readouterr().out)
    assert [e["type"] for e in events][-2:] == ["lr_find", "summary"]
    progress = [e for e in events if e["type"] == "lr_find_progress"]
    assert progress and all(0 < e["done"] <= e["total"] == 100 for e in progress)
    assert events[-1]["suggestion"] == events[-2]["suggestion"] > 0


def test_pretrained_if_cached_falls_back_to_random_weights(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))  # an empty torchvision cache
    make_biwi(tmp_path / "ds", groups=2, frames=4, size=(64, 48))
    args = ["train", str(tmp_path / "ds"), "--arch", "resnet18", "--pretrained-if-cached", "--epochs", "1"]
    assert main([*args, "--size", "48x64", "--bs", "4", "--device", "cpu", "--json"]) == 0
    events = json_lines(capsys.readouterr().out)
    assert events[0] == {"type": "note", "message": "no cached ImageNet weights for resnet18: random weights"}
    assert events[-1]["type"] == "summary" and events[-1]["run_id"]


def test_spatial_stride_is_an_option_saved_with_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    make_biwi(tmp_path / "ds", groups=2, frames=4, size=(64, 48))
    assert main(["train", str(tmp_path / "ds"), *FAST, "--stride", "8", "--epochs", "1", "--json"]) == 0
    summary = json_lines(capsys.readouterr().out)[-1]
    conf = json.loads((Path(summary["run_dir"]) / "config.json").read_text())
    assert conf["head"] == "spatial" and conf["spatial_stride"] == 8
    assert main(["predict", summary["run_id"], str(tmp_path / "ds"), "--json"]) == 0
