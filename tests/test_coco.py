"""COCO keypoints in and out, YOLO-pose out: detection, missing points, several instances, broken files,
the pycocotools check and the export -> open -> export round trip."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.cli import main
from engine.data import DatasetError, detect, open_dataset
from engine.data.images import image_size
from engine.data.synth import make_biwi, make_points_csv, make_scalar_csv, write_image
from engine.labels.interop import ExportError, read_yolo_line, write_coco, write_yolo_pose
from engine.labels.store import LabelStore

NAMES = ["nose", "left_eye", "right_eye"]


def coco_fixture(root: Path) -> Path:
    """A 3-keypoint COCO file with a full image, a partly labelled one, two people on one image, an unlabelled
    image, a missing image file and an annotation of an unknown image; images live in ``imgs/a`` and ``imgs/b``."""
    rng = np.random.default_rng(0)
    files = ["imgs/a/full.png", "imgs/a/partial.png", "imgs/b/crowd.png", "imgs/b/empty.png"]
    for f in files:
        write_image(root / f, rng.integers(0, 255, (40, 60, 3), dtype=np.uint8))
    images = [{"id": i + 1, "file_name": f, "width": 60, "height": 40} for i, f in enumerate(files)]
    images.append({"id": 9, "file_name": "imgs/b/gone.png", "width": 60, "height": 40})
    full = [10, 11, 2, 20.5, 12, 2, 30, 13.25, 1]
    anns = [
        {"id": 1, "image_id": 1, "category_id": 1, "keypoints": full},
        {"id": 2, "image_id": 2, "category_id": 1, "keypoints": [10, 11, 2, 0, 0, 0, 30, 13, 2]},
        {"id": 3, "image_id": 3, "category_id": 1, "keypoints": full},
        {"id": 4, "image_id": 3, "category_id": 1, "keypoints": full},
        {"id": 5, "image_id": 4, "category_id": 1, "keypoints": [0] * 9},
        {"id": 6, "image_id": 77, "category_id": 1, "keypoints": full},
        {"id": 7, "image_id": 1, "category_id": 1, "iscrowd": 1, "keypoints": full},
    ]
    cats = [{"id": 1, "name": "person", "keypoints": NAMES, "skeleton": []}]
    path = root / "ann.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return path


def test_coco_opens_as_dataset_with_problems(tmp_path: Path) -> None:
    path = coco_fixture(tmp_path)
    assert detect(tmp_path) == "coco"
    for where in (tmp_path, path):  # the folder or the JSON itself
        ds = open_dataset(where)
        assert (ds.format, ds.kind, ds.n_points, ds.point_names) == ("coco", "point", 3, NAMES)
        assert ds.root == tmp_path
        items = {it.name: it for it in ds.items}
        assert list(items) == [
            "imgs/a/full.png", "imgs/a/partial.png", "imgs/b/crowd.png", "imgs/b/empty.png", "imgs/b/gone.png"
        ]  # fmt: skip
        assert items["imgs/a/full.png"].label == (10, 11, 20.5, 12, 30, 13.25)
        assert items["imgs/a/full.png"].group == "imgs/a"
        assert items["imgs/a/partial.png"].label is None
        assert "left_eye" in items["imgs/a/partial.png"].problem
        assert (
            items["imgs/b/crowd.png"].label is None
            and "2 annotated instances" in items["imgs/b/crowd.png"].problem
        )
        assert items["imgs/b/empty.png"].label is None and items["imgs/b/empty.png"].problem is None
        assert items["imgs/b/gone.png"].problem
        reasons = " ".join(p.reason for p in ds.problems)
        assert "image id 77" in reasons
    with LabelStore.open(ds) as store:  # the store lives in the JSON's folder
        assert store.dir == tmp_path / ".imgreg"


def test_image_root_and_group_field(tmp_path: Path, capsys) -> None:
    write_image(tmp_path / "pics" / "x.png", np.zeros((10, 20, 3), np.uint8))
    (tmp_path / "ann").mkdir()
    data = {
        "images": [{"id": "a", "file_name": "x.png", "group": "p07"}],
        "annotations": [{"image_id": "a", "keypoints": [5, 6, 2]}],
        "categories": [{"id": 1, "keypoints": ["c"]}],
    }
    (tmp_path / "ann" / "k.json").write_text(json.dumps(data))
    ds = open_dataset(tmp_path / "ann" / "k.json", image_root=tmp_path / "pics")
    assert [(it.name, it.group, it.label, it.problem) for it in ds.items] == [
        ("x.png", "p07", (5.0, 6.0), None)
    ]
    missing = open_dataset(tmp_path / "ann" / "k.json")
    assert missing.items[0].problem
    assert (
        main(["info", str(tmp_path / "ann" / "k.json"), "--image-root", str(tmp_path / "pics"), "--json"])
        == 0
    )
    info = json.loads(capsys.readouterr().out)
    assert info["counts"]["labelled"] == 1 and info["store"] == str(tmp_path / "ann" / ".imgreg")


@pytest.mark.parametrize(
    ("text", "expect"),
    [
        ('{"images": [', "not valid JSON"),
        ("[1, 2]", "not a COCO file"),
        ('{"images": [], "annotations": []}', "'categories'"),
        ('{"images": [], "annotations": [], "categories": [{"id": 1}]}', "names its keypoints"),
    ],
)
def test_broken_files_are_one_clear_error(tmp_path: Path, text: str, expect: str, capsys) -> None:
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(DatasetError, match=expect):
        open_dataset(path)
    assert main(["info", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expect in err


def test_other_json_beside_images_is_not_coco(tmp_path: Path) -> None:
    write_image(tmp_path / "a.png", np.zeros((10, 10, 3), np.uint8))
    (tmp_path / "meta.json").write_text('{"images": 3, "note": "not COCO"}')
    (tmp_path / "broken.json").write_text('{"images": [')
    assert detect(tmp_path) == "folder"


def test_export_into_biwi_or_csv_dataset_keeps_its_format(tmp_path: Path) -> None:
    make_biwi(tmp_path / "b", groups=2, frames=2)
    make_points_csv(tmp_path / "c", n=2)
    for root, fmt in ((tmp_path / "b", "biwi"), (tmp_path / "c", "points-csv")):
        ds = open_dataset(root)
        with LabelStore.open(ds) as store:
            write_coco(ds, store, root / "labels.json")
        assert detect(root) == fmt
        assert {it.name: it.label for it in open_dataset(root / "labels.json").items} == {
            it.name: it.label for it in ds.items
        }


def test_bad_entries_become_problems(tmp_path: Path) -> None:
    write_image(tmp_path / "a.png", np.zeros((10, 10, 3), np.uint8))
    data = {
        "images": [
            {"id": 1, "file_name": "a.png"},
            {"file_name": "noid.png"},
            {"id": 1, "file_name": "b.png"},
        ],
        "annotations": [{"image_id": 1, "keypoints": [1, 2]}, "junk"],
        "categories": [{"id": 1, "keypoints": ["p"]}],
    }
    (tmp_path / "c.json").write_text(json.dumps(data))
    ds = open_dataset(tmp_path)
    assert len(ds.items) == 1 and "3 numbers" in ds.items[0].problem
    assert len(ds.problems) == 4


def _export_import(src: Path, out: Path) -> tuple[dict, dict]:
    ds = open_dataset(src)
    with LabelStore.open(ds) as store:
        store.correct(ds.items[0].name, (1.5, 2.25))
        labels = store.effective_labels()
        res = write_coco(ds, store, out)
    assert res.n_labels == len(labels)
    back = open_dataset(out)
    return labels, {it.name: it.label for it in back.items if it.label is not None}


def test_round_trip_same_labels_and_same_file(tmp_path: Path) -> None:
    make_points_csv(tmp_path / "ds", n=5)
    out = tmp_path / "ds" / "export" / "k.json"
    labels, back = _export_import(tmp_path / "ds", out)
    assert back == {f"../{k}": v for k, v in labels.items()}  # names relative to the JSON's folder
    # sorts after k.json, so it does not become the folder's label file (engine.labels.destination)
    again = tmp_path / "ds" / "export" / "later.json"
    assert main(["labels", str(out), "--format", "coco", "--out", str(again)]) == 0
    assert again.read_bytes() == out.read_bytes()


def test_cli_export_in_dataset_folder_opens_with_same_names(tmp_path: Path) -> None:
    make_points_csv(tmp_path, n=4)
    ds = open_dataset(tmp_path)
    with LabelStore.open(ds) as store:
        want = store.effective_labels()
    out = tmp_path / "coco" / "labels.json"
    assert main(["labels", str(tmp_path), "--format", "coco", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["images"][0]["file_name"] == "../img/000.png"
    back = open_dataset(out)
    assert {it.name.removeprefix("../"): it.label for it in back.items} == want
    assert {it.group for it in back.items} == {"img"}


def test_pycocotools_reads_export(tmp_path: Path) -> None:
    pytest.importorskip("pycocotools")
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    path = coco_fixture(tmp_path)
    out = tmp_path / "out.json"
    ds = open_dataset(path)
    with LabelStore.open(ds) as store:
        write_coco(ds, store, out)
    gt = COCO(str(out))
    assert len(gt.getImgIds()) == 4  # the missing image file is left out
    assert len(gt.getAnnIds()) == 1
    assert gt.loadCats(1)[0]["keypoints"] == NAMES
    ann = gt.loadAnns(gt.getAnnIds())[0]
    assert gt.loadImgs(ann["image_id"])[0]["file_name"] == "imgs/a/full.png"
    dt = gt.loadRes([{**ann, "score": 1.0} for ann in gt.loadAnns(gt.getAnnIds())])
    ev = COCOeval(gt, dt, "keypoints")
    ev.params.kpt_oks_sigmas = np.full(3, 0.05)
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    assert ev.stats[0] == pytest.approx(1.0)  # a perfect match of the labels with themselves


def test_yolo_pose_files_read_back(tmp_path: Path) -> None:
    yaml = pytest.importorskip("yaml")
    path = coco_fixture(tmp_path / "src")
    ds = open_dataset(path)
    out = tmp_path / "yolo"
    assert main(["labels", str(path), "--format", "yolo-pose", "--out", str(out)]) == 0
    conf = yaml.safe_load((out / "data.yaml").read_text())
    assert conf["kpt_shape"] == [3, 3] and conf["names"] == {0: "object"} and conf["kpt_names"][0] == NAMES
    assert Path(conf["path"]) == out and "flip_idx" not in conf
    assert (conf["train"], conf["val"]) == ("./images/train", "./images/val")
    txts = sorted(p.relative_to(out / "labels").as_posix() for p in (out / "labels").rglob("*.txt"))
    assert txts == ["train/imgs__a__full.txt"]  # one labelled image: it trains
    img = out / "images" / "train" / "imgs__a__full.png"
    assert img.is_file() and image_size(img) == (60, 40)
    line = (out / "labels" / "train" / "imgs__a__full.txt").read_text()
    assert line.split()[:5] == ["0", "0.5", "0.5", "1", "1"]
    assert all(0 <= float(v) <= 2 for v in line.split()[5:])
    got = read_yolo_line(line, image_size(img))
    assert np.allclose(got, ds.item("imgs/a/full.png").label, atol=1e-5)


def test_scalar_dataset_cannot_be_coco(tmp_path: Path, capsys) -> None:
    make_scalar_csv(tmp_path, n=3)
    ds = open_dataset(tmp_path)
    with LabelStore.open(ds) as store, pytest.raises(ExportError):
        write_yolo_pose(ds, store, tmp_path / "y")
    assert main(["labels", str(tmp_path), "--format", "coco", "--out", str(tmp_path / "c.json")]) == 2
    assert "scalars" in capsys.readouterr().err
    assert main(["labels", str(tmp_path), "--format", "coco"]) == 2


def test_cli_info_on_coco_json_in_subprocess(tmp_path: Path) -> None:
    path = coco_fixture(tmp_path)
    r = subprocess.run(
        [sys.executable, "-m", "engine.cli", "info", str(path), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    info = json.loads(r.stdout)
    assert info["format"] == "coco" and info["counts"]["labelled"] == 1 and info["counts"]["items"] == 5
