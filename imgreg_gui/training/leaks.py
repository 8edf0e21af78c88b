"""The train panel's validation-leak warning: near-duplicates split across training and validation, found off the
GUI thread from stored embeddings (``engine.runs.duplicates``, no torch); and the ``auto`` size of a dataset."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal

from engine.core import Dataset, Item, Label
from engine.data.shape import auto_size
from engine.data.split import split_indices
from engine.runs.duplicates import Pair, find_duplicates, split_leaks
from engine.runs.embeddings import EMBED_DIR, load_embeddings
from imgreg_gui.jobs.tasks import Task

NO_EMBEDDINGS = (
    "Near-duplicate check: no embeddings yet (Find similar, or imgreg embed DATASET, computes them)."
)


@dataclass
class Leaks:
    """Near-duplicate pairs with one item in training and the other in validation, for one split."""

    pairs: list[Pair]
    source: str
    valid_groups: list[str] = field(default_factory=list)
    random_items: bool = False  # no groups ticked: the split imgreg train draws (seeded)

    def text(self) -> str:
        """The warning line (``''`` when nothing leaks)."""
        if not self.pairs:
            return ""
        p = self.pairs[0]
        n = len(self.pairs)
        split = "the random split" if self.random_items else "this validation split"
        return (
            f"⚠ {n} near-duplicate pair{' leaks' if n == 1 else 's leak'} across {split}, e.g. {p.a} ↔ {p.b} "
            f"(distance {p.distance:.2f}): validation scores will read too good."
        )


def newest_embeddings(store_dir: Path | str) -> Path | None:
    """The most recently written embeddings file of a store (None when there is none)."""
    files = [p for p in (Path(store_dir) / EMBED_DIR).glob("*.npz") if p.is_file()]
    return max(files, key=lambda p: p.stat().st_mtime_ns) if files else None


def valid_split(
    items: list[Item],
    labels: dict[str, Label],
    valid_groups: list[str],
    valid_pct: float = 0.2,
    seed: int = 42,
) -> tuple[list[str], set[str] | None]:
    """(validation groups, validation item names or None) the way ``imgreg train`` splits the labelled items
    (``engine.data.split.split_indices``, the rule training uses); with a single group the names are returned."""
    usable = [it for it in items if not it.problem and labels.get(it.name) is not None]
    if valid_groups:
        return list(valid_groups), None
    if len(usable) < 2:
        return [], set()
    _, valid, vgroups = split_indices([it.group for it in usable], None, valid_pct, seed)
    return (vgroups, None) if vgroups else ([], {usable[i].name for i in valid})


def check_leaks(
    store_dir: Path | str,
    items: list[Item],
    labels: dict[str, Label],
    valid_groups: list[str],
    cache: dict[Any, tuple[list[Pair], str]] | None = None,
) -> Leaks | None:
    """The near-duplicates leaking across the split ``imgreg train`` would make (None without embeddings).

    ``cache`` keeps the pairs of an unchanged embeddings file, so ticking another group only re-splits them.
    """
    path = newest_embeddings(store_dir)
    if path is None:
        return None
    key = (str(path), path.stat().st_mtime_ns, len(items))
    if cache is not None and key in cache:
        pairs, source = cache[key]
    else:
        emb = load_embeddings(path)
        if emb is None or len(emb) == 0:
            return None
        groups = {it.name: it.group for it in items}
        present = [n for n in emb.names if n in groups]
        pairs = find_duplicates(emb.subset(present), groups, labels)
        source = str(emb.meta.get("source") or path.stem)
        if cache is not None:
            cache.clear()
            cache[key] = (pairs, source)
    vg, names = valid_split(items, labels, valid_groups)
    if names is None:
        return Leaks(split_leaks(pairs, vg), source, vg, random_items=not valid_groups)
    return Leaks([p for p in pairs if (p.a in names) != (p.b in names)], source, [], random_items=True)


class LeakWatch(QObject):
    """Checks the dataset's split for leaking near-duplicates and its ``auto`` size, each off the GUI thread.

    ``set_data`` with the open dataset, then ``check(valid_groups)`` (debounced); ``result(Leaks | None)`` and
    ``auto_size((h, w))`` follow. ``text`` is the line to show.
    """

    result = Signal(object)
    auto_size_found = Signal(object)

    def __init__(self, parent: QObject | None = None, delay_ms: int = 250) -> None:
        super().__init__(parent)
        self.store_dir: Path | None = None
        self.items: list[Item] = []
        self.labels: dict[str, Label] = {}
        self.groups: list[str] = []
        self.leaks: Leaks | None = None
        self.text = ""
        self.workers: set[Task] = set()
        self.cache: dict[Any, tuple[list[Pair], str]] = {}
        self._gen = 0
        self.timer = QTimer(self, singleShot=True, interval=delay_ms)
        self.timer.timeout.connect(self._run)

    def set_data(self, ds: Dataset | None, store_dir: Path | str | None, labels: dict[str, Label]) -> None:
        """Watch this dataset (None: nothing open) and compute its ``auto`` size in the background."""
        self.store_dir = None if store_dir is None else Path(store_dir)
        self.items = list(ds.items) if ds is not None else []
        self.labels = dict(labels)
        self.leaks, self.text = None, ""
        self.cache = {}
        self._gen += 1
        if ds is not None:
            gen = self._gen

            def found(size: object) -> None:
                if gen == self._gen:
                    self.auto_size_found.emit(size)

            self._spawn(lambda: auto_size(ds), found)

    def check(self, valid_groups: list[str]) -> None:
        """Check the split these groups make (debounced; the result arrives as ``result``)."""
        self.groups = list(valid_groups)
        self.timer.start()

    def _run(self) -> None:
        self._gen += 1
        if self.store_dir is None:  # no dataset open: nothing to say
            self.leaks, self.text = None, ""
            self.result.emit(None)
            return
        gen, args = self._gen, (self.store_dir, self.items, self.labels, self.groups, self.cache)

        def show(res: Any) -> None:
            if gen == self._gen:
                self._show(res)

        self._spawn(lambda: check_leaks(*args), show)

    def _show(self, leaks: Leaks | None) -> None:
        self.leaks = leaks
        self.text = NO_EMBEDDINGS if leaks is None else leaks.text()
        self.result.emit(leaks)

    def _spawn(self, fn: Callable[[], Any], then: Callable[[Any], Any]) -> None:
        w = Task(fn, self)
        self.workers.add(w)
        w.done.connect(then)
        w.failed.connect(lambda msg: None)  # an unreadable embeddings file: no warning rather than a crash
        w.finished.connect(lambda: self.workers.discard(w))
        w.finished.connect(w.deleteLater)
        w.start()

    def wait(self, ms: int = 5000) -> None:
        """Wait for the background checks (tests, shutdown)."""
        for w in list(self.workers):
            w.wait(ms)
