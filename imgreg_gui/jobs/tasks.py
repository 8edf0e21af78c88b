"""One way to run a slow function off the GUI thread: a ``Task`` that reports its result or a one-line error."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QThread, Signal

from engine.data import DatasetError
from engine.labels.interop import ExportError
from engine.labels.store import StoreError

log = logging.getLogger(__name__)


def one_line(e: BaseException) -> str:
    """A person's one-line account of an error (our own errors already read as one)."""
    if isinstance(e, (ExportError, DatasetError, StoreError)):
        return str(e)
    if isinstance(e, OSError):
        return f"{e.strerror or type(e).__name__}: {e.filename or e}"
    return f"{type(e).__name__}: {e}"


class Task(QThread):
    """Run ``fn()`` on a worker thread: ``done(result)`` or ``failed(one-line message)``, never a traceback."""

    done = Signal(object)
    failed = Signal(str)

    def __init__(self, fn: Callable[[], Any], parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.fn = fn

    def run(self) -> None:
        """Call the function and report."""
        try:
            self.done.emit(self.fn())
        except Exception as e:  # a damaged file must never crash the app: say it in one line
            if not isinstance(e, (ExportError, DatasetError, StoreError, OSError)):
                log.error("background task failed:\n%s", traceback.format_exc())
            self.failed.emit(one_line(e))
