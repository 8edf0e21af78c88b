"""File menu work over the app state: export labels in every format, reload the dataset in place, show orphans and
what recovery of a damaged store did. Slow work (reading image headers, re-indexing) runs on a worker thread."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import QFileDialog, QMessageBox, QWidget

from engine.core import Label
from engine.labels.interop import EXPORT_FORMATS, Exported, formats_for, write_export
from engine.labels.store import LabelRecord
from imgreg_gui import settings
from imgreg_gui.jobs.process import open_error_box
from imgreg_gui.jobs.tasks import Task
from imgreg_gui.model.items import format_label
from imgreg_gui.model.state import AppState
from imgreg_gui.words import plural

log = logging.getLogger(__name__)
# What the export dialog offers, by format: (dialog filter, file suffix; "" for a folder).
FORMAT_FILTERS: dict[str, tuple[str, str]] = {
    "csv": ("CSV (*.csv)", ".csv"),
    "json": ("JSON (*.json)", ".json"),
    "coco": ("COCO keypoints JSON (*.json)", ".json"),
    "yolo-pose": ("YOLO-pose folder (the name is a new folder) (*)", ""),
}
assert set(FORMAT_FILTERS) == set(EXPORT_FORMATS)  # a new engine format needs a row here
EXPORT_FOLDER_KEY = "export/folder"  # the export dialog starts where the last export went


def export_labels(ds: Any, store: Any, fmt: str, path: str | Path) -> Exported:
    """Write the effective labels of ``ds`` in format ``fmt`` (``EXPORT_FORMATS``); raises ExportError, OSError."""
    return write_export(ds, store, fmt, Path(path))


def exported_text(res: Exported, fmt: str) -> str:
    """One status-bar line for an export."""
    text = f"Exported {res.n_labels:,} labels ({fmt}) to {res.path}"
    if res.skipped:
        text += f"; {plural(len(res.skipped), 'item')} left out ({res.skipped[0].reason})"
    return text + "".join(f"; {n}" for n in res.notes)


def orphan_text(rec: LabelRecord, kind: str) -> str:
    """What an orphan's placeholder says: its label, where it came from."""
    label: Label | None = rec.effective
    shown = format_label(label, kind) if label is not None else "no label"
    verified = ", verified" if rec.verified else ""
    return (
        f"Its {rec.source} label {shown}{verified} is kept; it comes back when the file does (File ▸ Reload)."
    )


