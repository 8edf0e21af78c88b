"""COCO keypoints JSON (``images``, ``annotations`` with ``[x, y, v]`` triples, ``categories[].keypoints``).

Rules (documented in README): image paths resolve against the JSON's folder (or ``image_root``); item names are
the listed ``file_name`` paths (normalised), so they stay the same whatever image root is given. ``v = 0`` marks a missing keypoint: an image with
some but not all points labelled has no label and a listed problem (a person completes it, then it trains); an
image whose annotation labels no point is unlabelled. Several annotated instances on one image are a problem
(imgreg regresses one set of points per image). Crowd regions (``iscrowd = 1``) and annotations without
``keypoints`` are skipped. The group is the image's ``group`` field when present, else its folder.
Coordinates are taken as they are: continuous pixels, the image's left/top edge at 0.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from engine.core import Item, Label
from engine.data.common import CHUNK, Builder, ParseError, entry_kind, group_of, pmap
from engine.data.csvs import item_name
from engine.data.images import check_file
from engine.inputs import load_json, read_regular

SNIFF_BYTES = 1 << 20
_KEYS = (b'"images"', b'"annotations"', b'"categories"')


def looks_coco(path: Path) -> bool:
    """Whether ``path`` is a ``.json`` file whose start is an object naming COCO's top-level keys (cheap sniff)."""
    if path.suffix.lower() != ".json":
        return False
    try:
        head = read_regular(path, SNIFF_BYTES)
    except OSError:
        return False
    head = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    return head.startswith(b"{") and any(k in head for k in _KEYS)


def _is_coco(path: Path) -> bool:
    """Whether a folder's JSON is a COCO keypoints file: small ones are parsed and checked, big ones sniffed."""
    if not looks_coco(path):
        return False
    try:
        if path.stat().st_size > SNIFF_BYTES:
            return True
        keypoint_category(load_coco(path))
    except (OSError, ParseError):
        return False  # some other JSON beside the images: not a reason to stop opening the folder
    return True


def find_coco(entries: list[os.DirEntry]) -> Path | None:
    """The first COCO keypoints JSON among a folder's entries (natural order), or None."""
    for e in entries:
        if e.name.lower().endswith(".json") and entry_kind(e) == "file" and _is_coco(Path(e.path)):
            return Path(e.path)
    return None


def load_coco(path: Path) -> dict[str, Any]:
    """The parsed COCO object with its three lists checked; ParseError with a one-line reason otherwise."""
    try:
        data = load_json(read_regular(path))
    except OSError as e:
        raise ParseError(f"cannot read ({e.strerror or e})") from None
    except ValueError as e:
        raise ParseError(str(e)) from None
    if not isinstance(data, dict):
        raise ParseError("not a COCO file: the top level is not an object")
    missing = [k for k in ("images", "annotations", "categories") if not isinstance(data.get(k), list)]
    if missing:
        raise ParseError(f"not a COCO keypoints file: no {', '.join(repr(k) for k in missing)} list")
    return data


