"""Effective point labels for other tools: COCO keypoints JSON and a YOLO-pose folder (``imgreg labels --format``).

COCO: one ``images`` entry per item whose image size can be read (``file_name`` relative to the output file's
folder, ``group`` kept as an extra field so groups survive a round trip), one annotation per labelled item with
every keypoint ``v = 2``, a box around the whole image, one category naming the points. YOLO-pose: Ultralytics'
split layout ``images/train``, ``images/val``, ``labels/train``, ``labels/val`` (split by group as training
splits, ``engine.data.split``), flat unique file names (folders joined by ``__``), images as links to the
originals (copies where links cannot be made), one ``.txt`` per labelled image (class 0, a whole-image box,
normalised ``x y v`` per point) and ``data.yaml`` with ``kpt_shape``. Where exports may write, and how a folder
export replaces an older one: ``engine.labels.destination``.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.atomic import atomic_write_text
from engine.core import Dataset, Item, Label, Problem
from engine.data.images import ImageError, image_size
from engine.data.split import split_indices
from engine.labels.destination import (
    ExportError,
    check_file_out,
    check_folder_out,
    discard,
    partial_dir,
    swap_in,
    write_manifest,
)
from engine.labels.export import labels_text
from engine.labels.store import LabelStore

CATEGORY = "object"
EXPORT_FORMATS = ("csv", "json", "coco", "yolo-pose")
POINT_FORMATS = ("coco", "yolo-pose")  # keypoint formats: nothing to write for a scalar dataset


def formats_for(kind: str) -> tuple[str, ...]:
    """The export formats that apply to a dataset of ``kind`` (``point`` or ``scalar``)."""
    return tuple(f for f in EXPORT_FORMATS if kind == "point" or f not in POINT_FORMATS)


"""What ``imgreg labels --format`` and File > Export write."""


@dataclass
class Exported:
    """What an export wrote: the file or folder, images and labels written, items left out and why."""

    path: Path
    n_images: int = 0
    n_labels: int = 0
    skipped: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def point_names(ds: Dataset) -> list[str]:
    """The dataset's point names (COCO's own when it came from COCO), else ``p1, p2, ...``."""
    if len(ds.point_names) == ds.n_points:
        return list(ds.point_names)
    return [f"p{i}" for i in range(1, ds.n_points + 1)]


def _require_points(ds: Dataset, fmt: str) -> None:
    """ExportError unless ``ds`` holds points."""
    if ds.kind != "point":
        raise ExportError(f"{fmt} holds keypoints; this dataset holds scalars (use --format csv or json)")


def _rel(path: Path, folder: Path) -> str:
    """``path`` relative to ``folder`` as POSIX, or absolute when there is no relative path (another drive)."""
    try:
        return os.path.relpath(os.path.abspath(path), os.path.abspath(folder)).replace(os.sep, "/")
    except ValueError:
        return Path(os.path.abspath(path)).as_posix()


def _sized(ds: Dataset, store: LabelStore, res: Exported) -> list[tuple[Item, tuple[int, int], Label | None]]:
    """Items with their image size (w, h) and effective label (None when unlabelled); unsizable ones skipped."""
    records = store.records()
    want = 2 * ds.n_points
    out = []
    for it in ds.items:
        rec = records.get(it.name)
        label = rec.effective if rec is not None else None
        if label is not None and len(label) != want:
            res.skipped.append(Problem(it.name, f"label has {len(label)} values, expected {want}"))
            label = None
        try:
            size = image_size(it.path)
        except ImageError as e:
            if label is not None:
                res.skipped.append(Problem(it.name, e.reason))
            continue
        out.append((it, size, label))
    return out


def coco_dict(ds: Dataset, store: LabelStore, out_dir: Path) -> tuple[dict[str, Any], Exported]:
    """The COCO keypoints object of ``ds``'s effective labels, image paths relative to ``out_dir``."""
    _require_points(ds, "COCO keypoints")
    res = Exported(Path(out_dir))
    n = ds.n_points
    images: list[dict[str, Any]] = []
    anns: list[dict[str, Any]] = []
    for i, (it, (w, h), label) in enumerate(_sized(ds, store, res), start=1):
        images.append(
            {"id": i, "file_name": _rel(it.path, out_dir), "width": w, "height": h, "group": it.group}
        )
        if label is None:
            continue
        kps = [v for k in range(n) for v in (float(label[2 * k]), float(label[2 * k + 1]), 2)]
        anns.append(
            {"id": len(anns) + 1, "image_id": i, "category_id": 1, "keypoints": kps, "num_keypoints": n,
             "bbox": [0.0, 0.0, float(w), float(h)], "area": float(w * h), "iscrowd": 0}
        )  # fmt: skip
    res.n_images, res.n_labels = len(images), len(anns)
    cat = {"id": 1, "name": CATEGORY, "supercategory": CATEGORY, "keypoints": point_names(ds), "skeleton": []}
    data = {
        "info": {"description": "keypoints exported by imgreg", "version": "1.0"},
        "licenses": [],
        "images": images,
        "annotations": anns,
        "categories": [cat],
    }
    return data, res