class FileOps(QObject):
    """File ▸ Export (CSV, JSON, COCO keypoints, YOLO-pose) and File ▸ Reload over the state, off the GUI thread.

    Signals: ``exported(Exported)``, ``reloaded(Reloaded)`` (the state already re-indexed), ``busy(bool)``.
    """

    exported = Signal(object)
    reloaded = Signal(object)
    busy = Signal(bool)

    def __init__(self, state: AppState, parent: QWidget) -> None:
        super().__init__(parent)
        self.state = state
        self.parent_widget = parent
        self.task: Task | None = None
        self.error_box: QMessageBox | None = None
        self.info_box: QMessageBox | None = None

    @property
    def running(self) -> bool:
        """Whether an export or reload is under way."""
        return self.task is not None and self.task.isRunning()

    def _start(self, fn: Callable[[], Any], on_done: Callable[[Any], None], title: str) -> bool:
        if self.running:
            self.state.notify("Wait until the export or reload under way has finished")
            return False
        task = Task(fn, self)
        task.done.connect(on_done)
        task.failed.connect(lambda msg: self._failed(title, msg))
        task.finished.connect(lambda: self._finished(task))
        self.task = task
        self.busy.emit(True)
        task.start()
        return True

    def _finished(self, task: Task) -> None:
        if task is self.task:
            self.task = None
            self.busy.emit(False)
        task.deleteLater()

    def _failed(self, title: str, message: str) -> None:
        self.state.notify(f"{title}: {message}", 10000)
        self.error_box = open_error_box(self.parent_widget, title, message)
        self.error_box.finished.connect(lambda _r: setattr(self, "error_box", None))

    def wait(self, ms: int = 10000) -> None:
        """Wait for a running task (the window is closing)."""
        if self.task is not None:
            self.task.wait(ms)

    # -- export ------------------------------------------------------------------------------------------

    def choose_export(self) -> None:
        """Ask for a format and a file (a folder for YOLO-pose) and export there."""
        ds = self.state.dataset
        if ds is None or self.state.store is None:
            return
        offered = {k: FORMAT_FILTERS[k] for k in formats_for(ds.kind)}  # scalars: no keypoint formats
        filters = [f for f, _ in offered.values()]
        folder = settings.settings().value(EXPORT_FOLDER_KEY) or str(Path.home())
        default = str(Path(str(folder)) / f"{ds.root.name}-labels.csv")
        path, chosen = QFileDialog.getSaveFileName(
            self.parent_widget, "Export labels", default, ";;".join(filters), filters[0]
        )
        if not path:
            return
        settings.set_value(EXPORT_FOLDER_KEY, str(Path(path).parent))
        fmt = next((k for k, (f, _) in offered.items() if f == chosen), "csv")
        suffix = FORMAT_FILTERS[fmt][1]
        if suffix and not Path(path).suffix:
            path += suffix
        elif not suffix and Path(path).suffix:
            path = str(Path(path).with_suffix(""))  # the default name's .csv is not a folder name
        self.export(fmt, path)

    def export(self, fmt: str, path: str | Path) -> bool:
        """Export the effective labels in ``fmt`` to ``path`` on a worker thread; False if it cannot start."""
        ds, store = self.state.dataset, self.state.store
        if ds is None or store is None:
            return False
        self.state.notify(f"Exporting labels ({fmt}) to {path}…", 0)
        return self._start(lambda: export_labels(ds, store, fmt, path), lambda r: self._exported(r, fmt),
                           "Cannot export labels")  # fmt: skip

    def _exported(self, res: Exported, fmt: str) -> None:
        self.state.notify(exported_text(res, fmt), 10000)
        self.exported.emit(res)

    # -- reload ------------------------------------------------------------------------------------------

    def reload(self) -> bool:
        """Index the open dataset again (new files appear, vanished ones leave); False if it cannot start."""
        from engine.labels.ondisk import reload

        ds, store = self.state.dataset, self.state.store
        if ds is None or store is None:
            return False
        self.state.notify("Reloading the dataset…", 0)

        def work() -> tuple[Any, dict, Any]:
            res = reload(ds, store)
            return res, store.records(), ds

        return self._start(work, self._reloaded, "Cannot reload the dataset")

    def _reloaded(self, result: tuple[Any, dict, Any]) -> None:
        res, records, old = result
        if self.state.dataset is not old:  # closed, or another dataset opened meanwhile
            return
        self.state.reindex(res.ds, records)
        parts = [
            f"{len(res.added):,} new",
            f"{len(res.removed):,} gone",
            f"{len(res.relabelled):,} relabelled",
        ]
        if res.orphans:
            parts.append(f"{len(res.orphans):,} orphaned corrections kept")
        self.state.notify(f"Reloaded {plural(len(res.ds.items), 'item')}: {', '.join(parts)}", 10000)
        self.reloaded.emit(res)

    # -- recovery ----------------------------------------------------------------------------------------

    def show_recovery(self, message: str | None) -> None:
        """Say (status bar and a non-blocking box) what recovering a damaged store did; nothing when it did not."""
        if not message:
            return
        self.state.notify(message, 20000)
        box = QMessageBox(
            QMessageBox.Icon.Information,
            "Label store recovered",
            message,
            QMessageBox.StandardButton.Ok,
            self.parent_widget,
        )
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.finished.connect(lambda _r: setattr(self, "info_box", None))
        box.open()
        self.info_box = box
