"""Dataset formats, detected automatically: ``biwi``, ``points-csv``, ``scalar-csv``, ``coco``, ``utkface``, ``folder``.

Detection order: a label CSV in the root (or the root itself being one), Biwi person folders (or a single
person folder), a COCO keypoints JSON (or the root itself being a ``.json`` file), UTKFace-named images, any
images. Bad files never stop indexing: they become Problems.
"""

from __future__ import annotations

import os
from pathlib import Path

from engine.core import CancelToken, Dataset, Kind
from engine.data.biwi import has_frames, index_biwi, is_frame_file
from engine.data.coco import find_coco, index_coco
from engine.data.common import (
    Builder,
    DatasetError,
    OnBatch,
    ParseError,
    entry_kind,
    scandir_sorted,
    walk_images,
)
from engine.data.csvs import csv_kind, index_csv
from engine.data.folder import index_images, looks_utk

__all__ = ["DatasetError", "ParseError", "FORMATS", "detect", "open_dataset"]

FORMATS: dict[str, Kind] = {
    "biwi": "point",
    "points-csv": "point",
    "scalar-csv": "scalar",
    "coco": "point",
    "utkface": "scalar",
    "folder": "point",
}
"""Format name -> label kind."""

_SAMPLE = 200


def _find_csv(entries: list[os.DirEntry]) -> tuple[Path, str] | None:
    """The first label CSV among a folder's entries (natural order) and its format."""
    for e in entries:
        if e.name.lower().endswith(".csv") and entry_kind(e) == "file":
            found = csv_kind(Path(e.path))
            if found:
                return Path(e.path), "points-csv" if found[0] == "points" else "scalar-csv"
    return None


def _biwi_like(root: Path, entries: list[os.DirEntry]) -> bool:
    """Whether ``root`` or one of its folders directly holds Biwi frames."""
    if any(is_frame_file(e) for e in entries):
        return True
    return any(entry_kind(e) == "dir" and has_frames(e.path) for e in entries)


def _detect(root: Path) -> tuple[str, Path | None]:
    """``(format, csv path or None)`` for ``root``; DatasetError when nothing is recognised."""
    if not root.exists():
        raise DatasetError(f"{root}: no such file or folder")
    if root.is_file():
        if root.suffix.lower() == ".json":
            return "coco", root
        found = csv_kind(root) if root.suffix.lower() == ".csv" else None
        if not found:
            raise DatasetError(
                f"{root}: not a folder, a label CSV (image,x,y or image,value) or a COCO keypoints JSON"
            )
        return ("points-csv" if found[0] == "points" else "scalar-csv"), root
    try:
        entries = scandir_sorted(root)
        csv_hit = _find_csv(entries)
        if csv_hit:
            return csv_hit[1], csv_hit[0]
        if _biwi_like(root, entries):
            return "biwi", None
        coco = find_coco(entries)
        if coco:
            return "coco", coco
        names = [n for n, _ in walk_images(root, lambda name, reason: None, limit=_SAMPLE)]
    except OSError as e:
        raise DatasetError(f"{root}: cannot read folder ({e.strerror or e})") from None
    if not names:
        raise DatasetError(f"{root}: no images, label CSV or Biwi folders found")
    return ("utkface" if looks_utk(names) else "folder"), None


def detect(root: str | os.PathLike) -> str:
    """The format name of the dataset at ``root``; raises DatasetError when there is none."""
    return _detect(Path(root))[0]


def open_dataset(
    root: str | os.PathLike,
    on_batch: OnBatch | None = None,
    cancel: CancelToken | None = None,
    image_root: str | os.PathLike | None = None,
) -> Dataset:
    """Detect and index the dataset at ``root``, passing items to ``on_batch`` in chunks as they are parsed.

    ``image_root``: where a COCO file's image paths start (default: the JSON's folder); other formats ignore it.
    """
    root = Path(os.path.abspath(root))
    fmt, csv_path = _detect(root)
    if root.is_file():
        root = root.parent
    b = Builder(root, fmt, FORMATS[fmt], on_batch, cancel)
    if fmt == "biwi":
        index_biwi(root, b)
    elif fmt == "coco" and csv_path is not None:
        try:
            index_coco(root, csv_path, b, Path(image_root) if image_root is not None else None)
        except ParseError as e:
            raise DatasetError(f"{csv_path}: {e}") from None
    elif csv_path is not None:
        try:
            index_csv(root, csv_path, b)
        except ParseError as e:
            raise DatasetError(f"{csv_path}: {e}") from None
    else:
        index_images(root, b, utk=fmt == "utkface")
    ds = b.dataset()
    ds.label_file = csv_path
    return ds
