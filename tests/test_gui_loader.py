"""Image loader (off-thread decode, LRU cache, failures), item model filters, navigation and undo commands."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QUndoStack

from engine.core import Item
from engine.data.synth import make_biwi, write_image
from engine.labels.store import LabelStore, PredictionRow
from imgreg_gui.jobs.image_loader import ImageLoader, array_to_qimage
from imgreg_gui.model import commands
from imgreg_gui.model.items import ItemModel, Navigator, label_distance


def test_array_to_qimage_keeps_colours():
    a = np.zeros((2, 3, 3), np.uint8)
    a[0, 0], a[1, 2] = (10, 20, 30), (200, 100, 50)
    q = array_to_qimage(a)
    assert (q.width(), q.height()) == (3, 2)
    assert QColor(q.pixel(0, 0)).getRgb()[:3] == (10, 20, 30)
    assert QColor(q.pixel(2, 1)).getRgb()[:3] == (200, 100, 50)


def test_loader_decodes_off_thread_caches_and_remembers_failures(qtbot, tmp_path: Path):
    paths = []
    for i in range(4):
        p = tmp_path / f"{i}.png"
        write_image(p, np.full((12, 16, 3), i * 40, np.uint8))
        paths.append(p)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    loader = ImageLoader(capacity=2)
    with qtbot.waitSignal(loader.ready, timeout=5000) as sig:
        assert loader.request(paths[0]) is None
    assert sig.args[0] == str(paths[0]) and sig.args[1].width() == 16
    assert loader.request(paths[0]) is not None  # cached now
    with qtbot.waitSignal(loader.failed, timeout=5000) as sig:
        loader.request(bad)
    assert "PNG" in sig.args[1] or "decode" in sig.args[1]
    assert loader.request(bad) is None and loader.error(bad) and not loader.is_pending(bad)
    loader.prefetch(paths[1:])
    qtbot.waitUntil(lambda: not any(loader.is_pending(p) for p in paths), timeout=5000)
    assert len(loader._cache) == 2  # LRU capacity
    small = ImageLoader(max_bytes=16 * 12 * 4 + 1)  # room for one decoded image
    small.prefetch(paths)
    qtbot.waitUntil(lambda: not any(small.is_pending(p) for p in paths), timeout=5000)
    assert len(small._cache) == 1 and small._bytes == 16 * 12 * 4
    loader.wait()
    small.wait()


def test_model_filters_sorts_and_navigates(tmp_path: Path):
    items = [
        Item(f"{g}/{i}.png", g, tmp_path / f"{g}{i}.png", (float(i), 1.0)) for g in "ab" for i in range(3)
    ]
    items[1].problem = "zero-byte file"
    m = ItemModel()
    m.set_items(items)
    nav = Navigator(m)
    assert nav.first() == "a/0.png" and nav.last() == "b/2.png"
    assert nav.next("a/2.png") == "b/0.png" and nav.next_group("a/1.png") == "b/0.png"
    assert nav.prev_group("b/1.png") == "b/0.png" and nav.prev_group("b/0.png") == "a/0.png"
    assert nav.neighbours("a/1.png", 2, 1) == (["a/2.png", "b/0.png"], ["a/0.png"])
    m.set_filter(choice="problems")
    assert m.names_in_view() == ["a/1.png"]
    assert "zero-byte" in m.data(m.index(0, 0), Qt.ItemDataRole.ToolTipRole)
    m.set_filter(text="B/", choice="all")
    assert m.names_in_view() == ["b/0.png", "b/1.png", "b/2.png"]
    m.set_filter(text="")
    m.set_predictions({it.name: PredictionRow(it.name, (0.0, 1.0)) for it in items})
    m.sort(2, Qt.SortOrder.DescendingOrder)
    assert [m.errors[n] for n in m.names_in_view()] == [2.0, 2.0, 1.0, 1.0, 0.0, 0.0]
    assert label_distance((3.0,), (1.0,)) == 2.0 and label_distance(None, (1.0, 2.0)) is None


def test_commands_restore_exact_states(tmp_path: Path):
    from engine.data import open_dataset

    ds = open_dataset(make_biwi(tmp_path / "ds", groups=1, frames=2, size=(32, 24)).root)
    store = LabelStore.open(ds)
    name = ds.items[0].name
    original = store.effective(name)
    stack = QUndoStack()
    stack.push(commands.verify_command(store, name, True))
    stack.push(commands.NudgeCommand(store, name, (1.0, 2.0), session=1))
    stack.push(commands.NudgeCommand(store, name, (3.0, 4.0), session=1))
    stack.push(commands.NudgeCommand(store, name, (5.0, 6.0), session=2))
    assert stack.count() == 3 and store.effective(name) == (5.0, 6.0)
    stack.undo()
    assert store.effective(name) == (3.0, 4.0)
    stack.undo()
    rec = store.record(name)
    assert rec.effective == original and rec.source == "original" and rec.verified
    stack.undo()
    assert not store.record(name).verified
    stack.redo()
    stack.redo()
    assert store.effective(name) == (3.0, 4.0) and not store.record(name).verified  # moved: no longer vouched
    assert [c.kind for c in store.history(name)][:2] == ["verify", "correct"]
    store.close()
