"""Index a Biwi-scale tree (24 folders, 15,677 frames) and compare label parsing with the book's genfromtxt.

The tree is built in a temp folder: one tiny real PNG hard-linked for every frame, pose files from the official
annotations (``../shared/data/biwi-annotations.tgz``) when present, else random realistic poses. Prints one
JSON object as its last line. Files are freshly written, so timings are warm-cache.
"""

from __future__ import annotations

import json
import math
import os
import random
import struct
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.data import (
    open_dataset,  # noqa: E402
    synth,  # noqa: E402
)
from engine.data.biwi import label_of, parse_cal, read_small  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
N_FRAMES, N_GROUPS, GENFROMTXT_SAMPLE = 15_677, 24, 600


def rotation(pitch: float, yaw: float, roll: float) -> np.ndarray:
    """R = Rz(roll) @ Ry(yaw) @ Rx(pitch), angles in degrees (how the sample's pose.txt were regenerated)."""
    p, y, r = np.radians([pitch, yaw, roll])
    rx = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    ry = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    rz = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
    return rz @ ry @ rx


def pose_txt(v: tuple[float, ...]) -> str:
    """A Biwi pose.txt from (x, y, z, pitch, yaw, roll)."""
    rot = rotation(*v[3:])
    lines = "".join(" ".join(f"{a:g}" for a in row) + " \n" for row in rot)
    return f"{lines}\n{v[0]:g} {v[1]:g} {v[2]:g} \n"


def poses() -> tuple[list[tuple[str, tuple[float, ...]]], str]:
    """``[(group/frame stem, pose values)]`` and where they came from."""
    tgz = DATA / "biwi-annotations.tgz"
    if tgz.is_file():
        out = []
        with tarfile.open(tgz) as tar:
            for m in tar:
                if m.isfile() and m.name.endswith("_pose.bin"):
                    vals = struct.unpack("<6f", tar.extractfile(m).read(24))
                    out.append((m.name[: -len("_pose.bin")], vals))
        return out, "biwi-annotations.tgz"
    rnd = random.Random(0)
    per = -(-N_FRAMES // N_GROUPS)
    out = [
        (
            f"{i // per + 1:02d}/frame_{i % per + 3:05d}",
            (
                rnd.gauss(0, 80),
                rnd.gauss(30, 50),
                rnd.uniform(700, 1300),
                *(rnd.gauss(0, 20) for _ in range(3)),
            ),
        )
        for i in range(N_FRAMES)
    ]
    return out, "random"


def build(root: Path) -> tuple[list[Path], str]:
    """Write the tree; returns the pose paths and the pose source."""
    items, source = poses()
    img_path = root / "one.png"
    rng = np.random.default_rng(0)
    synth.write_image(img_path, synth.face_image(rng, 64, 48)[0])
    real_cal = DATA / "biwi-sample" / "01" / "rgb.cal"
    cal = (
        real_cal.read_text()
        if real_cal.is_file()
        else synth.RGB_CAL_TEMPLATE.format(fx=517.679, fy=517.679, cx=320, cy=240.5, w=640, h=480)
    )
    paths = []
    for stem, vals in items:
        d = root / "biwi" / stem.split("/")[0]
        if not d.is_dir():
            d.mkdir(parents=True)
            (d / "rgb.cal").write_text(cal)
        os.link(img_path, root / "biwi" / f"{stem}_rgb.png")
        p = root / "biwi" / f"{stem}_pose.txt"
        p.write_text(pose_txt(vals))
        paths.append(p)
    return paths, source


def book_get_ctr(pose: Path, cal: np.ndarray) -> tuple[float, float]:
    """The fastai book's get_ctr (cal already loaded, as in the book)."""
    ctr = np.genfromtxt(pose, skip_header=3)
    return ctr[0] * cal[0][0] / ctr[2] + cal[0][2], ctr[1] * cal[1][1] / ctr[2] + cal[1][2]


def main() -> None:
    """Build, time and print the JSON result."""
    with tempfile.TemporaryDirectory(prefix="imgreg-bench-") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        pose_paths, source = build(root)
        build_s = time.perf_counter() - t0

        first: list[float] = []
        t0 = time.perf_counter()
        ds = open_dataset(root / "biwi", on_batch=lambda b: first or first.append(time.perf_counter() - t0))
        all_s = time.perf_counter() - t0
        n = len(ds.items)
        labelled = sum(it.label is not None for it in ds.items)

        # Label parsing alone, ours vs the book's, over the same files (one calibration per folder for both).
        cals = {p.parent: parse_cal((p.parent / "rgb.cal").read_bytes()) for p in pose_paths}
        t0 = time.perf_counter()
        ours = []
        for p in pose_paths:
            ours.append(label_of(read_small(p), cals[p.parent]))
        ours_s = time.perf_counter() - t0

        sample = random.Random(0).sample(range(len(pose_paths)), min(GENFROMTXT_SAMPLE, len(pose_paths)))
        np_cals = {d: np.genfromtxt(d / "rgb.cal", skip_footer=6) for d in cals}
        t0 = time.perf_counter()
        book = [book_get_ctr(pose_paths[i], np_cals[pose_paths[i].parent]) for i in sample]
        book_per_file = (time.perf_counter() - t0) / len(sample)
        max_diff = max(
            abs(a - b) for i, bk in zip(sample, book, strict=True) for a, b in zip(ours[i], bk, strict=True)
        )

    ours_per_file = ours_s / len(pose_paths)
    result = {
        "frames": n,
        "labelled": labelled,
        "problems": len(ds.problems),
        "groups": len(ds.groups),
        "pose_source": source,
        "build_s": round(build_s, 3),
        "first_items_s": round(first[0], 4) if first else None,
        "all_labels_s": round(all_s, 3),
        "per_item_us": round(all_s / max(n, 1) * 1e6, 1),
        "label_parse_per_file_us": round(ours_per_file * 1e6, 2),
        "genfromtxt_per_file_us": round(book_per_file * 1e6, 1),
        "genfromtxt_files_timed": len(sample),
        "genfromtxt_extrapolated_s": round(book_per_file * len(pose_paths), 3),
        "speedup_vs_genfromtxt": round(book_per_file / ours_per_file, 1),
        "index_speedup_vs_genfromtxt_labels": round(book_per_file * len(pose_paths) / all_s, 1),
        "max_abs_diff_px": max_diff,
        "note": "open_dataset also checks every image's magic bytes and tail; genfromtxt timed on a random "
        "sample and extrapolated per file; warm page cache",
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
