"""Item embeddings for the app, without torch: which stored source to use, loading it and its exact k-NN index
off the GUI thread, and computing missing ones with an ``imgreg embed --json`` child (progress, cancel).

The source is the active run's embeddings when they are stored, else the ImageNet backbone's (or its seeded
fallback's); when none is stored, or an item asked for has no embedding yet, ``imgreg embed`` computes the missing
ones (only new or changed images) and the file is read again.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

from engine.events import Event
from engine.runs.embeddings import Embeddings, ExactIndex, embeddings_path, load_embeddings
from engine.runs.files import is_run, runs_dir
from engine.runs.neighbours import pick_source
from imgreg_gui.jobs.process import ChildProcess, ChildResult, engine_command
from imgreg_gui.jobs.router import Router
from imgreg_gui.model.state import AppState


def embed_command(root: Path | str, source: str | None, store_dir: Path | str) -> list[str]:
    """The ``imgreg embed`` child filling in ``source`` (a run of this store, else the ImageNet backbone)."""
    run = ["--run", source] if source and is_run(runs_dir(Path(store_dir)) / source) else []
    return engine_command("embed", str(root), *run, "--json", "--control-stdin")


@dataclass
class Loaded:
    """One source's embeddings and their exact nearest-neighbour index."""

    source: str
    emb: Embeddings
    index: ExactIndex


class _Signals(QObject):
    done = Signal(object)
    failed = Signal(str)


class LoadJob(QRunnable):
    """Reads an embeddings file and builds its index on a thread pool: ``signals.done(Loaded)`` or ``failed``."""

    def __init__(self, path: Path, source: str) -> None:
        super().__init__()
        self.path, self.source = path, source
        self.signals = _Signals()

    def run(self) -> None:
        """Load and index (any failure becomes a message)."""
        try:
            emb = load_embeddings(self.path)
            if emb is None:
                raise FileNotFoundError(f"no embeddings file {self.path}")
            self.signals.done.emit(Loaded(self.source, emb, ExactIndex(emb)))
        except Exception as e:  # an unreadable file is a message in the panel, never a crash
            self.signals.failed.emit(str(e))


class EmbeddingSource(QObject):
    """The open dataset's embeddings as the app uses them: ``want(names)`` ends in ``ready(Loaded)`` (at once when
    loaded), after loading the stored file or computing the missing embeddings in a child.

    Signals: ``ready(Loaded)``, ``progress(done, total)`` while a child embeds, ``message(str)`` what is going on,
    ``failed(str)`` a one-line reason, ``busy_changed(bool)``.
    """

    ready = Signal(object)
    progress = Signal(int, int)
    message = Signal(str)
    failed = Signal(str)
    busy_changed = Signal(bool)

    def __init__(self, state: AppState, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.loaded: Loaded | None = None
        self.child = ChildProcess(self)
        self.child.event.connect(self._on_event)
        self._route = Router(
            embed_progress=lambda e: self.progress.emit(e["done"], e["total"]),
            note=lambda e: self.message.emit(e["message"]),
        )
        self.child.ended.connect(self._on_ended)
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(1)
        self.make_command = embed_command  # tests put a scripted child here
        self._job: LoadJob | None = None
        self._wanted: set[str] = set()
        self._computed = False  # computed for this request already: still missing is a failure, not a loop
        self._generation = 0
        state.dataset_changed.connect(self.forget)
        state.active_run_changed.connect(self._on_active_run)

    @property
    def busy(self) -> bool:
        """Whether a file is being read or a child is embedding."""
        return self._job is not None or self.child.running

    def source(self) -> str | None:
        """The stored source that would be used now (None when nothing is stored)."""
        store = self.state.store
        return pick_source(store.dir, self.state.active_run) if store is not None else None

    def forget(self, *_args: object) -> None:
        """Drop what was loaded (another dataset, or another run's embeddings now apply); stop a child."""
        self._generation += 1
        self.loaded, self._job = None, None
        if self.child.running:
            self.child.kill()
        self.busy_changed.emit(False)

    def _on_active_run(self, _run: object) -> None:
        if self.loaded is not None and self.source() != self.loaded.source:
            self.forget()

    def want(self, names: Iterable[str] = (), compute: bool = True) -> bool:
        """Ask for embeddings covering ``names``; ``ready`` follows (False: no dataset open, or already busy).

        ``compute=False`` only reads what is stored: nothing stored is a ``failed`` message, not a child.
        """
        if not self.state.is_open or self.busy:
            return False
        self._wanted = set(names)
        self._computed = not compute
        self._next()
        return True

    def _next(self) -> None:
        store = self.state.store
        if store is None:
            return
        loaded = self.loaded
        if loaded is not None and loaded.source == self.source() and self._wanted <= set(loaded.emb.names):
            self.ready.emit(loaded)
            return
        src = self.source()
        if src is not None and (loaded is None or loaded.source != src):
            self._load(embeddings_path(store.dir, src), src)
        elif self._computed:
            missing = sorted(self._wanted - set(loaded.emb.names)) if loaded else sorted(self._wanted)
            self.failed.emit(
                f"No embedding for {missing[0]}"
                if missing
                else "No embeddings stored yet: View ▸ Embedding map (Ctrl+M) or Find similar (S) computes them"
            )
        else:
            self._compute(src)

    def _load(self, path: Path, source: str) -> None:
        self.message.emit(f"Reading the {source} embeddings...")
        job = LoadJob(path, source)
        gen = self._generation
        job.signals.done.connect(lambda res, g=gen: self._on_loaded(g, res))
        job.signals.failed.connect(lambda msg, g=gen: self._on_load_failed(g, msg))
        self._job = job
        self.busy_changed.emit(True)
        self.pool.start(job)

    def _on_loaded(self, gen: int, res: Loaded) -> None:
        if gen != self._generation:
            return
        self._job, self.loaded = None, res
        self.busy_changed.emit(False)
        self._next()

    def _on_load_failed(self, gen: int, msg: str) -> None:
        if gen != self._generation:
            return
        self._job = None
        self.busy_changed.emit(False)
        self.failed.emit(msg)

    def _compute(self, source: str | None) -> None:
        store, root = self.state.store, self.state.root
        if store is None or root is None:
            return
        self._computed = True
        what = f"run {source}" if source and is_run(runs_dir(store.dir) / source) else "the ImageNet backbone"
        self.message.emit(f"Computing embeddings with {what} (imgreg embed)...")
        self.loaded = None
        self.child.start(self.make_command(root, source, store.dir))
        self.busy_changed.emit(True)

    def cancel(self) -> None:
        """Stop computing (the embeddings stored so far are kept)."""
        if self.child.running:
            self.child.cancel()
            self.message.emit("Cancelling...")

    def _on_event(self, ev: Event) -> None:
        self._route(ev)

    def _on_ended(self, res: ChildResult) -> None:
        self.busy_changed.emit(False)
        if res.ok:
            self._next()
        elif res.status == "cancelled":
            self.failed.emit("Computing embeddings was cancelled (those done are kept).")
        else:
            self.failed.emit(
                res.message.strip().splitlines()[-1] if res.message.strip() else "imgreg embed failed"
            )

    def shutdown(self) -> None:
        """Kill a running child (the window is closing)."""
        if self.child.running:
            self.child.kill()
            self.child.wait(3000)
