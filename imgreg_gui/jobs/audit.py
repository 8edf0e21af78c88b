"""The audit for the open dataset, off the GUI thread: run on opening, again shortly after label edits (each run
cancels the one before), its findings handed to the app state (``AppState.set_findings``)."""

from __future__ import annotations

import logging

from PySide6.QtCore import QObject, QTimer, Signal

from engine.core import Cancelled, CancelToken
from imgreg_gui.jobs.tasks import Task
from imgreg_gui.model import doubts
from imgreg_gui.model.state import AppState

log = logging.getLogger(__name__)
REAUDIT_MS = 400  # edits in quick succession (nudges) re-audit once


class AuditWatch(QObject):
    """Keeps ``state.findings`` current: ``finished(n_findings)`` after each audit, ``failed(message)``."""

    finished = Signal(int)
    failed = Signal(str)

    def __init__(self, state: AppState, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.task: Task | None = None
        self.token: CancelToken | None = None
        self._serial = 0  # which opening a result belongs to
        self._old: list[Task] = []
        self._timer = QTimer(self, singleShot=True, interval=REAUDIT_MS)
        self._timer.timeout.connect(self.start)
        state.dataset_changed.connect(self._on_dataset)
        state.records_changed.connect(lambda _names: self._timer.start())

    @property
    def running(self) -> bool:
        """Whether an audit is running now."""
        return self.task is not None and self.task.isRunning()

    def _on_dataset(self) -> None:
        self._serial += 1
        self._timer.stop()
        self.cancel()
        if self.state.is_open:
            self.start()

    def start(self) -> None:
        """Audit the open dataset now (cancelling a running audit)."""
        ds, store = self.state.dataset, self.state.store
        if ds is None or store is None:
            return
        self.cancel()
        token, serial = CancelToken(), self._serial
        task = Task(lambda: doubts.audit(ds, store, cancel=token), self)
        task.done.connect(lambda found, s=serial, t=token: self._done(found, s, t))
        task.failed.connect(lambda msg, t=token: self._failed(msg, t))
        task.finished.connect(lambda t=task: self._forget(t))
        self.task, self.token = task, token
        task.start()

    def _done(self, found: object, serial: int, token: CancelToken) -> None:
        if serial != self._serial or token.requested or not isinstance(found, list):
            return  # another dataset, or a newer audit is on its way
        self.state.set_findings(found)
        self.finished.emit(len(found))

    def _failed(self, message: str, token: CancelToken) -> None:
        if not token.requested and Cancelled.__name__ not in message:
            log.warning("audit failed: %s", message)
            self.failed.emit(message)

    def _forget(self, task: Task) -> None:
        if task in self._old:
            self._old.remove(task)
        if task is self.task:
            self.task = None

    def cancel(self) -> None:
        """Ask a running audit to stop (its result is dropped)."""
        if self.token is not None:
            self.token.cancel("now")
        if self.task is not None and self.task.isRunning():
            self._old.append(self.task)  # kept referenced until it ends
        self.task = self.token = None

    def shutdown(self, ms: int = 3000) -> None:
        """Cancel and wait for the audits still running (the window is closing)."""
        self._timer.stop()
        running = [t for t in [self.task, *self._old] if t is not None]
        self.cancel()
        for t in running:
            t.wait(ms)
