"""The similar panel and the embedding map on their own: they open, show thumbnails, click through and filter."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QEvent, QPoint, QPointF, Qt  # noqa: E402
from PySide6.QtGui import QMouseEvent  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from engine.data.synth import make_utkface  # noqa: E402
from imgreg_gui.embedding_map import EmbeddingMap, value_brushes  # noqa: E402
from imgreg_gui.similar_panel import Neighbour, SimilarPanel, neighbours_from_json  # noqa: E402

SHOTS = os.environ.get("IMGREG_SHOTS")


def _mouse(widget, kind: QEvent.Type, pos: QPoint, buttons: Qt.MouseButton) -> None:
    btn = Qt.MouseButton.LeftButton if kind != QEvent.Type.MouseMove else Qt.MouseButton.NoButton
    ev = QMouseEvent(
        kind, QPointF(pos), QPointF(widget.mapToGlobal(pos)), btn, buttons, Qt.KeyboardModifier.NoModifier
    )
    QApplication.sendEvent(widget, ev)


def test_similar_panel_shows_thumbnails_and_clicks_through(qtbot, tmp_path: Path) -> None:
    syn = make_utkface(tmp_path / "utk", n=6, size=64)
    names = sorted(syn.truth)
    paths = {n: str(syn.root / n) for n in names}
    obj = {"item": names[0], "neighbours": [{"item": n, "distance": 0.1 * i, "label": list(syn.truth[n])}
                                           for i, n in enumerate(names[1:], 1)]}  # fmt: skip
    rows = neighbours_from_json(obj, paths, {names[2]: 4.5})
    rows.append(Neighbour("broken.jpg", str(tmp_path / "missing.jpg"), 0.9, None, None))
    panel = SimilarPanel()
    qtbot.addWidget(panel)
    panel.resize(700, 220)
    panel.show()
    panel.set_results(names[0], rows)
    assert panel.names() == [*names[1:], "broken.jpg"]
    assert "error 4.5" in panel.list.item(1).text() and "d 0.200" in panel.list.item(1).text()
    qtbot.waitUntil(panel.thumbnails_loaded, timeout=5000)
    assert "no label" in panel.list.item(5).text()
    item = panel.list.item(2)
    with qtbot.waitSignal(panel.item_clicked) as sig:
        qtbot.mouseClick(
            panel.list.viewport(), Qt.MouseButton.LeftButton, pos=panel.list.visualItemRect(item).center()
        )
    assert sig.args == [names[3]]
    if SHOTS:
        panel.grab().save(str(Path(SHOTS) / "similar_panel.png"))


def _map(qtbot, n: int = 400) -> tuple[EmbeddingMap, list[str], np.ndarray, Path]:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 16)) * 3
    grp = rng.integers(0, 4, n)
    vecs = np.abs(centres[grp] + rng.normal(size=(n, 16))).astype(np.float16)
    names = [f"g{g}/img{i:04d}.jpg" for i, g in enumerate(grp)]
    m = EmbeddingMap()
    qtbot.addWidget(m)
    m.resize(640, 480)
    m.show()
    labels = {nm: (float(i % 90),) for i, nm in enumerate(names)}
    m.set_items(
        names, {}, labels, {nm: float(i % 7) for i, nm in enumerate(names)}, {nm: nm[:2] for nm in names}
    )
    m.compute(vecs)
    qtbot.waitUntil(lambda: len(m.scatter.data) == n, timeout=10000)
    return m, names, vecs, Path()


def test_map_projects_in_background_colours_and_clicks(qtbot, tmp_path: Path) -> None:
    syn = make_utkface(tmp_path / "utk", n=3, size=64)
    m, names, _, _ = _map(qtbot)
    m.paths = {names[0]: str(syn.root / sorted(syn.truth)[0])}
    for mode in ("error", "group", "label"):
        m.set_colouring(mode)
        assert len(m.scatter.data) == len(names)
    # group colouring gives one colour per group
    m.set_colouring("group")
    cols = {names[i][:2]: m.scatter.data["brush"][i].color().name() for i in range(len(names))}
    assert len(set(cols.values())) == 4
    # Recolouring restyles the points in place: their positions and hover records stay (no setData).
    spot = m.scatter.points()[5]
    m.set_colouring("label")
    assert m.scatter.points()[5] is spot
    want = value_brushes([m.values["label"].get(n) for n in names], "label")
    assert [b.color().name() for b in m.scatter.data["brush"]] == [b.color().name() for b in want]
    QApplication.processEvents()
    # a point far from the others so the click hits it alone
    m.xy[0] = m.xy.max(0) + 5
    m.set_points(m.xy)
    QApplication.processEvents()
    pos = m.point_pos(names[0])
    with qtbot.waitSignal(m.item_clicked) as sig:
        qtbot.mouseClick(m.plot.viewport(), Qt.MouseButton.LeftButton, pos=pos)
    assert sig.args == [names[0]]
    _mouse(m.plot.viewport(), QEvent.Type.MouseMove, pos, Qt.MouseButton.NoButton)
    qtbot.waitUntil(lambda: m.hover_name() == names[0], timeout=5000)
    qtbot.waitUntil(lambda: m.thumb.pixmap() is not None and not m.thumb.pixmap().isNull(), timeout=5000)
    if SHOTS:
        m.grab().save(str(Path(SHOTS) / "embedding_map_hover.png"))


def test_map_box_drag_selects_the_points_inside(qtbot) -> None:
    m, names, _, _ = _map(qtbot)
    vp = m.plot.viewport()
    r = vp.rect()
    a, b = QPoint(r.width() // 4, r.height() // 4), QPoint(r.width() // 2, r.height() * 3 // 4)
    with qtbot.waitSignal(m.selection_changed) as sig:
        _mouse(vp, QEvent.Type.MouseButtonPress, a, Qt.MouseButton.LeftButton)
        for t in np.linspace(0, 1, 8):
            p = QPoint(int(a.x() + t * (b.x() - a.x())), int(a.y() + t * (b.y() - a.y())))
            _mouse(vp, QEvent.Type.MouseMove, p, Qt.MouseButton.LeftButton)
            qtbot.wait(15)  # pyqtgraph drops moves faster than its mouse rate limit
        _mouse(vp, QEvent.Type.MouseButtonRelease, b, Qt.MouseButton.NoButton)
    got = sig.args[0]
    p0, p1 = m.vb.mapSceneToView(m.plot.mapToScene(a)), m.vb.mapSceneToView(m.plot.mapToScene(b))
    x0, x1 = sorted((p0.x(), p1.x()))
    y0, y1 = sorted((p0.y(), p1.y()))
    inside = {n for n, (x, y) in zip(names, m.xy, strict=True) if x0 <= x <= x1 and y0 <= y <= y1}
    # pixel rounding of the drag ends can move a point on the very edge
    assert inside and len(got ^ inside) <= 2
    assert m.selected == got
    if SHOTS:
        m.grab().save(str(Path(SHOTS) / "embedding_map_selection.png"))
    # lasso mode: the same rectangle drawn as a free path
    m.vb.mode = "lasso"
    with qtbot.waitSignal(m.selection_changed) as sig:
        pts = [a, QPoint(b.x(), a.y()), b, QPoint(a.x(), b.y()), a]
        _mouse(vp, QEvent.Type.MouseButtonPress, pts[0], Qt.MouseButton.LeftButton)
        for p0_, p1_ in zip(pts, pts[1:], strict=False):
            for t in np.linspace(0, 1, 6)[1:]:
                p = QPoint(int(p0_.x() + t * (p1_.x() - p0_.x())), int(p0_.y() + t * (p1_.y() - p0_.y())))
                _mouse(vp, QEvent.Type.MouseMove, p, Qt.MouseButton.LeftButton)
                qtbot.wait(15)  # pyqtgraph drops moves faster than its mouse rate limit (100 per second)
        _mouse(vp, QEvent.Type.MouseButtonRelease, a, Qt.MouseButton.NoButton)
    assert len(sig.args[0] ^ inside) <= 2
    with qtbot.waitSignal(m.selection_changed) as sig:
        m.clear_selection()
    assert sig.args == [set()]


def test_similar_thumbnails_show_the_point_label(qtbot, tmp_path: Path) -> None:
    from engine.data.synth import make_biwi

    syn = make_biwi(tmp_path / "biwi", groups=1, frames=2, size=(128, 96))
    names = sorted(syn.truth)
    rows = [Neighbour(n, str(syn.root / n), 0.1, (32.0, 48.0)) for n in names]
    panel = SimilarPanel()
    qtbot.addWidget(panel)
    panel.show()
    panel.set_results("query.png", rows)
    qtbot.waitUntil(panel.thumbnails_loaded, timeout=5000)

    def green_at(i: int, x: float, y: float) -> bool:
        img = panel.list.item(i).icon().pixmap(panel.list.iconSize()).toImage()
        s = img.width() / 128
        c = img.pixelColor(round(x * s), round(y * s))
        return c.green() > 150 and c.red() < 100

    assert green_at(0, 32, 48)  # a cross where the label is
    panel.update_item(names[0], (96.0, 24.0), None)  # moved: the thumbnail follows
    assert green_at(0, 96, 24) and not green_at(0, 32, 48)
