"""Biwi Kinect Head Pose layout: person folders of ``frame_NNNNN_rgb.png|jpg`` + ``frame_NNNNN_pose.txt``.

The label is the head centre projected into the RGB image as the fastai book's ``get_ctr`` does
(``u = x*fx/z + cx``, ``v = y*fy/z + cy``), but with each folder's own ``rgb.cal``.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

from engine.core import Item
from engine.data.common import (
    CHUNK,
    Builder,
    ParseError,
    bad_name,
    dir_key,
    entry_kind,
    natural_key,
    pmap,
    posix_join,
    scandir_sorted,
)
from engine.data.images import check_file
from engine.inputs import read_regular

FRAME_RE = re.compile(r"^(.+)_rgb\.(png|jpe?g)$", re.IGNORECASE)
POSE_RE = re.compile(r"^(.+)_pose\.txt$", re.IGNORECASE)

OUTSIDE_MARGIN = 0.25
"""A centre more than this fraction of the image size outside the image is a problem."""


@dataclass(frozen=True)
class Calibration:
    """RGB camera intrinsics and image size from a Biwi ``rgb.cal``."""

    fx: float
    fy: float
    cx: float
    cy: float
    w: int
    h: int


DEFAULT_CAL = Calibration(517.679, 517.679, 320.0, 240.5, 640, 480)
"""Sequence 01's ``rgb.cal``, used for folders whose own calibration is missing or unusable."""


def _floats(tokens: list[bytes], what: str) -> list[float]:
    """Tokens as finite floats, or ParseError."""
    try:
        vals = list(map(float, tokens))
    except ValueError:
        raise ParseError(f"{what}: not a number") from None
    # One sum is a fast finiteness test; only when it fails (NaN, inf or overflow) look at each value.
    if not math.isfinite(sum(vals)) and not all(map(math.isfinite, vals)):
        raise ParseError(f"{what}: NaN or infinite value")
    return vals


def parse_pose(data: bytes) -> tuple[float, float, float]:
    """The head centre ``(x, y, z)`` in mm from a ``*_pose.txt`` (9 rotation numbers, then 3); ParseError."""
    tokens = data.split()
    if len(tokens) != 12:
        if not tokens:
            raise ParseError("empty pose file")
        raise ParseError(
            f"malformed pose file: expected 12 numbers (rotation and centre), found {len(tokens)}"
        )
    vals = _floats(tokens, "malformed pose file")
    return vals[9], vals[10], vals[11]


def parse_cal(data: bytes) -> Calibration:
    """Intrinsics (first 3 lines) and image size (last line, ``w h``) from an ``rgb.cal``; ParseError."""
    lines = [ln.split() for ln in data.splitlines()]
    lines = [ln for ln in lines if ln]
    if len(lines) < 3:
        raise ParseError("rgb.cal: fewer than 3 lines of intrinsics")
    if any(len(ln) != 3 for ln in lines[:3]):
        raise ParseError("rgb.cal: intrinsics lines must hold 3 numbers each")
    k = _floats(lines[0] + lines[1] + lines[2], "rgb.cal intrinsics")
    fx, cx, fy, cy = k[0], k[2], k[4], k[5]
    if fx <= 0 or fy <= 0:
        raise ParseError("rgb.cal: focal length must be positive")
    last = lines[-1]
    if len(lines) < 4 or len(last) != 2:
        raise ParseError("rgb.cal: last line must be the image size 'w h'")
    try:
        w, h = int(last[0]), int(last[1])
    except ValueError:
        raise ParseError("rgb.cal: image size is not two integers") from None
    if not (0 < w < 1_000_000 and 0 < h < 1_000_000):
        raise ParseError("rgb.cal: image size out of range")
    return Calibration(fx, fy, cx, cy, w, h)


def project(ctr: tuple[float, float, float], cal: Calibration) -> tuple[float, float]:
    """Pixel position of a 3-D centre (mm) with the book's ``get_ctr`` formula; ParseError for z <= 0."""
    x, y, z = ctr
    if z == 0:
        raise ParseError("pose centre has z = 0 (cannot project)")
    if z < 0:
        raise ParseError(f"pose centre is behind the camera (z = {z:g})")
    return x * cal.fx / z + cal.cx, y * cal.fy / z + cal.cy


def label_of(data: bytes, cal: Calibration) -> tuple[float, float]:
    """The pixel label from pose-file bytes, checked to lie near the image; ParseError."""
    u, v = project(parse_pose(data), cal)
    mx, my = cal.w * OUTSIDE_MARGIN, cal.h * OUTSIDE_MARGIN
    if not (-mx <= u <= cal.w + mx and -my <= v <= cal.h + my):
        raise ParseError(f"pose centre projects far outside the {cal.w}x{cal.h} image ({u:.0f}, {v:.0f})")
    return u, v


def read_small(path: str | os.PathLike, limit: int = 4096) -> bytes:
    """The first ``limit`` bytes of a small file via raw ``os.open`` (cheaper than ``open()``); OSError."""
    return read_regular(path, limit)


