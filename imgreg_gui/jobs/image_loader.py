"""Off-GUI-thread image decoding into QImages, with an LRU cache and neighbour prefetch."""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from pathlib import Path

import cv2
import numpy as np
import PySide6.QtGui  # noqa: F401  (before qimage2ndarray, which uses the Qt binding already loaded)
import qimage2ndarray
from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal
from PySide6.QtGui import QImage

from engine.data.images import ImageError, load_image

log = logging.getLogger(__name__)


def array_to_qimage(img: np.ndarray) -> QImage:
    """An (H, W, 3) uint8 RGB array as an RGB32 QImage that owns its pixels (safe to create in any thread).

    RGB32 is the raster paint engine's native format, so turning it into a QPixmap on the GUI thread is a plain
    copy instead of a per-pixel conversion: that work stays on the decoding thread.
    """
    h, w = img.shape[:2]
    qimg = QImage(w, h, QImage.Format.Format_RGB32)
    view = qimage2ndarray.byte_view(qimg)  # (h, w, 4) bytes B, G, R, A: the image's own pixels
    out = cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2BGRA, dst=view)  # one pass, in place
    if out is not view:  # OpenCV allocated instead of writing in place: copy its result over
        view[...] = out
    return qimg


def decode(path: str | Path) -> QImage:
    """Decode an image file to a QImage; raises ImageError with a readable reason."""
    try:
        img = load_image(path)
    except ImageError:
        raise
    except MemoryError as e:
        raise ImageError("image too large to decode") from e
    except Exception as e:  # a decoder bug must become a problem, never a crash
        raise ImageError(f"cannot decode image ({type(e).__name__}: {e})") from e
    return array_to_qimage(img)


class _Signals(QObject):
    """Signals of the decode jobs (a QRunnable is not a QObject)."""

    done = Signal(str, QImage)
    failed = Signal(str, str)


class _DecodeJob(QRunnable):
    """Decode one file in the thread pool and report through the loader's signals."""

    def __init__(self, key: str, signals: _Signals) -> None:
        super().__init__()
        self.key = key
        self.signals = signals
        self.setAutoDelete(False)

    def run(self) -> None:
        """Decode and emit; never raises."""
        try:
            qimg = decode(self.key)
        except ImageError as e:
            self.signals.failed.emit(self.key, e.reason)
            return
        except BaseException as e:  # keep the pool thread alive whatever happens
            self.signals.failed.emit(self.key, f"cannot decode image ({e})")
            return
        self.signals.done.emit(self.key, qimg)


class ImageLoader(QObject):
    """Decodes images on a thread pool; ``ready(path, QImage)`` or ``failed(path, reason)`` on the GUI thread.

    Decoded images stay in an LRU cache of at most ``capacity`` entries and ``max_bytes`` of pixels (the
    newest always stays, however big); failures are remembered too so a broken file
    is read once. ``request`` gives the current image top priority; ``prefetch`` queues neighbours behind it and
    ``retain`` drops queued prefetches that are no longer wanted (fast scrolling never builds a backlog).
    """

    ready = Signal(str, QImage)
    failed = Signal(str, str)

    def __init__(
        self,
        capacity: int = 48,
        threads: int | None = None,
        max_bytes: int = 512 << 20,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.capacity = capacity
        self.max_bytes = max_bytes
        self._bytes = 0
        self.pool = QThreadPool(self)
        # Leave a core to the GUI thread: on 2 cores a second decoder doubled the p95 step time (bench_gui.py).
        threads = threads if threads is not None else min(2, (os.cpu_count() or 2) - 1)
        self.pool.setMaxThreadCount(max(1, threads))
        self._cache: OrderedDict[str, QImage] = OrderedDict()
        self._errors: dict[str, str] = {}
        self._pending: dict[str, _DecodeJob] = {}
        self._signals = _Signals(self)
        self._signals.done.connect(self._on_done)
        self._signals.failed.connect(self._on_failed)

    @staticmethod
    def key(path: str | Path) -> str:
        """The cache key of a path."""
        return str(path)

    def cached(self, path: str | Path) -> QImage | None:
        """The decoded image if it is in the cache (marks it recently used)."""
        key = self.key(path)
        img = self._cache.get(key)
        if img is not None:
            self._cache.move_to_end(key)
        return img

    def error(self, path: str | Path) -> str | None:
        """The remembered decode failure of ``path``, if any."""
        return self._errors.get(self.key(path))

    def is_pending(self, path: str | Path) -> bool:
        """Whether a decode of ``path`` is queued or running."""
        return self.key(path) in self._pending

    def request(self, path: str | Path) -> QImage | None:
        """Return the image at once if cached, else start decoding it first in line and return None."""
        key = self.key(path)
        img = self.cached(key)
        if img is not None or key in self._errors:
            return img
        self._start(key, priority=10)
        return None

    def prefetch(self, paths: list[str | Path]) -> None:
        """Queue decodes of ``paths`` (nearest first) behind the current request."""
        for i, path in enumerate(paths):
            key = self.key(path)
            if key in self._cache or key in self._errors:
                continue
            self._start(key, priority=max(0, 5 - i))

    def retain(self, paths: list[str | Path]) -> None:
        """Drop queued (not yet running) decodes of everything but ``paths``."""
        keep = {self.key(p) for p in paths}
        for key in [k for k in self._pending if k not in keep]:
            if self.pool.tryTake(self._pending[key]):
                del self._pending[key]

    def forget(self, path: str | Path) -> None:
        """Drop a cached image or failure so the file is read again next time."""
        key = self.key(path)
        old = self._cache.pop(key, None)
        self._bytes -= old.sizeInBytes() if old is not None else 0
        self._errors.pop(key, None)

    def clear(self) -> None:
        """Empty the cache and drop queued decodes (running ones finish and are ignored if unwanted)."""
        self.pool.clear()
        self._pending.clear()
        self._cache.clear()
        self._bytes = 0
        self._errors.clear()

    def wait(self, msecs: int = 5000) -> bool:
        """Wait for running decodes to finish (tests, shutdown)."""
        return self.pool.waitForDone(msecs)

    def _start(self, key: str, priority: int) -> None:
        if key in self._pending:
            return
        job = _DecodeJob(key, self._signals)
        self._pending[key] = job
        self.pool.start(job, priority)

    def _on_done(self, key: str, img: QImage) -> None:
        self._pending.pop(key, None)
        old = self._cache.pop(key, None)
        self._bytes -= old.sizeInBytes() if old is not None else 0
        self._cache[key] = img
        self._bytes += img.sizeInBytes()
        while len(self._cache) > 1 and (len(self._cache) > self.capacity or self._bytes > self.max_bytes):
            self._bytes -= self._cache.popitem(last=False)[1].sizeInBytes()
        self.ready.emit(key, img)

    def _on_failed(self, key: str, reason: str) -> None:
        self._pending.pop(key, None)
        self._errors[key] = reason
        log.info("cannot load %s: %s", key, reason)
        self.failed.emit(key, reason)
