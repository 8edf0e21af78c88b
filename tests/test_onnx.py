"""ONNX export and torch-free prediction: same rows as the torch run for both heads and scalars, metadata, no
torch in ``sys.modules`` after ``imgreg predict FILE.onnx``, one-line reasons when export cannot work."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.cli import main
from engine.core import Item
from engine.data import open_dataset
from engine.data.squish import squish as torch_squish
from engine.data.synth import face_image, make_scalar_csv, write_image
from engine.labels.store import LabelStore
from engine.learn.arch import ModelConfig, build_model
from engine.learn.models import save_run
from engine.learn.onnx_export import export_onnx
from engine.learn.predict import predict
from engine.runs import onnx_predict
from engine.runs.onnx_predict import load_onnx, meta_path, predict_onnx

pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.usefixtures("one_torch_thread")
SIZES = [(64, 48), (31, 77), (120, 40), (50, 50), (97, 23)]


def two_point_csv(root: Path) -> None:
    """Images of mixed sizes and a two-point CSV."""
    rng = np.random.default_rng(1)
    rows = ["image,x1,y1,x2,y2"]
    for i, (w, h) in enumerate(SIZES):
        img, cx, cy = face_image(rng, w, h, 2)
        write_image(root / f"im{i}.png", img)
        rows.append(f"im{i}.png,{cx},{cy},{w - cx},{h - cy}")
    (root / "pts.csv").write_text("\n".join(rows) + "\n")


def fake_run(run_dir: Path, cfg: ModelConfig) -> Path:
    """A run folder with random (untrained) weights whose outputs still depend on the image."""
    torch.manual_seed(0)
    model, _ = build_model(cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith("head.out"):  # the spatial head starts near-uniform; make it decisive
                p.normal_(0, 0.5)
            elif name.startswith("1.") and p.dim() == 2:  # pooled heads: outputs that vary between images
                p.normal_(0, 3 / p.shape[1] ** 0.5)
    save_run(run_dir, cfg, model.state_dict(), [], {"run_id": run_dir.name})
    return run_dir


def compare(run_dir: Path, data: Path, tol: float, tta: bool = False) -> tuple[list, list]:
    """Torch rows and ONNX rows for the same dataset and images."""
    onnx = export_onnx(run_dir, run_dir.parent / "m.onnx")
    ds = open_dataset(data)
    with LabelStore.open(ds) as store:
        want = predict(run_dir, ds, store, tta=tta)
        run_id, got = predict_onnx(onnx, ds, store, tta=tta)
        assert run_id == f"{run_dir.name}.onnx" and run_id in store.prediction_runs()
    assert [r.item for r in got] == [r.item for r in want] and len(got) == len(SIZES)
    for a, b in zip(want, got, strict=True):
        assert np.abs(np.subtract(a.pred, b.pred)).max() < tol
        assert (a.spread is None) == (b.spread is None)
        if a.spread is not None:
            assert abs(a.spread - b.spread) < tol
    assert np.ptp([r.pred[0] for r in want]) > 10 * tol  # the images do get different predictions
    return want, got


@pytest.mark.parametrize("head", ["spatial", "pooled"])
def test_points_onnx_matches_torch(tmp_path: Path, head: str) -> None:
    two_point_csv(tmp_path / "ds")
    cfg = ModelConfig(arch="tiny", kind="point", n_points=2, head=head, size=(32, 48), pretrained=False)
    run = fake_run(tmp_path / "runs" / "r1", cfg)
    compare(run, tmp_path / "ds", 0.5)
    meta = json.loads(meta_path(tmp_path / "runs" / "m.onnx").read_text())
    assert meta["kind"] == "point" and meta["n_points"] == 2 and meta["input"]["size"] == [32, 48]
    assert meta["resize"]["method"] == "squish" and "x_px = (x + 1) * W / 2" in meta["output_map"]
    assert meta["outputs"] == (["coords", "spread"] if head == "spatial" else ["coords"])


def test_scalar_onnx_matches_torch_and_tta(tmp_path: Path) -> None:
    make_scalar_csv(tmp_path / "ds", n=5)
    for i, (w, h) in enumerate(SIZES):  # mixed sizes
        write_image(
            tmp_path / "ds" / "img" / f"{i:03d}.png",
            np.random.default_rng(i).integers(0, 255, (h, w, 3), np.uint8),
        )
    cfg = ModelConfig(
        arch="tiny", kind="scalar", head="pooled", size=(24, 24), y_range=(0.0, 100.0), pretrained=False
    )
    run = fake_run(tmp_path / "runs" / "r2", cfg)
    compare(run, tmp_path / "ds", 0.05, tta=True)
    m = load_onnx(tmp_path / "runs" / "m.onnx")
    assert m.meta["value_range"] == [0.0, 100.0]
    meta_path(m.path).unlink()  # the copy inside the ONNX file suffices
    assert load_onnx(m.path).meta == m.meta


def test_squish_is_the_training_resize(tmp_path: Path) -> None:
    img = np.random.default_rng(0).integers(0, 255, (77, 31, 3), np.uint8)
    write_image(tmp_path / "a.png", img)
    # what ONNX prediction feeds the model: its batch loader's squished image
    batch = next(onnx_predict.squished_batches([Item("a.png", ".", tmp_path / "a.png")], (20, 40), 1))
    assert np.array_equal(batch[0].img, torch_squish(img, (20, 40)))


def test_cli_predict_onnx_without_torch(tmp_path: Path, capsys) -> None:
    two_point_csv(tmp_path / "ds")
    cfg = ModelConfig(arch="tiny", kind="point", n_points=2, head="spatial", size=(32, 48), pretrained=False)
    run = fake_run(tmp_path / "runs" / "r3", cfg)
    onnx = tmp_path / "out" / "r3.onnx"
    assert main(["export", str(run), "--out", str(onnx), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert summary == {"type": "summary", "run_id": "r3", "onnx": str(onnx), "metadata": str(meta_path(onnx))}
    assert onnx.is_file() and meta_path(onnx).is_file()
    torch_csv, onnx_csv = tmp_path / "t.csv", tmp_path / "o.csv"
    assert main(["predict", str(run), str(tmp_path / "ds"), "--out", str(torch_csv)]) == 0
    code = (
        "import sys; from engine.cli import main; "
        f"rc = main(['predict', {str(onnx)!r}, {str(tmp_path / 'ds')!r}, '--out', {str(onnx_csv)!r}]); "
        "print(rc, 'torch' in sys.modules, 'fastai' in sys.modules)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.stdout.splitlines()[-1].split() == ["0", "False", "False"], r.stderr
    a = list(csv.DictReader(torch_csv.open()))
    b = list(csv.DictReader(onnx_csv.open()))
    assert [r["item"] for r in a] == [r["item"] for r in b]
    for ra, rb in zip(a, b, strict=True):
        for col in ("pred_x1", "pred_y1", "pred_x2", "pred_y2"):
            assert abs(float(ra[col]) - float(rb[col])) < 0.5


def test_export_failures_are_one_line(tmp_path: Path, capsys) -> None:
    assert main(["export", str(tmp_path / "nope"), "--json"]) == 2
    assert json.loads(capsys.readouterr().out)["type"] == "failed"
    assert main(["export", str(tmp_path), "--out", str(tmp_path / "x.txt")]) == 2
    cfg = ModelConfig(arch="tiny", kind="scalar", head="pooled", size=(16, 16), pretrained=False)
    run = fake_run(tmp_path / "runs" / "r4", cfg)
    assert main(["export", str(run), "--out", str(tmp_path / "x.txt")]) == 2
    (tmp_path / "bad.onnx").write_bytes(b"not onnx")
    make_scalar_csv(tmp_path / "ds", n=2)
    assert main(["predict", str(tmp_path / "bad.onnx"), str(tmp_path / "ds")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 3 and all(e.startswith("imgreg: error: ") for e in err)
    assert ".onnx" in err[1] and "not a usable ONNX model" in err[2]


def test_onnx_of_other_kind_is_refused(tmp_path: Path, capsys) -> None:
    cfg = ModelConfig(arch="tiny", kind="scalar", head="pooled", size=(16, 16), pretrained=False)
    onnx = export_onnx(fake_run(tmp_path / "runs" / "r5", cfg))
    assert onnx == tmp_path / "runs" / "r5" / "model.onnx"
    two_point_csv(tmp_path / "ds")
    assert main(["predict", str(onnx), str(tmp_path / "ds")]) == 2
    assert "predicts scalars but the dataset holds points" in capsys.readouterr().err