def _read_frame(job: tuple[str, str | None]) -> tuple[str | None, bytes | str | None]:
    """(image problem, pose bytes or read-error text or None) for one frame, reading both files."""
    img_path, pose_path = job
    img_problem = check_file(img_path)
    if pose_path is None:
        return img_problem, None
    try:
        return img_problem, read_small(pose_path)
    except OSError as e:
        return img_problem, f"cannot read pose file ({e.strerror or e})"


def read_calibration(folder: Path, group: str, b: Builder) -> Calibration:
    """The folder's calibration, or the default with a note (and a problem) when missing or unusable."""
    try:
        data = read_regular(folder / "rgb.cal", 1 << 16)
    except FileNotFoundError:
        b.notes.append(f"{group}: no rgb.cal, using the default Biwi calibration (sequence 01)")
        b.problem(
            posix_join(group, "rgb.cal") if group != "." else "rgb.cal", "missing rgb.cal (default used)"
        )
        return DEFAULT_CAL
    except OSError as e:
        reason = f"cannot read rgb.cal ({e.strerror or e})"
    else:
        try:
            return parse_cal(data)
        except ParseError as e:
            reason = str(e)
    b.notes.append(f"{group}: unusable rgb.cal ({reason}), using the default Biwi calibration (sequence 01)")
    b.problem(posix_join(group, "rgb.cal") if group != "." else "rgb.cal", f"{reason} (default used)")
    return DEFAULT_CAL


def is_frame_file(e: os.DirEntry) -> bool:
    """Whether a folder entry is a Biwi image or pose file (not a folder named like one)."""
    return bool(FRAME_RE.match(e.name) or POSE_RE.match(e.name)) and entry_kind(e) != "dir"


def has_frames(folder: str | os.PathLike[str]) -> bool:
    """Whether a folder directly holds Biwi frame or pose files (stops at the first one)."""
    try:
        with os.scandir(folder) as it:
            return any(is_frame_file(e) for e in it)
    except OSError:
        return False


def index_folder(folder: Path, group: str, prefix: str, b: Builder) -> None:
    """Index one person folder: items named ``prefix/frame_..._rgb.png`` in group ``group``."""
    try:
        entries = scandir_sorted(folder)
    except OSError as err:
        b.problem(prefix or ".", f"cannot read folder ({err.strerror or err})")
        return
    images: list[tuple[str, str, str]] = []  # (frame stem, name, path)
    poses: dict[str, str] = {}
    pose_names: dict[str, str] = {}
    for e in entries:
        name = posix_join(prefix, e.name)
        if bad_name(e.name):
            b.problem(name.encode("utf-8", "replace").decode("utf-8"), "file name is not valid UTF-8")
            continue
        m = FRAME_RE.match(e.name)
        if m:
            kind = entry_kind(e)
            if kind == "dir":
                b.problem(name, "a folder named like an image")
            elif kind == "broken":
                b.problem(name, "broken or looping symlink")
            else:
                images.append((m.group(1), name, e.path))
            continue
        m = POSE_RE.match(e.name)
        if m:
            poses[m.group(1)] = e.path
            pose_names[m.group(1)] = name
    if not images and not poses:
        return
    # the calibration only turns pose files into labels: a folder of new frames without any needs none
    cal = read_calibration(folder, group, b) if poses else DEFAULT_CAL
    with_image = {stem for stem, _, _ in images}
    for stem in sorted(set(poses) - with_image, key=natural_key):
        b.problem(pose_names[stem], "pose file without image")
    unlabelled = 0
    for i in range(0, len(images), CHUNK):
        chunk = images[i : i + CHUNK]
        results = pmap(_read_frame, [(path, poses.get(stem)) for stem, _, path in chunk])
        for (_, name, path), (img_problem, pose) in zip(chunk, results, strict=True):
            label, problem = None, img_problem
            if pose is None:
                unlabelled += problem is None  # a frame without a pose file is unlabelled, not a problem
            elif isinstance(pose, str):
                problem = problem or pose
            else:
                try:
                    label = label_of(pose, cal)
                except ParseError as e:
                    problem = problem or str(e)
            b.add(Item(name, group, Path(path), None if problem else label, problem))
        b.flush()
    if unlabelled:
        b.notes.append(f"{group}: {unlabelled} frames without a pose file (unlabelled)")


def index_biwi(root: Path, b: Builder) -> None:
    """Index a Biwi root (person folders) or a single person folder."""
    if has_frames(root):
        index_folder(root, root.name or ".", "", b)
        return
    seen = {dir_key(root)}
    for e in scandir_sorted(root):
        if entry_kind(e) != "dir":
            continue
        if bad_name(e.name):
            b.problem(
                e.name.encode("utf-8", "replace").decode("utf-8"), "folder name is not valid UTF-8, skipped"
            )
            continue
        key = dir_key(e.path)
        if key in seen:
            if e.is_symlink():
                b.problem(e.name, "folder link to an already indexed folder (symlink loop), skipped")
            continue
        seen.add(key)
        if has_frames(e.path):
            index_folder(Path(e.path), e.name, e.name, b)
        elif FRAME_RE.match(e.name):
            b.problem(e.name, "a folder named like an image")
        else:
            b.notes.append(f"{e.name}: no Biwi frames, skipped")
