"""A run's saved calibration set: training writes it, ``predict --coverage`` uses it on datasets the run never
saw (a folder of new frames), an ONNX export carries it, and a missing or broken one is a one-line refusal."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from engine.audit.conformal import CoverageError, calibrate, with_intervals
from engine.cli import main
from engine.data import open_dataset
from engine.data.synth import make_biwi, make_utkface
from engine.labels.store import LabelStore
from engine.learn.predict import predict
from engine.learn.train import TrainConfig, train
from engine.runs.calibration import calibration_path, read_calibration
from engine.runs.files import read_summary
from engine.runs.schema import SchemaError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny(**kw) -> TrainConfig:
    return TrainConfig(arch="tiny", pretrained=False, size=(32, 32), bs=4, epochs=1, device="cpu", **kw)


@pytest.fixture(scope="module")
def biwi_run(tmp_path_factory) -> tuple[Path, Path]:
    """A one-epoch run on generated Biwi frames (its calibration saved) and a folder of new unlabelled frames."""
    tmp = tmp_path_factory.mktemp("cal")
    make_biwi(tmp / "a", groups=4, frames=12, size=(64, 48), seed=0)
    info = train(open_dataset(tmp / "a"), None, tiny(valid_pct=0.5))
    make_biwi(tmp / "new", groups=2, frames=6, size=(64, 48), seed=7)
    for pose in (tmp / "new").rglob("*_pose.txt"):
        pose.unlink()  # new frames: no labels, so none of the run's validation items
    return info.run_dir, tmp / "new"


def test_training_saves_its_validation_items_as_the_calibration_set(biwi_run) -> None:
    run_dir, _ = biwi_run
    kind, rows, labels = read_calibration(run_dir)
    assert kind == "point"
    assert sorted(r.item for r in rows) == sorted(read_summary(run_dir)["valid_items"])
    assert all(r.spread is not None and r.spread > 0 for r in rows)  # the spatial head's heatmap spread
    assert set(labels) == {r.item for r in rows}


def test_predict_coverage_on_new_frames_uses_the_saved_calibration(biwi_run, tmp_path: Path) -> None:
    run_dir, new = biwi_run
    out = tmp_path / "p.csv"
    assert main(["predict", str(run_dir), str(new), "--coverage", "0.8", "--out", str(out)]) == 0
    table = list(csv.DictReader(out.open()))
    assert len(table) == 12 and all(float(r["radius"]) > 0 for r in table)
    kind, rows, labels = read_calibration(run_dir)
    want = with_intervals(
        predict(run_dir, open_dataset(new), None, tta=True), calibrate(rows, labels, True, 0.8)
    )
    by_item = {r["image"] if "image" in r else r["item"]: float(r["radius"]) for r in table}
    for r in want:
        assert by_item[r.item] == pytest.approx(r.interval[0], rel=1e-4)
    with LabelStore.open(open_dataset(new)) as store:
        assert all(p.coverage == 0.8 for p in store.predictions(run_dir.name).values())


def test_a_run_without_a_calibration_is_refused_on_new_frames_in_one_line(biwi_run, tmp_path, capsys) -> None:
    run_dir, new = biwi_run
    old = tmp_path / run_dir.name
    old.mkdir()
    for f in run_dir.iterdir():
        if f.is_file() and f.name != calibration_path(run_dir).name:
            (old / f.name).write_bytes(f.read_bytes())
    with pytest.raises(CoverageError, match="no saved calibration"):
        predict(old, open_dataset(new), None, coverage=0.9)
    assert main(["predict", str(old), str(new), "--coverage", "0.9"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "no saved calibration" in err[-1] and "Traceback" not in "\n".join(err)


@pytest.mark.parametrize(
    "text", ["[1, 2]", '{"version": 1, "kind": "point", "items": [{"item": "a", "pred": [1, "x"]}]}', "{"]
)
def test_a_broken_calibration_file_is_a_schema_error(biwi_run, tmp_path: Path, text: str) -> None:
    run_dir, new = biwi_run
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in run_dir.iterdir():
        if f.is_file():
            (bad / f.name).write_bytes(f.read_bytes())
    calibration_path(bad).write_text(text)
    with pytest.raises(SchemaError):
        read_calibration(bad)
    assert main(["predict", str(bad), str(new), "--coverage", "0.9"]) == 2


def test_onnx_export_carries_the_calibration_and_predicts_the_same_intervals(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    from engine.learn.onnx_export import export_onnx
    from engine.runs.onnx_predict import OnnxError, load_onnx, predict_onnx

    make_utkface(tmp_path / "a", n=40, size=32, seed=0)
    info = train(open_dataset(tmp_path / "a"), None, tiny(valid_pct=0.5))
    make_utkface(tmp_path / "b", n=12, size=32, seed=5)
    b = open_dataset(tmp_path / "b")
    onnx = export_onnx(info.run_dir, tmp_path / "m.onnx")
    assert load_onnx(onnx).meta["calibration"]["kind"] == "scalar"
    want = predict(info.run_dir, b, None, coverage=0.9, mondrian=2)  # another dataset: the saved calibration
    _, got = predict_onnx(onnx, b, None, coverage=0.9, mondrian=2)
    for w, g in zip(want, got, strict=True):
        assert w.item == g.item and g.coverage == 0.9
        assert np.allclose(w.interval, g.interval, atol=0.05)  # the flip disagreement scales both alike
    meta = json.loads((tmp_path / "m.json").read_text())
    del meta["calibration"]
    (tmp_path / "m.json").write_text(json.dumps(meta))
    with pytest.raises(OnnxError, match="carries no calibration"):
        predict_onnx(onnx, b, None, coverage=0.9)
