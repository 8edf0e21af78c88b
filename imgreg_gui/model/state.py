"""The app model: the one owner of the open dataset, its store and records, the current item, the active run and
its predictions, and the item filter; every change is a signal (napari's ViewerModel, SLEAP's GuiState).

Widgets never keep copies of this state: they read it from here and repaint when a signal says it changed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from engine.audit.findings import Finding
from engine.core import Dataset, Item, Label, label_distance
from engine.labels.store import LabelRecord, LabelStore, PredictionRow
from imgreg_gui.model import doubts

SOURCES = ("original", "corrected", "prediction")


@dataclass(frozen=True)
class Annotations:
    """What the canvas draws over one item: its label, the active run's prediction, and how to describe them."""

    label: Label | None = None
    pred: Label | None = None
    source: str = "original"
    verified: bool = False
    run_id: str | None = None
    kind: str = "point"
    note: str | None = None
    stale: bool = False  # the image changed on disk since the prediction was made
    expected: Label | None = None  # where the doubt's strongest finding expects the label (the ghost marker)
    why: str = ""  # the doubt's reasons in words, one per line
    interval: tuple[float, ...] | None = None  # the prediction's interval: radii per point, or (lo, hi)
    original: Label | None = None  # the dataset's own label while a correction replaces it
    proposal: bool = False  # an unlabelled item with a prediction: Enter accepts it as the label


def counts_of(records: Iterable[LabelRecord]) -> dict[str, int]:
    """What ``LabelStore.counts`` says, from records already read: items, labelled, corrected, verified."""
    c = {"items": 0, "labelled": 0, "corrected": 0, "verified": 0}
    for r in records:
        _count(c, r, 1)
    return c


def _count(c: dict[str, int], r: LabelRecord, sign: int) -> None:
    c["items"] += sign
    c["labelled"] += sign * (r.effective is not None)
    c["corrected"] += sign * (r.source != "original")
    c["verified"] += sign * r.verified


