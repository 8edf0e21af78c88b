"""Other tools read imgreg's exports: sleap-io loads the YOLO-pose split layout and the COCO file, Ultralytics' own
dataset check accepts the YOLO folder (when installed; its opencv-python pin clashes with our headless build, so
CI checks the label files with a parser that mirrors Ultralytics' rules instead)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from engine.data import open_dataset
from engine.data.images import image_size
from engine.data.split import split_indices
from engine.data.synth import make_biwi
from engine.labels.interop import write_coco, write_yolo_pose
from engine.labels.store import LabelStore


@pytest.fixture
def exported(tmp_path: Path) -> tuple[object, dict, Path]:
    """A 3-group Biwi set exported as YOLO-pose: (dataset, effective labels, folder)."""
    make_biwi(tmp_path / "b", groups=3, frames=3)
    ds = open_dataset(tmp_path / "b")
    with LabelStore.open(ds) as store:
        write_yolo_pose(ds, store, tmp_path / "y")
        labels = store.effective_labels()
    return ds, labels, tmp_path / "y"


def _img2label(path: str) -> str:
    """Ultralytics' ``img2label_paths``: the last ``/images/`` becomes ``/labels/``, the suffix ``.txt``."""
    sa, sb = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    return sb.join(path.rsplit(sa, 1)).rsplit(".", 1)[0] + ".txt"


def test_labels_follow_ultralytics_rules(exported) -> None:
    yaml = pytest.importorskip("yaml")
    ds, labels, out = exported
    conf = yaml.safe_load((out / "data.yaml").read_text())
    nkpt, ndim = conf["kpt_shape"]
    seen = 0
    for split in ("train", "val"):
        folder = (Path(conf["path"]) / conf[split]).resolve()
        for img in sorted(folder.iterdir()):
            lb = np.loadtxt(_img2label(str(folder / img.name)), ndmin=2, dtype=np.float32)
            # verify_image_label's checks for pose labels
            assert lb.shape[1] == 5 + nkpt * ndim and lb.min() >= 0 and (lb[:, 1:5] <= 1).all()
            assert (lb[:, 5:].reshape(-1, ndim)[:, :2] <= 1).all() and len(np.unique(lb, axis=0)) == len(lb)
            seen += 1
    assert seen == len(labels)


def test_split_is_by_group_like_training(exported) -> None:
    ds, labels, out = exported
    names = {p.name.split("__")[0] for p in (out / "images" / "val").iterdir()}
    train = {p.name.split("__")[0] for p in (out / "images" / "train").iterdir()}
    assert names and train and not names & train
    _, _, valid_groups = split_indices([it.group for it in ds.items if it.name in labels])
    assert names == set(valid_groups)


def test_sleap_io_loads_the_yolo_split_layout(exported) -> None:
    sio = pytest.importorskip("sleap_io")
    ds, labels, out = exported
    got = {}
    for split in ("train", "val"):
        for lf in sio.load_ultralytics(str(out), split=split).labeled_frames:
            name = Path(
                lf.video.filename if isinstance(lf.video.filename, str) else lf.video.filename[0]
            ).name
            got[name] = lf.instances[0].numpy().ravel()
    assert len(got) == len(labels)
    for it in ds.items:
        if it.name in labels:
            w, h = image_size(it.path)
            pts = got[it.name.replace("/", "__")]
            assert np.allclose(pts, labels[it.name], atol=max(w, h) * 1e-6 + 1e-3)


def test_sleap_io_loads_the_coco_export(tmp_path: Path) -> None:
    sio = pytest.importorskip("sleap_io")
    make_biwi(tmp_path / "b", groups=2, frames=2)
    ds = open_dataset(tmp_path / "b")
    with LabelStore.open(ds) as store:
        write_coco(ds, store, tmp_path / "c.json")
        n = len(store.effective_labels())
    labels = sio.load_coco(str(tmp_path / "c.json"))
    assert sum(len(lf.instances) for lf in labels.labeled_frames) == n


def test_ultralytics_dataset_check_accepts_the_export(exported) -> None:
    pytest.importorskip("ultralytics")
    os.environ.setdefault("YOLO_OFFLINE", "1")
    from ultralytics.data.dataset import YOLODataset
    from ultralytics.data.utils import check_det_dataset

    _, labels, out = exported
    data = check_det_dataset(str(out / "data.yaml"))
    n = 0
    for split in ("train", "val"):
        d = YOLODataset(img_path=data[split], data=data, task="pose", imgsz=64, augment=False)
        n += len(d)
        assert all(lb["keypoints"].shape == (1, 1, 3) for lb in d.labels)
    assert n == len(labels)
