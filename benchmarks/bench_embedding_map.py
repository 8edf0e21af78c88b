"""The embedding map at 15k points: one redraw (recolouring every point), a recolour after a few label edits, one
hover (finding the point under the cursor and showing its thumbnail), one full repaint of the plot, and a
selection; medians of repeats, offscreen. ``redraw_setdata_ms`` is the old recolour, side by side: ``setData`` of
every point with a list of (shared) brushes.

Prints one JSON object as the last line. Run with ``nice -n 10`` and ``QT_QPA_PLATFORM=offscreen``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from PySide6.QtCore import QPointF  # noqa: E402
from PySide6.QtGui import QPolygonF  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from engine.runs.projection import project  # noqa: E402
from imgreg_gui.embedding_map import EmbeddingMap, value_brushes  # noqa: E402


def timed(fn, reps: int) -> float:
    """Median milliseconds of ``fn()``."""
    out = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        QApplication.processEvents()
        out.append(1000 * (time.perf_counter() - t))
    return statistics.median(out)


def main() -> None:
    """Measure at ``--n`` points."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=15000)
    ap.add_argument("--reps", type=int, default=7)
    args = ap.parse_args()
    app = QApplication.instance() or QApplication([])  # noqa: F841  (kept alive for the widgets)
    rng = np.random.default_rng(0)
    n = args.n
    vecs = (rng.normal(size=(60, 512))[rng.integers(0, 60, n)] + 0.3 * rng.normal(size=(n, 512))).astype(
        np.float16
    )
    t = time.perf_counter()
    xy = project(vecs, method="pca")
    project_ms = 1000 * (time.perf_counter() - t)
    names = [f"g{i % 40:02d}/img{i:05d}.jpg" for i in range(n)]
    m = EmbeddingMap()
    m.resize(900, 700)
    m.show()
    labels = {nm: (float(rng.uniform(1, 90)),) for nm in names}
    errors = {nm: float(rng.exponential(3)) for nm in names}
    scores = {nm: float(rng.exponential(1)) for nm in names}
    groups = {nm: nm.split("/")[0] for nm in names}
    m.set_items(names, {}, labels, errors, groups, scores)
    t = time.perf_counter()
    m.set_points(xy)
    QApplication.processEvents()
    first_ms = 1000 * (time.perf_counter() - t)
    modes = iter(["error", "score", "group", "label"] * args.reps)
    redraw_ms = timed(lambda: m.set_colouring(next(modes)), args.reps)
    edited = iter(rng.integers(0, n, (args.reps, 10)))

    def edit() -> None:
        for i in next(edited):
            labels[names[i]] = (float(rng.uniform(1, 90)),)
        m.set_values(labels, errors, groups, scores)

    edit_ms = timed(edit, args.reps)
    repaint_ms = timed(lambda: m.plot.grab(), args.reps)
    idx = iter(rng.integers(0, n, 10 * args.reps))

    def hover() -> None:
        i = int(next(idx))
        pts = m.scatter.pointsAt(QPointF(*map(float, xy[i])))
        m._hovered(m.scatter, pts)

    hover_ms = timed(hover, 5 * args.reps)
    x0, y0 = xy.min(0)
    xm, ym = np.median(xy, 0)
    box = QPolygonF([QPointF(x0, y0), QPointF(xm, y0), QPointF(xm, ym), QPointF(x0, ym)])
    select_ms = timed(lambda: m.select_polygon(box), args.reps)
    modes = iter(["error", "score", "group", "label"] * args.reps)

    def old_redraw() -> None:
        mode = next(modes)
        brushes = list(value_brushes([m.values[mode].get(nm) for nm in names], mode))
        m.scatter.setData(pos=m.xy, data=np.arange(n), brush=brushes, size=6, pen=None)

    old_ms = timed(old_redraw, args.reps)
    out = {"bench": "embedding_map", "n": n, "project_pca_ms": round(project_ms, 1), "first_draw_ms": round(first_ms, 1),
           "redraw_ms": round(redraw_ms, 1), "redraw_setdata_ms": round(old_ms, 1),
           "recolour_after_10_edits_ms": round(edit_ms, 1), "repaint_ms": round(repaint_ms, 1), "hover_ms": round(hover_ms, 2),
           "select_ms": round(select_ms, 1), "selected": len(m.selected)}  # fmt: skip
    m.close()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