class AppState(QObject):
    """The open dataset and everything the app shows of it; widgets subscribe to its signals.

    Signals: ``opening(Path)`` indexing of a folder started (items follow in ``items_added(list[Item])``),
    ``dataset_changed()`` a dataset and its store are ready, or closed (``dataset`` None), ``records_changed(list)``
    label records of those names changed (any store edit, from any thread, delivered on the GUI thread),
    ``current_changed(object)`` the current item's name (or None), ``active_run_changed(object)`` the active run
    (predictions already loaded), ``item_filter_changed()`` the item filter set changed, ``message(str, int)`` a
    transient line for the status bar (text, milliseconds).
    """

    opening = Signal(object)
    items_added = Signal(list)
    dataset_changed = Signal()
    records_changed = Signal(list)
    current_changed = Signal(object)
    active_run_changed = Signal(object)
    item_filter_changed = Signal()
    doubts_changed = Signal()
    message = Signal(str, int)
    _store_changed = Signal(list)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.root: Path | None = None
        self.dataset: Dataset | None = None
        self.store: LabelStore | None = None
        self.items: list[Item] = []
        self.records: dict[str, LabelRecord] = {}
        self.current: str | None = None
        self.active_run: str | None = None
        self.preds: dict[str, PredictionRow] = {}
        self.errors: dict[str, float] = {}
        self.item_filter: frozenset[str] | None = None
        self.item_filter_label = ""
        self.suggested: list[str] = []  # ``imgreg suggest``'s items, best first (the Suggested filter)
        self.orphans: dict[str, LabelRecord] = {}  # corrected/verified records whose file vanished
        self.stale: set[str] = set()  # items of the active run whose image changed since predicted
        self.counts: dict[str, int] = counts_of(())  # kept up to date from the records edits return
        self.findings: list[Finding] = []  # the audit's, for the open dataset
        self.doubts: dict[str, doubts.Doubt] = {}  # the audit's findings and the active run's, one per item
        self._run_found: dict[str, list[Finding]] = {}  # the active run's findings by item
        self._index_of: dict[str, int] = {}
        self._version = 0  # bumped by every change the annotations depend on
        self._ann: tuple[int, str, Annotations] | None = None
        self._store_changed.connect(self.take_records)

    # -- opening and closing ---------------------------------------------------------------------------

    def begin_open(self, root: str | Path) -> None:
        """Forget the open dataset and start on ``root`` (its items arrive through ``add_items``)."""
        self.close()
        self.root = Path(root).expanduser().resolve()
        self.opening.emit(self.root)

    def add_items(self, items: Iterable[Item]) -> list[Item]:
        """Items parsed so far, in dataset order (while indexing); returns them."""
        new = list(items)
        start = len(self.items)
        for i, it in enumerate(new):
            self._index_of[it.name] = start + i
        self.items.extend(new)
        self._version += 1
        if new:
            self.items_added.emit(new)
        return new

    def set_opened(self, ds: Dataset, store: LabelStore | None, records: dict[str, LabelRecord]) -> None:
        """The dataset is indexed and its store open: take them over and say so."""
        self.dataset, self.store = ds, store
        self.root = self.root or Path(ds.root)
        self.items = list(ds.items)
        self._index_of = {it.name: i for i, it in enumerate(self.items)}
        self.records = dict(records)
        self.counts = counts_of(self.records.values())
        self.findings = []
        self._find_orphans()
        self._recompute_errors()
        self._recompute_doubts()
        if store is not None:
            store.subscribe(self._store_listener, records=True)
        self.dataset_changed.emit()

    def reindex(self, ds: Dataset, records: dict[str, LabelRecord]) -> None:
        """The open dataset re-indexed (File > Reload): new items and records, the same store; the current item
        stays when it still exists."""
        self.dataset, self.items = ds, list(ds.items)
        self._index_of = {it.name: i for i, it in enumerate(self.items)}
        self.records = dict(records)
        self.counts = counts_of(self.records.values())
        if self.current is not None and self.current not in self._index_of:
            self.current = None
        self._find_orphans()
        self._recompute_doubts()
        self.dataset_changed.emit()

    def _find_orphans(self) -> None:
        self.orphans = {
            n: r
            for n, r in self.records.items()
            if n not in self._index_of and (r.source != "original" or r.verified)
        }

    def close(self) -> None:
        """Close the store (edits are already saved) and forget everything."""
        if self.store is not None:
            self.store.unsubscribe(self._store_listener)
            self.store.close()
        had = self.dataset is not None or bool(self.items)
        self.root = self.dataset = self.store = None
        self.items, self.records, self.preds, self.errors, self._index_of = [], {}, {}, {}, {}
        self.orphans, self.stale = {}, set()
        self.counts, self.findings, self.doubts, self._run_found = counts_of(()), [], {}, {}
        self._version += 1
        self.current = self.active_run = None
        self.item_filter, self.item_filter_label = None, ""
        self.suggested = []
        if had:
            self.dataset_changed.emit()

    def _store_listener(self, records: list[LabelRecord]) -> None:
        self._store_changed.emit(list(records))  # any thread -> queued to the GUI thread

    # -- reading ---------------------------------------------------------------------------------------

    @property
    def kind(self) -> str:
        """``point`` or ``scalar`` (``point`` until a dataset is open)."""
        return self.dataset.kind if self.dataset is not None else "point"

    @property
    def is_open(self) -> bool:
        """Whether a dataset and its store are ready (edits possible)."""
        return self.dataset is not None and self.store is not None

    def item(self, name: str | None) -> Item | None:
        """The item called ``name`` or None."""
        i = self._index_of.get(name) if name is not None else None
        return None if i is None else self.items[i]

    def record(self, name: str) -> LabelRecord | None:
        """The item's label record, if known."""
        return self.records.get(name)

    def effective(self, name: str) -> Label | None:
        """The item's effective label: from its record, else the label read from the dataset."""
        rec = self.records.get(name)
        if rec is not None:
            return rec.effective
        it = self.item(name)
        return None if it is None else it.label

    def prediction(self, name: str | None) -> PredictionRow | None:
        """The active run's prediction of ``name``."""
        return self.preds.get(name) if name else None

    def proposal(self, name: str | None) -> PredictionRow | None:
        """The active run's prediction of ``name`` when it has no label yet (a proposal), else None."""
        pred = self.prediction(name)
        return pred if pred is not None and name is not None and self.effective(name) is None else None

    def doubt(self, name: str | None) -> doubts.Doubt | None:
        """The merged doubt about ``name``'s label (None: nothing doubts it)."""
        return self.doubts.get(name) if name else None

    def annotations(self, name: str | None = None) -> Annotations:
        """What the canvas draws for ``name`` (the current item by default); built once per change."""
        name = name or self.current
        if name is None or self.item(name) is None:
            return Annotations(kind=self.kind)
        if self._ann is not None and self._ann[:2] == (self._version, name):
            return self._ann[2]
        ann = self._annotations(name)
        self._ann = (self._version, name, ann)
        return ann

    def _annotations(self, name: str) -> Annotations:
        it = self.item(name)
        rec = self.records.get(name)
        pred = self.preds.get(name)
        d = self.doubts.get(name)
        corrected = rec is not None and rec.source != "original" and rec.original != rec.effective
        return Annotations(
            self.effective(name),
            tuple(pred.pred) if pred else None,
            rec.source if rec else "original",
            bool(rec and rec.verified),
            self.active_run,
            self.kind,
            it.problem if it is not None else None,
            pred is not None and name in self.stale,
            doubts.expected(d),
            doubts.why(d),
            pred.interval if pred is not None else None,
            rec.original if corrected and rec is not None else None,
            pred is not None and self.effective(name) is None,
        )

    def passes_filter(self, name: str) -> bool:
        """Whether the item filter set (if any) lets ``name`` through."""
        return self.item_filter is None or name in self.item_filter

    # -- changing ----------------------------------------------------------------------------------------

    def set_current(self, name: str | None) -> bool:
        """Make ``name`` the current item; returns whether it changed (``current_changed`` only then)."""
        if name is not None and self.item(name) is None:
            self.notify(f"No item named {name}")
            return False
        if name == self.current:
            return False
        self.current = name
        self._version += 1
        self.current_changed.emit(name)
        return True

    def set_active_run(self, run_id: str | None) -> None:
        """Show run ``run_id``'s predictions from the store (None hides predictions); always re-reads them."""
        preds = self.store.predictions(run_id) if self.store is not None and run_id else {}
        self.show_predictions(run_id, preds)

    def show_predictions(self, run_id: str | None, preds: dict[str, PredictionRow]) -> None:
        """Make ``run_id`` active with these predictions (``set_active_run`` reads them from the store)."""
        self.active_run = run_id
        self.preds = dict(preds)
        self.stale = self.store.stale_predictions(run_id) if self.store is not None and run_id else set()
        self._recompute_errors()
        self._recompute_doubts()
        self.active_run_changed.emit(run_id)

    def refresh_records(self, names: list[str]) -> None:
        """Re-read these items' records from the store and say they changed (after a failed write: what is saved)."""
        if self.store is not None:
            self.take_records([self.store.record(n) for n in names if n in self._index_of])

    def take_records(self, records: list[LabelRecord]) -> None:
        """Records as the store wrote them (no re-read): keep them, the counts, errors and doubts; say so."""
        names = []
        for r in records:
            old = self.records.get(r.item)
            if old is not None:
                _count(self.counts, old, -1)
            _count(self.counts, r, 1)
            self.records[r.item] = r
            if r.item in self._index_of:
                names.append(r.item)
                self._update_error(r.item)
        if names:
            if self.preds:
                self._recompute_doubts(names)  # only these items' run evidence can have changed
            self._version += 1
            self.records_changed.emit(names)

    def set_findings(self, findings: list[Finding]) -> None:
        """The audit's findings for the open dataset (from a worker): merged with the run's into ``doubts``."""
        self.findings = list(findings)
        self._recompute_doubts([])  # the run's findings stand

    def _recompute_doubts(self, names: list[str] | None = None) -> None:
        """Merge the audit's findings with the run's (those of ``names`` found again, or all of them)."""
        found = doubts.run_findings(self.active_run, self.preds, self.effective, self.kind, names)
        if names is None:
            self._run_found = {}
        for n in names or ():
            self._run_found.pop(n, None)
        for f in found:
            self._run_found.setdefault(f.item, []).append(f)
        run = [f for fs in self._run_found.values() for f in fs]
        self.doubts = {d.item: d for d in doubts.merge(self.findings, run) if d.item in self._index_of}
        self._version += 1
        self.doubts_changed.emit()

    def set_suggested(self, names: list[str]) -> None:
        """``imgreg suggest``'s items, best first: the item list's Suggested filter shows them in this order."""
        self.suggested = list(names)
        self.item_filter_changed.emit()

    def set_item_filter(self, names: Iterable[str] | None, label: str = "") -> None:
        """Show only ``names`` in the item list (None: every item); ``label`` says where the set came from."""
        self.item_filter = None if names is None else frozenset(names)
        self.item_filter_label = label if names is not None else ""
        self.item_filter_changed.emit()

    def notify(self, text: str, ms: int = 4000) -> None:
        """A transient line for the status bar."""
        self.message.emit(text, ms)

    # -- errors ------------------------------------------------------------------------------------------

    def _recompute_errors(self) -> None:
        self.errors = {}
        for name in self.preds:
            self._update_error(name)

    def _update_error(self, name: str) -> None:
        row = self.preds.get(name)
        err = label_distance(self.effective(name), row.pred) if row is not None else None
        if err is None and row is not None and row.error is not None:
            err = float(row.error)
        if err is None:
            self.errors.pop(name, None)
        else:
            self.errors[name] = err
