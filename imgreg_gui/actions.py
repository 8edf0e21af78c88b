"""The main window's actions, menus, toolbar and status bar (each action with a shortcut and a tooltip)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QAction, QColor, QKeySequence, QPainter
from PySide6.QtWidgets import (
    QDoubleSpinBox,
    QHBoxLayout,
    QLabel,
    QMenu,
    QSizePolicy,
    QStatusBar,
    QToolBar,
    QWidget,
)

from imgreg_gui.settings import icon

if TYPE_CHECKING:
    from imgreg_gui.main_window import MainWindow

Keys = str | QKeySequence.StandardKey | list
SAVED_MS = 4000


class Actions:
    """A namespace of QActions by short name (``window.acts.next``, ...), in creation order."""

    def __init__(self) -> None:
        self.all: dict[str, QAction] = {}

    def __getattr__(self, name: str) -> QAction:
        try:
            return self.__dict__["all"][name]
        except KeyError:
            raise AttributeError(name) from None


def shortcut_text(action: QAction) -> str:
    """The action's shortcuts as the user reads them (``Ctrl+Z, Ctrl+Y``)."""
    return ", ".join(s.toString(QKeySequence.SequenceFormat.NativeText) for s in action.shortcuts())


def _add(
    acts: Actions,
    win: MainWindow,
    key: str,
    text: str,
    slot: Callable | None,
    keys: Keys | None = None,
    tip: str = "",
    icon_name: str | None = None,
    checkable: bool = False,
    checked: bool = False,
) -> QAction:
    act = QAction(text, win)
    act.setObjectName(f"action_{key}")
    if keys is not None:
        seqs = keys if isinstance(keys, list) else [keys]
        act.setShortcuts([s if isinstance(s, QKeySequence) else QKeySequence(s) for s in seqs])
    act.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
    if icon_name:
        act.setIcon(icon(icon_name))
    if checkable:
        act.setCheckable(True)
        act.setChecked(checked)
    plain = text.replace("&", "").rstrip("…")
    tip = tip or plain
    sc = shortcut_text(act)
    act.setToolTip(f"{tip} ({sc})" if sc else tip)
    act.setStatusTip(tip)
    if slot is not None:
        (act.toggled if checkable else act.triggered).connect(slot)
    if key.startswith("nudge_") or key == "next_point":
        # Arrows and Tab belong to the image: in a spin box or list elsewhere they keep their usual meaning.
        act.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        win.canvas.addAction(act)
    else:
        win.addAction(act)  # shortcuts work even when the toolbar or menu is hidden
    acts.all[key] = act
    return act