def write_coco(ds: Dataset, store: LabelStore, out: Path | str) -> Exported:
    """Write ``ds``'s effective labels as a COCO keypoints JSON at ``out`` (atomically)."""
    _require_points(ds, "COCO keypoints")
    out = check_file_out(ds, out)
    data, res = coco_dict(ds, store, out.parent)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(data, indent=1) + "\n")
    res.path = out
    return res


def flat_name(name: str, taken: set[str]) -> str:
    """A file name for an item in one flat folder: its path's parts joined by ``__`` (no ``/``, drive or
    ``..``), made unique in ``taken`` with ``-2``, ``-3``, ... before the suffix."""
    parts = [p.replace(":", "_") for p in name.replace("\\", "/").split("/") if p and p != "."]
    flat = "__".join("up" if p == ".." else p for p in parts) or "image"
    stem, suffix = os.path.splitext(flat)
    out, n = flat, 1
    while out.lower() in taken:
        n += 1
        out = f"{stem}-{n}{suffix}"
    taken.add(out.lower())
    return out


def _link(src: Path, dst: Path) -> bool:
    """Link the new file ``dst`` to ``src``; copy when links are not possible. True if linked."""
    try:
        os.symlink(os.path.abspath(src), dst)
        return True
    except OSError:
        shutil.copy2(src, dst)
        return False


def yolo_line(label: Label, size: tuple[int, int]) -> str:
    """One YOLO-pose label line: class 0, a whole-image box, then normalised ``x y 2`` per point."""
    w, h = size
    kps = " ".join(f"{label[k] / w:.8f} {label[k + 1] / h:.8f} 2" for k in range(0, len(label), 2))
    return f"0 0.5 0.5 1 1 {kps}\n"


def yolo_yaml(out_dir: Path, ds: Dataset) -> str:
    """The Ultralytics dataset YAML (``kpt_shape``, ``flip_idx`` only for single points, names)."""
    n = ds.n_points
    lines = [
        "# YOLO-pose dataset written by imgreg: no detector boxes, so each box is the whole image",
        "# train/val split by group (whole groups in val), as imgreg's training splits",
        f"path: {json.dumps(Path(os.path.abspath(out_dir)).as_posix())}",
        "train: ./images/train",  # "./": sleap-io finds labels by replacing "/images" with "/labels"
        "val: ./images/val",
        f"kpt_shape: [{n}, 3]",
    ]
    if n == 1:
        lines.append("flip_idx: [0]")
    lines += ["names:", f"  0: {CATEGORY}", "kpt_names:", "  0:"]
    lines += [f"    - {json.dumps(nm)}" for nm in point_names(ds)]
    return "\n".join(lines) + "\n"


def write_yolo_pose(ds: Dataset, store: LabelStore, out_dir: Path | str) -> Exported:
    """Write a YOLO-pose folder for ``ds``'s labelled items (split layout, data.yaml), built aside and swapped
    in: a killed export leaves the older folder as it was."""
    _require_points(ds, "YOLO-pose")
    out_dir = check_folder_out(ds, out_dir)
    res = Exported(out_dir)
    todo = [(it, size, label) for it, size, label in _sized(ds, store, res) if label is not None]
    train, valid, _ = split_indices([it.group for it, _, _ in todo]) if len(todo) > 1 else ([0], [], [])
    split = {i: "train" for i in train} | {i: "val" for i in valid}
    tmp = partial_dir(out_dir)
    try:
        for sub in ("images/train", "images/val", "labels/train", "labels/val"):
            (tmp / sub).mkdir(parents=True, exist_ok=True)
        taken: set[str] = set()
        copied = 0
        for i, (it, size, label) in enumerate(todo):
            name = flat_name(it.name, taken)
            part = split.get(i, "train")
            copied += not _link(Path(it.path), tmp / "images" / part / name)
            atomic_write_text((tmp / "labels" / part / name).with_suffix(".txt"), yolo_line(label, size))
            res.n_images += 1
            res.n_labels += 1
        atomic_write_text(tmp / "data.yaml", yolo_yaml(out_dir, ds))
        write_manifest(tmp)
        swap_in(tmp, out_dir)
    except BaseException:
        discard(tmp)
        raise
    res.notes.append(f"{len(train) if len(todo) > 1 else len(todo)} train and {len(valid)} val images")
    if copied:
        res.notes.append(f"{copied} images copied (links are not possible here)")
    return res


def write_export(ds: Dataset, store: LabelStore, fmt: str, out: Path | str) -> Exported:
    """Write the effective labels in ``fmt`` (``EXPORT_FORMATS``) at ``out``, checked by the destination rules."""
    if fmt == "coco":
        return write_coco(ds, store, out)
    if fmt == "yolo-pose":
        return write_yolo_pose(ds, store, out)
    if fmt not in EXPORT_FORMATS:
        raise ExportError(f"unknown export format {fmt!r} (one of {', '.join(EXPORT_FORMATS)})")
    path = check_file_out(ds, out)
    text, n = labels_text(ds, store, fmt)
    atomic_write_text(path, text)
    return Exported(path, n_images=n, n_labels=n)


def read_yolo_line(line: str, size: tuple[int, int]) -> Label:
    """Points in pixels from a YOLO-pose label line and the image size (w, h): the inverse of ``yolo_line``."""
    vals = [float(v) for v in line.split()]
    w, h = size
    kps = vals[5:]
    return tuple(c for k in range(0, len(kps), 3) for c in (kps[k] * w, kps[k + 1] * h))
