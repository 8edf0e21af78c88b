"""The window's dock panels and layout: adding a dock (listed under View ▸ Panels), the first-run sizes, hiding
stray tab bars, and remembering geometry, dock layout and view toggles between sessions."""

from __future__ import annotations

from PySide6.QtCore import QByteArray, Qt
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QDockWidget, QMainWindow, QMenu, QTabBar, QWidget

from imgreg_gui import settings

FEATURES = (
    QDockWidget.DockWidgetFeature.DockWidgetMovable
    | QDockWidget.DockWidgetFeature.DockWidgetClosable
    | QDockWidget.DockWidgetFeature.DockWidgetFloatable
)


class Docks:
    """The docks of one main window by title, and its remembered layout."""

    def __init__(self, win: QMainWindow, panels_menu: QMenu) -> None:
        self.win = win
        self.menu = panels_menu
        self.by_title: dict[str, QDockWidget] = {}
        self.needs_layout = True

    def add(self, widget: QWidget, title: str, area: Qt.DockWidgetArea) -> QDockWidget:
        """Put ``widget`` in a dock (state remembered between sessions) listed under View ▸ Panels."""
        dock = QDockWidget(title, self.win)
        dock.setObjectName(f"dock_{title.replace(' ', '_')}")
        dock.setWidget(widget)
        dock.setFeatures(FEATURES)
        self.win.addDockWidget(area, dock)
        self.by_title[title] = dock
        self.menu.addAction(dock.toggleViewAction())
        return dock

    def restore(self, toggles: dict[str, QAction]) -> None:
        """The remembered geometry, dock layout and view toggles (a first start keeps the defaults)."""
        s = settings.settings()
        geometry, state = s.value("geometry"), s.value("windowState")
        if isinstance(geometry, QByteArray) and not geometry.isEmpty():
            self.win.restoreGeometry(geometry)
        else:
            self.win.resize(1440, 900)
        self.needs_layout = not (
            isinstance(state, QByteArray) and not state.isEmpty() and self.win.restoreState(state)
        )
        for key, act in toggles.items():
            act.setChecked(settings.get_bool(f"view/{key}", True))

    def save(self, toggles: dict[str, QAction]) -> None:
        """Remember geometry, dock layout and view toggles."""
        s = settings.settings()
        s.setValue("geometry", self.win.saveGeometry())
        s.setValue("windowState", self.win.saveState())
        for key, act in toggles.items():
            s.setValue(f"view/{key}", act.isChecked())
        s.sync()

    def default_layout(self) -> None:
        """Side panels run full height; the image gets most of the room, bottom panels stay short."""
        win = self.win
        by_area: dict[Qt.DockWidgetArea, list[QDockWidget]] = {}
        for dock in self.by_title.values():
            by_area.setdefault(win.dockWidgetArea(dock), []).append(dock)
        horizontal = {Qt.DockWidgetArea.LeftDockWidgetArea: 300, Qt.DockWidgetArea.RightDockWidgetArea: 340}
        for area, width in horizontal.items():
            docks = by_area.get(area, [])
            if docks:
                win.resizeDocks(docks, [width] * len(docks), Qt.Orientation.Horizontal)
        bottom = by_area.get(Qt.DockWidgetArea.BottomDockWidgetArea, [])
        if bottom:
            win.resizeDocks(bottom, [200] * len(bottom), Qt.Orientation.Vertical)

    def hide_stray_tab_bars(self) -> None:
        """Hide the dock tab strips Qt left behind over the panels.

        Docks tabified before the window is shown (and a restored layout) leave orphan tab bars that Qt never
        retires: they stay painted over the dataset list or the image. A live dock tab bar sits beside its
        docks, never on top of a dock or the central widget, which is how the orphans are told apart.
        """
        win = self.win
        covered = [d.geometry() for d in self.by_title.values() if d.isVisible() and not d.isFloating()]
        if (central := win.centralWidget()) is not None:
            covered.append(central.geometry())
        for bar in win.findChildren(QTabBar, options=Qt.FindChildOption.FindDirectChildrenOnly):
            if bar.isVisible() and any(bar.geometry().intersects(r) for r in covered):
                bar.hide()