def keypoint_category(data: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The category whose keypoints are read (the first naming keypoints) and all keypoint categories."""
    cats = [
        c
        for c in data["categories"]
        if isinstance(c, dict) and isinstance(c.get("keypoints"), list) and c["keypoints"]
    ]
    if not cats:
        raise ParseError("no category names its keypoints ('categories[].keypoints' is missing or empty)")
    return cats[0], cats


def _triples(kp: Any, n: int) -> list[tuple[float, float, float]]:
    """``n`` finite ``(x, y, v)`` triples from a flat keypoints list; ParseError."""
    if not isinstance(kp, list) or len(kp) != 3 * n:
        got = len(kp) if isinstance(kp, list) else type(kp).__name__
        raise ParseError(f"'keypoints' must hold {3 * n} numbers ({n} points x [x, y, v]), found {got}")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in kp):
        raise ParseError("'keypoints' holds something that is not a number")
    vals = [float(v) for v in kp]
    if not all(math.isfinite(v) for v in vals):
        raise ParseError("'keypoints' holds a number that is not finite")
    return [(vals[i], vals[i + 1], vals[i + 2]) for i in range(0, len(vals), 3)]


def _hashable_id(v: Any) -> bool:
    """Whether ``v`` can be a COCO id (an int or a string)."""
    return isinstance(v, (int, str)) and not isinstance(v, bool)


def index_coco(root: Path, json_path: Path, b: Builder, image_root: Path | None = None) -> None:
    """Index a COCO keypoints file: one item per image, problems for bad entries and unusable images."""
    src = json_path.name
    data = load_coco(json_path)
    cat, cats = keypoint_category(data)
    names = [str(k) for k in cat["keypoints"]]
    n = len(names)
    b.n_points, b.point_names = n, names
    b.notes.append(f"labels from {src} (category {cat.get('name', cat.get('id'))!r}, {n} keypoints)")
    if len(cats) > 1:
        b.notes.append(f"{src} has {len(cats)} keypoint categories; only {cat.get('name')!r} is read")
    base = Path(os.path.abspath(image_root)) if image_root is not None else json_path.parent

    images: dict[Any, tuple[str, str, Path]] = {}
    seen: set[str] = set()
    for i, im in enumerate(data["images"]):
        where = f"{src}: images[{i}]"
        fname = im.get("file_name") if isinstance(im, dict) else None
        if not isinstance(fname, str) or not fname.strip() or not _hashable_id(im.get("id")):
            b.problem(where, "an image needs an 'id' (number or text) and a 'file_name'")
            continue
        if "\x00" in fname:
            b.problem(where, "file_name contains a NUL character")
            continue
        if im["id"] in images:
            b.problem(where, f"image id {im['id']!r} listed again; ignored")
            continue
        # Names are the file names as listed, whatever the image root, so the store's keys never move.
        name = item_name(fname.strip().replace("\\", "/"), "")
        if name in seen:
            b.problem(where, f"{name} listed again; ignored")
            continue
        seen.add(name)
        group = im.get("group")
        group = str(group) if _hashable_id(group) and str(group) else group_of(name)
        path = Path(name) if os.path.isabs(name) else base / name
        images[im["id"]] = (name, group, path)

    found: dict[Any, list[list[tuple[float, float, float]]]] = {}
    bad: dict[Any, str] = {}
    other_cats = {c.get("id") for c in cats[1:] if _hashable_id(c.get("id"))}
    no_kp = 0
    for i, a in enumerate(data["annotations"]):
        where = f"{src}: annotations[{i}]"
        if not isinstance(a, dict):
            b.problem(where, "an annotation must be an object")
            continue
        if a.get("keypoints") is None or a.get("iscrowd"):
            no_kp += 1
            continue
        img_id = a.get("image_id")
        if not _hashable_id(img_id) or img_id not in images:
            b.problem(
                f"{where} (id {a.get('id')!r})",
                f"refers to image id {img_id!r}, which 'images' does not list",
            )
            continue
        cid = a.get("category_id")
        if cid is not None and not _hashable_id(cid):
            b.problem(where, "'category_id' must be a number or text")
            continue
        if cid in other_cats and cid != cat.get("id"):
            b.problem(
                where, f"category {a.get('category_id')!r} not read (imgreg reads one keypoint category)"
            )
            continue
        try:
            trip = _triples(a["keypoints"], n)
        except ParseError as e:
            bad.setdefault(img_id, f"{where}: {e}")
            continue
        if any(v > 0 for _, _, v in trip):
            found.setdefault(img_id, []).append(trip)
    if no_kp:
        b.notes.append(f"{src}: {no_kp} annotations without keypoints or marked iscrowd were skipped")

    todo: list[tuple[str, str, Path, Label | None, str | None]] = []
    for img_id, (name, group, path) in images.items():
        label, problem = _label(found.get(img_id, []), names, bad.get(img_id))
        todo.append((name, group, path, label, problem))
    for i in range(0, len(todo), CHUNK):
        chunk = todo[i : i + CHUNK]
        checks = pmap(check_file, [p for _, _, p, _, _ in chunk])
        for (name, group, path, label, problem), img_problem in zip(chunk, checks, strict=True):
            problem = img_problem or problem
            b.add(Item(name, group, path, None if problem else label, problem))
        b.flush()


def _label(
    anns: list[list[tuple[float, float, float]]], names: list[str], bad: str | None
) -> tuple[Label | None, str | None]:
    """An image's label (or None) and problem (or None) from its annotations' keypoint triples."""
    if bad:
        return None, bad
    if not anns:
        return None, None
    if len(anns) > 1:
        return None, (
            f"{len(anns)} annotated instances; imgreg regresses one set of points per image (keep one annotation)"
        )
    missing = [nm for nm, (_, _, v) in zip(names, anns[0], strict=True) if v <= 0]
    if missing:
        shown = ", ".join(missing[:6]) + (", ..." if len(missing) > 6 else "")
        return None, f"keypoints not labelled (v=0): {shown}; unlabelled until every point is set"
    return tuple(c for x, y, _ in anns[0] for c in (x, y)), None