def build_actions(win: MainWindow) -> Actions:
    """Create every action of the main window, wired to its slots."""
    a = Actions()
    add = _add
    add(
        a,
        win,
        "open",
        "&Open dataset…",
        win.choose_dataset,
        QKeySequence.StandardKey.Open,
        "Open a dataset folder (Biwi, points CSV, UTKFace, scalar CSV or a plain image folder)",
        "open",
    )
    add(
        a,
        win,
        "export",
        "&Export labels…",
        win.choose_export,
        "Ctrl+E",
        "Save the effective labels (corrections included) as CSV or JSON",
        "export",
    )
    add(a, win, "quit", "&Quit", win.close, QKeySequence.StandardKey.Quit, "Quit imgreg", "quit")

    add(a, win, "undo", "&Undo", win.undo, [QKeySequence("Ctrl+Z")], "Undo the last label edit", "undo")
    add(
        a,
        win,
        "redo",
        "&Redo",
        win.redo,
        [QKeySequence("Ctrl+Shift+Z"), QKeySequence("Ctrl+Y")],
        "Redo the edit just undone",
        "redo",
    )
    add(
        a,
        win,
        "accept",
        "&Accept prediction",
        win.accept_prediction,
        ["Ctrl+Return", "Ctrl+Enter"],
        "Use the active run's prediction as this item's label",
        "accept",
    )
    add(
        a,
        win,
        "revert",
        "Re&vert to original",
        win.revert_label,
        "Ctrl+Backspace",
        "Drop the correction: the label from the dataset's files applies again",
        "revert",
    )
    add(
        a,
        win,
        "verify",
        "&Mark verified",
        win.mark_verified,
        "V",
        "Mark this item's label as checked by a person (press again to clear)",
        "verify",
    )
    add(
        a,
        win,
        "place",
        "&Place label",
        win.toggle_place_mode,
        "C",
        "The next click on the image puts the label there (Ctrl+click does it any time)",
        "place",
        checkable=True,
    )
    for key, text, keys, dx, dy in (
        ("nudge_left", "Nudge left 1 px", "Left", -1, 0),
        ("nudge_right", "Nudge right 1 px", "Right", 1, 0),
        ("nudge_up", "Nudge up 1 px", "Up", 0, -1),
        ("nudge_down", "Nudge down 1 px", "Down", 0, 1),
        ("nudge_left10", "Nudge left 10 px", "Shift+Left", -10, 0),
        ("nudge_right10", "Nudge right 10 px", "Shift+Right", 10, 0),
        ("nudge_up10", "Nudge up 10 px", "Shift+Up", 0, -10),
        ("nudge_down10", "Nudge down 10 px", "Shift+Down", 0, 10),
    ):
        add(
            a,
            win,
            key,
            text,
            lambda _=False, dx=dx, dy=dy: win.nudge(dx, dy),
            keys,
            "Move the label; a run of nudges is one undo step",
        )
    add(
        a,
        win,
        "next_point",
        "Next &point",
        win.next_point,
        "Tab",
        "Select the next point of a multi-point label",
    )

    add(
        a,
        win,
        "next",
        "&Next item",
        win.next_item,
        ["D", "PgDown"],
        "Go to the next item in the list",
        "next",
    )
    add(
        a,
        win,
        "prev",
        "P&revious item",
        win.prev_item,
        ["A", "PgUp"],
        "Go to the previous item in the list",
        "prev",
    )
    add(
        a,
        win,
        "next_group",
        "Next &group",
        win.next_group,
        ["]", "Ctrl+PgDown"],
        "Go to the first item of the next group",
        "next-group",
    )
    add(
        a,
        win,
        "prev_group",
        "Previous gro&up",
        win.prev_group,
        ["[", "Ctrl+PgUp"],
        "Go to the first item of the previous group",
        "prev-group",
    )
    add(a, win, "first", "&First item", win.first_item, "Home", "Go to the first item in the list", "first")
    add(a, win, "last", "&Last item", win.last_item, "End", "Go to the last item in the list", "last")
    add(
        a,
        win,
        "find",
        "&Filter items…",
        win.focus_filter,
        QKeySequence.StandardKey.Find,
        "Type to filter the item list by name",
    )

    add(
        a,
        win,
        "zoom_in",
        "Zoom &in",
        win.canvas.zoom_in,
        ["+", "=", QKeySequence.StandardKey.ZoomIn],
        "Zoom in (the mouse wheel zooms around the cursor)",
        "zoom-in",
    )
    add(
        a,
        win,
        "zoom_out",
        "Zoom &out",
        win.canvas.zoom_out,
        ["-", QKeySequence.StandardKey.ZoomOut],
        "Zoom out",
        "zoom-out",
    )
    add(a, win, "fit", "&Fit to window", win.canvas.fit, ["F", "Ctrl+0"], "Show the whole image", "fit")
    add(
        a,
        win,
        "actual",
        "&Actual size",
        win.canvas.actual_size,
        ["1", "Ctrl+1"],
        "One image pixel per screen pixel",
        "actual-size",
    )
    add(
        a,
        win,
        "show_label",
        "Show &label",
        lambda on: win.canvas.set_visibility(label=on),
        "L",
        "Show or hide the label (green cross)",
        "show-label",
        checkable=True,
        checked=True,
    )
    add(
        a,
        win,
        "show_pred",
        "Show &prediction",
        lambda on: win.canvas.set_visibility(pred=on),
        "P",
        "Show or hide the active run's prediction (red ring)",
        "show-pred",
        checkable=True,
        checked=True,
    )
    add(
        a,
        win,
        "show_line",
        "Show &error line",
        lambda on: win.canvas.set_visibility(line=on),
        "E",
        "Show or hide the dashed line and distance between label and prediction",
        "show-line",
        checkable=True,
        checked=True,
    )
    add(
        a,
        win,
        "sort_error",
        "Sort by e&rror",
        lambda: win.panel.sort_by_error(),
        "Ctrl+Shift+E",
        "List items by prediction error, largest first (needs an active run)",
    )
    add(a, win, "sort_name", "Sort by &name", lambda: win.panel.sort_by_name(), None, "List items by name")

    add(
        a,
        win,
        "shortcuts",
        "&Keyboard shortcuts",
        win.show_shortcuts,
        ["F1", "?"],
        "List every keyboard shortcut",
        "keyboard",
    )
    add(a, win, "about", "&About imgreg", win.show_about, None, "Version, licence and data credits", "help")
    return a


