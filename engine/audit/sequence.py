"""The sequence check: items of one group whose names carry a frame number form a video, and each frame's label is
judged against what the frames around it say (``engine.audit.smooth``); torch-free."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

import numpy as np

from engine.audit.findings import SEQUENCE, Finding
from engine.audit.smooth import MIN_FRAMES, SeqFit, fit_sequences
from engine.core import Dataset, Label

# the last run of digits in a file's stem: frame_00042_rgb, img_0042, clip_000123
_FRAME = re.compile(r"^(.*?)(\d+)(\D*)$")
MIN_LEN = 8  # shorter runs of numbered names are no video worth judging
MIN_PX = 0.1  # no point label is more precise than a tenth of a pixel: the smallest local scale
STILL_PX = (
    1.0  # point labels that move less than this per frame (median) are a still video, whatever the spread
)
SMOOTH = (
    0.5  # a video's labels move less from frame to frame than this share of the gap between random frames
)


def frame_key(name: str, group: str = ".") -> tuple[tuple[str, str, str, str, str], int] | None:
    """``(sequence key, frame number)`` of an item name, None when its stem ends in no number."""
    p = PurePosixPath(name)
    stem, suffix = (p.name.split(".", 1) + [""])[:2]
    m = _FRAME.match(stem)
    if m is None:
        return None
    return (group, str(p.parent), m.group(1), m.group(3), suffix), int(m.group(2))


@dataclass
class Frames:
    """The labelled frames of all sequences, sorted by sequence then frame number, as arrays."""

    names: list[str]
    seq: np.ndarray  # (n,) int sequence ids
    t: np.ndarray  # (n,) int frame numbers
    y: np.ndarray  # (n, d) labels


def find_sequences(
    names: Sequence[str], groups: Sequence[str], labels: Sequence[Label | None], still: float = 0.0
) -> Frames:
    """The items that form sequences: same group, folder and name pattern, at least ``MIN_LEN`` labelled frames
    of one label length, labels that move smoothly from frame to frame (numbered unrelated images do not) or by
    less than ``still`` (``STILL_PX`` for points)."""
    runs: dict[tuple, list[tuple[int, str, Label]]] = {}
    for name, group, lab in zip(names, groups, labels, strict=True):
        key = frame_key(name, group)
        if key is None or lab is None or not all(np.isfinite(lab)):
            continue
        runs.setdefault((*key[0], len(lab)), []).append((key[1], name, lab))
    out_names: list[str] = []
    seqs: list[np.ndarray] = []
    ts: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    d = None
    for rows in runs.values():
        rows.sort()
        t = np.array([r[0] for r in rows], dtype=np.int64)
        if len(rows) < MIN_LEN or len(np.unique(t)) != len(t):
            continue  # repeated numbers: not one video
        y = np.array([r[2] for r in rows], dtype=np.float64)
        if d is not None and y.shape[1] != d:
            continue
        if not is_smooth(t, y, still):
            continue
        d = y.shape[1]
        out_names += [r[1] for r in rows]
        seqs.append(np.full(len(rows), len(seqs)))
        ts.append(t)
        ys.append(y)
    if not seqs:
        return Frames([], np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 1)))
    return Frames(out_names, np.concatenate(seqs), np.concatenate(ts), np.concatenate(ys))


def is_smooth(t: np.ndarray, y: np.ndarray, still: float = 0.0) -> bool:
    """Whether labels of consecutive frames sit much closer than those of frames far apart (a video), or move
    less than ``still`` from frame to frame (a video of someone sitting still)."""
    near = np.linalg.norm(np.diff(y, axis=0), axis=1)[np.diff(t) <= 2]
    if len(near) < MIN_FRAMES:
        return False
    rng = np.random.default_rng(0)
    i, j = rng.integers(0, len(y), (2, 256))
    far = np.linalg.norm(y[i] - y[j], axis=1)
    step = float(np.median(near))
    return step < SMOOTH * float(np.median(far)) + 1e-12 or step < still


def _fmt(v: float) -> str:
    return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"


def sequence_findings(frames: Frames, n_points: int, point_names: Sequence[str] = ()) -> list[Finding]:
    """One finding per judged frame: the worst point's doubt, where the fit expects the label, why in words
    (points named by ``point_names`` when given, else numbered from 1)."""
    if not frames.names:
        return []
    d = frames.y.shape[1]
    blocks = (
        [slice(2 * p, 2 * p + 2) for p in range(n_points)]
        if n_points and d == 2 * n_points
        else [slice(0, d)]
    )
    if n_points:
        floor = MIN_PX
    else:  # scalars: a thousandth of the labels' spread
        q = np.percentile(frames.y, [10, 90])
        floor = 1e-3 * float(q[1] - q[0])
    fits: list[SeqFit] = [
        fit_sequences(frames.seq, frames.t, frames.y[:, b], min_scale=floor) for b in blocks
    ]
    scores = np.stack([np.nan_to_num(f.score, nan=-1.0) for f in fits], 1)
    worst = scores.argmax(1)
    expected = np.concatenate([f.expected for f in fits], 1)
    out = []
    for i, name in enumerate(frames.names):
        p = int(worst[i])
        f = fits[p]
        if not np.isfinite(f.score[i]):
            continue
        out.append(
            Finding(
                name,
                float(f.score[i]),
                SEQUENCE,
                _why(
                    f,
                    i,
                    _point(p, point_names) if len(fits) > 1 else None,
                    n_points > 0,
                    frames.y[i, blocks[p]],
                ),
                tuple(float(v) for v in expected[i]),
            )
        )
    return out


def _point(p: int, names: Sequence[str]) -> str:
    return f"the {names[p]}" if p < len(names) and names[p] else f"point {p + 1}"


def _why(f: SeqFit, i: int, point: str | None, is_point: bool, label: np.ndarray) -> str:
    """One line for a person: how far from the fit, which frames said so, how fast things move there."""
    span = f"frames {f.first[i]}-{f.last[i]}"
    what = f"{point} is " if point is not None else ""
    if is_point:
        return (
            f"{what}{f.dist[i]:.1f} px from where {span} put it; it moves {f.motion[i]:.1f} px a frame here "
            f"(labels there sit {f.scale[i]:.1f} px from the smooth path)"
        )
    return (
        f"{_fmt(float(label[0]))}, where {span} put {_fmt(float(f.expected[i, 0]))}; it changes "
        f"{_fmt(float(f.motion[i]))} a frame here (labels there sit {_fmt(float(f.scale[i]))} from the smooth path)"
    )


def check_sequences(ds: Dataset, labels: dict[str, Label]) -> tuple[list[Finding], int]:
    """The sequence check of a dataset's effective ``labels``: findings and how many frames were judged."""
    items = ds.items
    n_points = ds.n_points if ds.kind == "point" else 0
    frames = find_sequences(
        [it.name for it in items],
        [it.group for it in items],
        [labels.get(it.name) for it in items],
        STILL_PX if n_points else 0.0,
    )
    return sequence_findings(frames, n_points, ds.point_names), len(frames.names)
