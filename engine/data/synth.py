"""Synthetic datasets in every supported layout, for tests, benchmarks and the built-in demo."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

BIWI_CAL = (517.679, 517.679, 320.0, 240.5)
"""(fx, fy, cx, cy) of the Biwi sequence 01 RGB camera."""

RGB_CAL_TEMPLATE = (
    """{fx} 0 {cx} \n0 {fy} {cy} \n0 0 1 \n\n0 0 0 0 \n\n1 0 0 \n0 1 0 \n0 0 1 \n\n0 0 0 \n\n{w} {h}"""
)


@dataclass
class Synth:
    """What a generator wrote: the root, the true labels by item name, and the names given wrong labels."""

    root: Path
    truth: dict[str, tuple[float, ...]]
    corrupted: set[str]


def _background(rng: np.random.Generator, w: int, h: int, distractors: int) -> np.ndarray:
    """A smooth random background with a few coloured rectangles as distractors."""
    c0, c1 = rng.integers(30, 200, size=3), rng.integers(30, 200, size=3)
    ramp = np.linspace(0, 1, w, dtype=np.float32)[None, :, None]
    img = (c0 * (1 - ramp) + c1 * ramp).astype(np.float32) * np.ones((h, 1, 1), np.float32)
    img += rng.normal(0, 6, size=(h, w, 3)).astype(np.float32)
    img = np.clip(img, 0, 255).astype(np.uint8)
    for _ in range(distractors):
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        dx, dy = int(rng.integers(w // 20 + 1, w // 6 + 2)), int(rng.integers(h // 20 + 1, h // 6 + 2))
        color = tuple(int(c) for c in rng.integers(0, 255, size=3))
        cv2.rectangle(img, (x0, y0), (x0 + dx, y0 + dy), color, -1)
    return img


def draw_face(
    img: np.ndarray, cx: float, cy: float, r: float, rng: np.random.Generator | None = None
) -> None:
    """Draw a simple face (skin ellipse, eyes, mouth) centred on (cx, cy) in place (RGB)."""
    rng = rng or np.random.default_rng(0)
    skin = (int(rng.integers(180, 235)), int(rng.integers(140, 190)), int(rng.integers(110, 160)))
    shift = 4
    s = 1 << shift

    def p(x: float, y: float) -> tuple[int, int]:
        return int(round(x * s)), int(round(y * s))

    ax = (int(round(r * 0.8 * s)), int(round(r * s)))
    cv2.ellipse(img, p(cx, cy), ax, 0, 0, 360, skin, -1, cv2.LINE_AA, shift)
    eye_r = max(1, int(round(r * 0.12 * s)))
    for ex in (-0.35, 0.35):
        cv2.circle(img, p(cx + ex * r, cy - 0.25 * r), eye_r, (30, 30, 40), -1, cv2.LINE_AA, shift)
    mouth = (int(round(r * 0.35 * s)), max(1, int(round(r * 0.12 * s))))
    cv2.ellipse(img, p(cx, cy + 0.45 * r), mouth, 0, 0, 180, (150, 40, 50), -1, cv2.LINE_AA, shift)


def write_image(path: Path, img: np.ndarray) -> None:
    """Write an RGB image with cv2 (PNG or JPEG by suffix), creating folders; works for non-ASCII paths."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ext = ".jpg" if path.suffix.lower() in (".jpg", ".jpeg") else path.suffix
    ok, buf = cv2.imencode(ext, cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError(f"cannot encode {path}")
    buf.tofile(str(path))


def face_image(
    rng: np.random.Generator,
    w: int,
    h: int,
    distractors: int = 3,
    at: tuple[float, float] | None = None,
) -> tuple[np.ndarray, float, float]:
    """A background with a face at a random position (or centred ``at``); returns the image and the face centre
    in pixels."""
    r = min(w, h) * rng.uniform(0.12, 0.2)
    cx = float(rng.uniform(r, w - r)) if at is None else at[0]
    cy = float(rng.uniform(r, h - r)) if at is None else at[1]
    img = _background(rng, w, h, distractors)
    draw_face(img, cx, cy, r, rng)
    return img, cx, cy


def pose_text(centre: tuple[float, float, float]) -> str:
    """A Biwi ``*_pose.txt``: 3x3 rotation (identity), blank line, the head centre in mm."""
    rot = "1 0 0 \n0 1 0 \n0 0 1 \n"
    return f"{rot}\n{centre[0]:.6f} {centre[1]:.6f} {centre[2]:.6f} \n"


def unproject(
    u: float, v: float, z: float, cal: tuple[float, float, float, float]
) -> tuple[float, float, float]:
    """The 3-D point at depth ``z`` that the fastai book's ``get_ctr`` projects to pixel (u, v)."""
    fx, fy, cx, cy = cal
    return (u - cx) * z / fx, (v - cy) * z / fy, z


def make_biwi(
    root: Path,
    groups: int = 3,
    frames: int = 6,
    size: tuple[int, int] = (160, 120),
    ext: str = "png",
    seed: int = 0,
    corrupt: int = 0,
    distractors: int = 3,
    cals: dict[str, tuple[float, float, float, float]] | None = None,
    moving: bool = False,
) -> Synth:
    """Write a Biwi-layout dataset (``NN/frame_NNNNN_rgb.png`` + ``_pose.txt`` + per-folder ``rgb.cal``).

    ``size`` is (w, h). Each folder gets its own calibration (scaled to the image size, slightly different per folder
    unless ``cals`` is given); ``corrupt`` items get a pose file whose centre is moved far from the face.
    ``moving``: the face drifts smoothly from frame to frame (a video, for the sequence check).
    """
    rng = np.random.default_rng(seed)
    root = Path(root)
    w, h = size
    truth: dict[str, tuple[float, ...]] = {}
    names: list[tuple[str, Path, float, float, tuple[float, float, float, float]]] = []
    for g in range(1, groups + 1):
        group = f"{g:02d}"
        gdir = root / group
        gdir.mkdir(parents=True, exist_ok=True)
        scale = w / 640
        default = (
            BIWI_CAL[0] * scale * (1 + 0.02 * g),
            BIWI_CAL[1] * scale * (1 + 0.02 * g),
            w / 2,
            h / 2 + 0.5,
        )
        cal = (cals or {}).get(group, default)
        (gdir / "rgb.cal").write_text(
            RGB_CAL_TEMPLATE.format(fx=cal[0], fy=cal[1], cx=cal[2], cy=cal[3], w=w, h=h)
        )
        for f in range(frames):
            at = (
                (w * (0.5 + 0.2 * np.sin(f / 25 + g)), h * (0.5 + 0.2 * np.cos(f / 30 + g)))
                if moving
                else None
            )
            img, u, v = face_image(rng, w, h, distractors, at)
            stem = f"frame_{f + 3:05d}"
            write_image(gdir / f"{stem}_rgb.{ext}", img)
            name = f"{group}/{stem}_rgb.{ext}"
            truth[name] = (u, v)
            names.append((name, gdir / f"{stem}_pose.txt", u, v, cal))
    bad = set(rng.choice([n[0] for n in names], size=min(corrupt, len(names)), replace=False).tolist())
    for name, pose_path, u, v, cal in names:
        if name in bad:
            u = (u + w / 2) % w
            v = (v + h / 2) % h
        z = float(rng.uniform(800, 1200))
        pose_path.write_text(pose_text(unproject(u, v, z, cal)))
    return Synth(root, truth, bad)


def make_points_csv(root: Path, n: int = 12, size: tuple[int, int] = (96, 64), seed: int = 0) -> Synth:
    """Write ``img/NNN.png`` images and ``labels.csv`` with columns ``image,x,y`` (pixels)."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    truth: dict[str, tuple[float, ...]] = {}
    rows = ["image,x,y"]
    for i in range(n):
        img, u, v = face_image(rng, *size)
        rel = f"img/{i:03d}.png"
        write_image(root / rel, img)
        truth[rel] = (u, v)
        rows.append(f"{rel},{u:.4f},{v:.4f}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return Synth(root, truth, set())


def disk_image(rng: np.random.Generator, value: float, size: int, vmax: float = 100.0) -> np.ndarray:
    """A square image with a disk whose radius grows with ``value`` (an easy scalar-regression target)."""
    img = _background(rng, size, size, 1)
    r = 2 + (size * 0.45 - 2) * value / vmax
    c = size / 2 + rng.uniform(-size * 0.05, size * 0.05, size=2)
    cv2.circle(img, (int(c[0] * 16), int(c[1] * 16)), int(r * 16), (240, 240, 240), -1, cv2.LINE_AA, 4)
    return img


def make_utkface(root: Path, n: int = 20, size: int = 64, seed: int = 0, chip: bool = True) -> Synth:
    """Write UTKFace-named images (``age_gender_race_datetime.jpg[.chip.jpg]``); the age sets a disk's radius."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    truth: dict[str, tuple[float, ...]] = {}
    for i in range(n):
        age = int(rng.integers(1, 100))
        stamp = 20170109000000000 + i * 1000 + int(rng.integers(0, 999))
        name = f"{age}_{int(rng.integers(0, 2))}_{int(rng.integers(0, 5))}_{stamp}.jpg"
        name += ".chip.jpg" if chip else ""
        write_image(root / name, disk_image(rng, age, size))
        truth[name] = (float(age),)
    return Synth(root, truth, set())


def make_scalar_csv(root: Path, n: int = 12, size: int = 48, seed: int = 0) -> Synth:
    """Write ``img/NNN.png`` images and ``values.csv`` with columns ``image,value``."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    truth: dict[str, tuple[float, ...]] = {}
    rows = ["image,value"]
    for i in range(n):
        value = float(rng.uniform(0, 100))
        rel = f"img/{i:03d}.png"
        write_image(root / rel, disk_image(rng, value, size))
        truth[rel] = (value,)
        rows.append(f"{rel},{value:.4f}")
    (root / "values.csv").write_text("\n".join(rows) + "\n")
    return Synth(root, truth, set())


def make_folder(root: Path, n: int = 5, size: tuple[int, int] = (80, 60), seed: int = 0) -> Synth:
    """Write a plain folder of unlabelled face images."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    truth: dict[str, tuple[float, ...]] = {}
    for i in range(n):
        img, u, v = face_image(rng, *size)
        name = f"img_{i:03d}.png"
        write_image(root / name, img)
        truth[name] = (u, v)
    return Synth(root, truth, set())
