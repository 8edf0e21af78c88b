"""View ▸ Show heatmap: the active spatial run's heatmap of the current item under the markers, and its spread.

``imgreg predict RUN DATASET --heatmaps`` (Predict all asks for it for spatial runs) writes one small PNG per item
(``engine.runs.heatmaps``). Reading one (about 40 x 30 pixels) takes about 0.1 ms and colouring it about 0.7 ms
(measured on this project's 2-core CPU machine, any image size: the colour image is at most 8x the map), so both
happen on the GUI thread when the item or the run changes.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QWidget

from engine.runs.heatmaps import has_heatmaps, heatmap_path, read_heatmap
from imgreg_gui import settings
from imgreg_gui.actions import Actions, Menus, insert_after
from imgreg_gui.canvas import ImageCanvas
from imgreg_gui.model.state import AppState
from imgreg_gui.settings import icon

SETTING = "view/show_heatmap"
TIP = "Show the active run's heatmap under the markers: where the model looked, diffuse means unsure"
NO_MAPS_TIP = (
    "The active run has no heatmaps: Predict all with a spatial-head run "
    "(imgreg predict RUN DATASET --heatmaps) to draw them"
)


class HeatmapView(QObject):
    """Owns the Show heatmap action (H) and pushes the current item's heatmap and spread to the canvas."""

    def __init__(
        self, state: AppState, canvas: ImageCanvas, host: QWidget, menus: Menus, acts: Actions
    ) -> None:
        super().__init__(host)
        self.state, self.canvas = state, canvas
        self.persist = True  # remember the toggle (off for scripted screenshots)
        act = QAction("Show &heatmap", host)
        act.setObjectName("action_show_heatmap")
        act.setCheckable(True)
        act.setShortcut(QKeySequence("H"))
        act.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        act.setChecked(settings.get_bool(SETTING, False))
        act.setIcon(icon("show-heatmap"))
        act.setStatusTip(TIP)
        host.addAction(act)
        self.action = act
        acts.all["show_heatmap"] = act  # listed with the window's actions (F1)
        view = menus.by_title.get("View")
        if view is not None:
            insert_after(view, acts.all.get("show_line"), act)
        act.toggled.connect(self._toggled)
        state.current_changed.connect(self.update)
        state.active_run_changed.connect(self.update)
        state.dataset_changed.connect(self.update)
        canvas.image_shown.connect(self.update)
        self.update()

    def run_dir(self) -> Path | None:
        """The active run's folder (None without a store or an active run)."""
        store, run = self.state.store, self.state.active_run
        return Path(store.dir) / "runs" / run if store is not None and run else None

    def _toggled(self, on: bool) -> None:
        if self.persist:
            settings.set_value(SETTING, on)
        self.update()

    def update(self, *_args: object) -> None:
        """Re-read the current item's heatmap for the active run (or clear it) and set the action's state."""
        run_dir = self.run_dir()
        available = has_heatmaps(run_dir)
        act = self.action
        act.setEnabled(available)
        tip = f"{TIP} (H)" if available else f"{NO_MAPS_TIP} (H)"
        act.setToolTip(tip)
        act.setStatusTip(tip[:-4])
        name, run = self.state.current, self.state.active_run
        pred = self.state.prediction(name)
        spread = pred.spread if pred is not None else None
        gray = None
        if available and act.isChecked() and name and run_dir is not None:
            gray = read_heatmap(heatmap_path(run_dir, name))
        self.canvas.set_heatmap(name, run, gray, spread, act.isChecked() and available)
