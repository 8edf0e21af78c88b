"""GUI responsiveness on a Biwi-scale dataset: time to the first image, and stepping to the next image.

Builds a 24-folder, 15,677-frame Biwi tree in a temp folder whose frames are hard links to a few generated
640x480 PNGs (so every frame costs a real decode), opens it in the real MainWindow (offscreen), and measures:

- ``open_to_first_image_ms``: from ``open_dataset()`` until the first image is on screen (painted);
- ``open_to_ready_ms``: until indexing finished and the label store is open;
- ``next_image_ms_p50`` / ``_p95``: from ``next_item()`` until the new image is on screen and painted, stepping
  through 200 frames back to back (the hardest case for prefetching), and ``..._paced_`` at 30 steps a second
  (holding a key down);
- ``decode_ms_p50``: a plain ``cv2.imread`` of the same files in the same run, and the ratio p95 / decode p50.

The last printed line is the JSON summary.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from engine.data import synth  # noqa: E402

N_FRAMES, N_GROUPS, N_IMAGES, W, H = 15_677, 24, 6, 640, 480


def build_tree(root: Path, frames: int = N_FRAMES, groups: int = N_GROUPS) -> list[Path]:
    """Write the Biwi tree; returns every frame path in dataset order."""
    rng = np.random.default_rng(0)
    src = root / "_src"
    src.mkdir(parents=True)
    cal = synth.BIWI_CAL
    originals = []
    for k in range(N_IMAGES):
        img, u, v = synth.face_image(rng, W, H, distractors=6)
        png = src / f"img{k}.png"
        synth.write_image(png, img)
        pose = src / f"pose{k}.txt"
        pose.write_text(synth.pose_text(synth.unproject(u, v, 1000.0, cal)))
        originals.append((png, pose))
    cal_text = synth.RGB_CAL_TEMPLATE.format(fx=cal[0], fy=cal[1], cx=cal[2], cy=cal[3], w=W, h=H)
    paths = []
    per = [frames // groups + (1 if g < frames % groups else 0) for g in range(groups)]
    i = 0
    for g, n in enumerate(per):
        gdir = root / f"{g + 1:02d}"
        gdir.mkdir()
        (gdir / "rgb.cal").write_text(cal_text)
        for f in range(n):
            png, pose = originals[i % N_IMAGES]
            stem = f"frame_{f + 3:05d}"
            os.link(png, gdir / f"{stem}_rgb.png")
            os.link(pose, gdir / f"{stem}_pose.txt")
            paths.append(gdir / f"{stem}_rgb.png")
            i += 1
    shutil.rmtree(src)
    return paths


def pct(xs: list[float], q: float) -> float:
    """The q-th percentile (nearest rank)."""
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))]


def wait_shown(app, win, timeout: float = 30.0) -> None:
    """Process events until the current item's image is on the canvas, then paint it."""
    from imgreg_gui.app import is_loaded

    deadline = time.perf_counter() + timeout
    while not (win.canvas.name == win.current_item_name() and not win.canvas.pending and is_shown(win)):
        app.processEvents()
        if time.perf_counter() > deadline:
            raise TimeoutError(f"image of {win.current_item_name()} not shown")
        if not is_loaded(win):
            time.sleep(0.0002)
    win.canvas.viewport().repaint()


def is_shown(win) -> bool:
    """Whether the canvas holds an image (not a placeholder)."""
    return win.canvas.image_size is not None


def step(app, win, n: int, pace_s: float = 0.0) -> list[float]:
    """Step ``n`` times; each sample is ms from next_item() until the new image is painted."""
    times = []
    for _ in range(n):
        if pace_s:
            end = time.perf_counter() + pace_s
            while time.perf_counter() < end:
                app.processEvents()
                time.sleep(0.001)
        t0 = time.perf_counter()
        win.next_item()
        wait_shown(app, win)
        times.append((time.perf_counter() - t0) * 1000)
    return times


def main() -> None:
    """Build the tree, run the measurements, print the JSON summary last."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--frames", type=int, default=N_FRAMES)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="imgreg-bench-gui-"))
    os.environ["IMGREG_SETTINGS_DIR"] = str(tmp / "settings")
    os.environ["IMGREG_DATA_DIR"] = str(tmp / "data")
    try:
        t = time.perf_counter()
        paths = build_tree(tmp / "biwi", frames=args.frames)
        print(f"built {len(paths):,} frames in {time.perf_counter() - t:.1f} s", file=sys.stderr)

        from imgreg_gui.app import make_app
        from imgreg_gui.main_window import MainWindow

        app = make_app()
        win = MainWindow()
        win.persist = False
        win.resize(1440, 900)
        win.show()
        app.processEvents()

        t0 = time.perf_counter()
        win.open_dataset(tmp / "biwi")
        wait_shown(app, win)
        first_ms = (time.perf_counter() - t0) * 1000
        while win.dataset is None:
            app.processEvents()
            time.sleep(0.001)
        ready_ms = (time.perf_counter() - t0) * 1000
        assert len(win.dataset.items) == args.frames, len(win.dataset.items)

        n = min(args.steps, len(paths) // 3)
        back_to_back = step(app, win, n)
        paced = step(app, win, n, pace_s=1 / 30)
        done = {str(win.panel.model.item(name).path) for name in win.panel.model.names_in_view()[: 2 * n + 1]}
        win.close()

        files = [p for p in paths if str(p) not in done][:n] or paths[:n]
        decode = []
        for p in files:
            t = time.perf_counter()
            img = cv2.imread(str(p), cv2.IMREAD_COLOR)
            decode.append((time.perf_counter() - t) * 1000)
            assert img is not None and img.shape == (H, W, 3)
        dec50 = statistics.median(decode)
        result = {
            "frames": len(paths),
            "groups": N_GROUPS,
            "image_size": [W, H],
            "open_to_first_image_ms": round(first_ms, 1),
            "open_to_ready_ms": round(ready_ms, 1),
            "steps": n,
            "next_image_ms_p50": round(statistics.median(back_to_back), 2),
            "next_image_ms_p95": round(pct(back_to_back, 95), 2),
            "next_image_ms_max": round(max(back_to_back), 2),
            "next_image_paced_30hz_ms_p50": round(statistics.median(paced), 2),
            "next_image_paced_30hz_ms_p95": round(pct(paced, 95), 2),
            "decode_ms_p50": round(dec50, 2),
            "p95_over_decode_p50": round(pct(back_to_back, 95) / dec50, 2),
            "paced_p95_over_decode_p50": round(pct(paced, 95) / dec50, 2),
            "cpu_count": os.cpu_count(),
            "load_avg_1min": round(os.getloadavg()[0], 2),  # other processes share the CPU: context for noise
        }
        print(json.dumps(result))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