def build_menus(win: MainWindow, a: Actions) -> dict[str, QMenu]:
    """File, Edit, Go, View and Help menus; returns them by title (without '&')."""
    bar = win.menuBar()
    menus: dict[str, QMenu] = {}

    def menu(title: str) -> QMenu:
        m = bar.addMenu(title)
        m.setToolTipsVisible(True)
        menus[title.replace("&", "")] = m
        return m

    m = menu("&File")
    m.addAction(a.open)
    win.recent_menu = m.addMenu(icon("open"), "Open &recent")
    win.recent_menu.aboutToShow.connect(win.fill_recent_menu)
    m.addSeparator()
    m.addAction(a.export)
    m.addSeparator()
    m.addAction(a.quit)

    m = menu("&Edit")
    m.addActions([a.undo, a.redo])
    m.addSeparator()
    m.addActions([a.accept, a.revert, a.verify, a.place])
    nudge = m.addMenu("&Nudge label")
    for key in ("left", "right", "up", "down", "left10", "right10", "up10", "down10"):
        nudge.addAction(a.all[f"nudge_{key}"])
    m.addAction(a.next_point)

    m = menu("&Go")
    m.addActions([a.next, a.prev])
    m.addSeparator()
    m.addActions([a.next_group, a.prev_group, a.first, a.last])
    m.addSeparator()
    m.addAction(a.find)

    m = menu("&View")
    m.addActions([a.zoom_in, a.zoom_out, a.fit, a.actual])
    m.addSeparator()
    m.addActions([a.show_label, a.show_pred, a.show_line])
    m.addSeparator()
    m.addActions([a.sort_name, a.sort_error])
    win.docks_menu = m.addMenu("&Panels")

    m = menu("&Help")
    m.addActions([a.shortcuts, a.about])
    return menus


def build_toolbar(win: MainWindow, a: Actions) -> QToolBar:
    """The main toolbar: file, navigation, edits, the scalar value box, view toggles."""
    tb = QToolBar("Main toolbar", win)
    tb.setObjectName("MainToolbar")
    tb.setIconSize(QSize(20, 20))
    tb.setMovable(False)
    tb.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonIconOnly)
    tb.addAction(a.open)
    tb.addSeparator()
    tb.addActions([a.first, a.prev_group, a.prev, a.next, a.next_group, a.last])
    tb.addSeparator()
    tb.addActions([a.undo, a.redo])
    tb.addSeparator()
    tb.addActions([a.place, a.accept, a.revert, a.verify])
    win.value_label = QLabel(" Value ", tb)
    win.value_box = QDoubleSpinBox(tb)
    win.value_box.setRange(-1e9, 1e9)
    win.value_box.setDecimals(2)
    win.value_box.setKeyboardTracking(False)
    win.value_box.setMinimumWidth(90)
    win.value_box.setToolTip(
        "The item's value (scalar datasets): type a number and press Enter to correct it"
    )
    win.value_label_action = tb.addWidget(win.value_label)
    win.value_box_action = tb.addWidget(win.value_box)
    win.value_label_action.setVisible(False)  # shown for scalar datasets only
    win.value_box_action.setVisible(False)
    tb.addSeparator()
    tb.addActions([a.zoom_out, a.fit, a.actual, a.zoom_in])
    tb.addSeparator()
    tb.addActions([a.show_label, a.show_pred, a.show_line])
    spacer = QWidget(tb)
    spacer.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
    tb.addWidget(spacer)
    tb.addAction(a.shortcuts)
    win.addToolBar(Qt.ToolBarArea.TopToolBarArea, tb)
    return tb


