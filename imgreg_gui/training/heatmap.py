"""View ▸ Show heatmap: the active spatial run's heatmap of the current item under the markers, and its spread.

``imgreg predict RUN DATASET --heatmaps`` (Predict all asks for it for spatial runs) writes one small PNG per item
(``engine.runs.heatmaps``). Reading one (about 40 x 30 pixels) takes about 0.1 ms and colouring it about 0.7 ms
(measured on this project's 2-core CPU machine, any image size: the colour image is at most 8x the map), so both
happen on the GUI thread when the item or the run changes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Qt
from PySide6.QtGui import QAction, QKeySequence

from engine.runs.heatmaps import has_heatmaps, heatmap_path, read_heatmap
from imgreg_gui import settings
from imgreg_gui.settings import icon

SETTING = "view/show_heatmap"
TIP = "Show the active run's heatmap under the markers: where the model looked, diffuse means unsure"
NO_MAPS_TIP = (
    "The active run has no heatmaps: Predict all with a spatial-head run "
    "(imgreg predict RUN DATASET --heatmaps) to draw them"
)


class HeatmapView(QObject):
    """Owns the Show heatmap action (H) and pushes the current item's heatmap and spread to the canvas."""

    def __init__(self, window: Any) -> None:
        super().__init__(window)
        self.window = window
        act = QAction("Show &heatmap", window)
        act.setObjectName("action_show_heatmap")
        act.setCheckable(True)
        act.setShortcut(QKeySequence("H"))
        act.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        act.setChecked(settings.get_bool(SETTING, False))
        act.setIcon(icon("show-heatmap"))
        act.setStatusTip(TIP)
        window.addAction(act)
        self.action = act
        self._add_to_view(act)
        act.toggled.connect(self._toggled)
        window.current_item_changed.connect(self.update)
        window.image_shown.connect(self.update)
        window.dataset_opened.connect(self.update)
        self.update()

    def _add_to_view(self, act: QAction) -> None:
        """After Show error line in the View menu and the toolbar; listed with the window's actions (F1)."""
        acts = getattr(self.window, "acts", None)
        if acts is not None:
            acts.all["show_heatmap"] = act
        line = acts.all.get("show_line") if acts is not None else None
        menu = (getattr(self.window, "menus", {}) or {}).get("View")
        for host in (menu, getattr(self.window, "toolbar", None)):
            if host is None:
                continue
            after = host.actions()
            i = after.index(line) + 1 if line in after else len(after)
            if i < len(after):
                host.insertAction(after[i], act)
            else:
                host.addAction(act)

    def run_dir(self) -> Path | None:
        """The active run's folder (None without a store or an active run)."""
        store, run = getattr(self.window, "store", None), getattr(self.window, "active_run", None)
        return Path(store.dir) / "runs" / run if store is not None and run else None

    def _toggled(self, on: bool) -> None:
        if getattr(self.window, "persist", True):
            settings.set_value(SETTING, on)
        self.update()

    def update(self, *_args: Any) -> None:
        """Re-read the current item's heatmap for the active run (or clear it) and set the action's state."""
        canvas = self.window.canvas
        run_dir = self.run_dir()
        available = has_heatmaps(run_dir)
        act = self.action
        act.setEnabled(available)
        tip = f"{TIP} (H)" if available else f"{NO_MAPS_TIP} (H)"
        act.setToolTip(tip)
        act.setStatusTip(tip[:-4])
        name = self.window.current_item_name()
        run = getattr(self.window, "active_run", None)
        pred = self.window.panel.model.preds.get(name) if name else None
        spread = getattr(pred, "spread", None)
        gray = None
        if available and act.isChecked() and name and run_dir is not None:
            gray = read_heatmap(heatmap_path(run_dir, name))
        canvas.set_heatmap(name, run, gray, spread, act.isChecked() and available)