class StatusField(QWidget):
    """A fixed-width status text: changing it repaints only itself (a QLabel re-lays out the whole status bar)."""

    def __init__(self, widest: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._text = ""
        self.setFixedSize(self.fontMetrics().horizontalAdvance(widest) + 20, self.fontMetrics().height() + 6)

    def setText(self, text: str) -> None:  # noqa: N802 (QLabel-compatible name)
        """Show ``text`` (repaints only when it changed)."""
        if text != self._text:
            self._text = text
            self.update()

    def text(self) -> str:
        """The shown text."""
        return self._text

    def paintEvent(self, _ev) -> None:  # noqa: N802 (Qt override)
        """A separator on the left and the centred text."""
        p = QPainter(self)
        p.setPen(QColor("#dfe1e6"))
        p.drawLine(0, 3, 0, self.height() - 3)
        p.setPen(QColor("#4a5160"))
        p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, self._text)
        p.end()


class StatusBar(QStatusBar):
    """Status bar with permanent fields; ``message`` shows transient text on the left."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("StatusBar")
        self.problem = QLabel(self)
        self.problem.setObjectName("ProblemLabel")
        self.problem.setVisible(False)
        self.fields = QWidget(self)
        box = QHBoxLayout(self.fields)
        box.setContentsMargins(0, 0, 0, 0)
        box.setSpacing(0)
        self.position = self._field(
            "Position of the current item in the (filtered) list", "Item 888,888 of 888,888"
        )
        self.pixel = self._field("Image pixel under the cursor (x, y)", "x 88888.8  y 88888.8")
        self.zoom = self._field("Zoom: screen pixels per image pixel (F fits, 1 shows actual size)", "88888%")
        self.summary = self._field(
            "Dataset format, number of items, corrections, verified items and problems"
        )
        self.addWidget(self.problem, 1)
        for w in (self.position, self.pixel, self.zoom, self.summary):
            box.addWidget(w)
        self.addPermanentWidget(self.fields)
        self.set_pixel(math.nan, math.nan)
        self.set_zoom(1.0)

    def _field(self, tip: str, widest: str = "") -> QLabel | StatusField:
        lab: QLabel | StatusField = StatusField(widest, self.fields) if widest else QLabel(self.fields)
        lab.setToolTip(tip)
        lab.setObjectName("StatusField")
        return lab

    def message(self, text: str, ms: int = SAVED_MS) -> None:
        """A transient message on the left."""
        self.showMessage(text, ms)

    def saved(self, names: list[str]) -> None:
        """Say the edit is on disk."""
        what = names[0] if len(names) == 1 else f"{len(names)} items"
        self.showMessage(f"✔ Saved {what}", SAVED_MS)

    def set_problem(self, reason: str | None) -> None:
        """Show (or clear) the current item's problem in red."""
        self.problem.setVisible(bool(reason))
        self.problem.setText(f"⚠ {reason}" if reason else "")
        self.problem.setToolTip(reason or "")

    def set_position(self, index: int | None, total: int) -> None:
        """``Item i of n`` (1-based), or the total alone."""
        if index is None:
            self.position.setText(f"{total:,} items" if total else "")
        else:
            self.position.setText(f"Item {index + 1:,} of {total:,}")

    def set_pixel(self, x: float, y: float) -> None:
        """The cursor's image pixel, blank when outside."""
        self.pixel.setText("x —  y —" if math.isnan(x) else f"x {x:7.1f}  y {y:7.1f}")

    def set_zoom(self, s: float) -> None:
        """The zoom in percent."""
        self.zoom.setText(f"{s * 100:.0f}%")

    def set_summary(self, text: str, tip: str = "") -> None:
        """The dataset summary on the right."""
        self.summary.setText(text)
        if tip:
            self.summary.setToolTip(tip)
