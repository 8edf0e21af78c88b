"""Labelling new images fast: accept proposals in bulk within a calibrated bound, ask ``imgreg suggest`` which items
to label next (the Suggested filter and its keys), and Retrain from the active run on the labels as they are now.

The Label menu holds its actions; the one-item Enter accept is the window's ``accept_proposal`` action.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QInputDialog,
    QLabel,
    QMainWindow,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from engine.audit.accept import AcceptError, safe_proposals
from engine.labels.store import PredictionRow
from imgreg_gui.actions import Menus
from imgreg_gui.jobs.process import ChildProcess, ChildResult, engine_command, open_error_box
from imgreg_gui.model.editing import Editor
from imgreg_gui.model.state import AppState
from imgreg_gui.settings import set_value, settings
from imgreg_gui.words import plural

log = logging.getLogger(__name__)


SUGGEST_N_KEY = "labelling/suggest_n"
RETRAIN_EVERY_KEY = "labelling/retrain_every"


def bound_key(kind: str) -> str:
    """The QSettings key of the bulk-accept bound: a radius in pixels for points, a width for scalars."""
    return "labelling/max_width" if kind == "scalar" else "labelling/max_radius"


def suggest_command(dataset: str | Path, n: int, run: str | None = None) -> list[str]:
    """``imgreg suggest DATASET --n N [--run RUN] --json``: which unlabelled items to label next, best first."""
    args = ["suggest", str(dataset), "--n", str(n)]
    if run:
        args += ["--run", run]
    return engine_command(*args, "--json", "--control-stdin")  # Cancel keeps the embeddings computed so far


def suggested_items(summary: Any) -> list[str]:
    """The item names of a ``suggest`` summary's ``items`` (``{rank, item, reason}``), in rank order."""
    rows = summary.get("items") if isinstance(summary, dict) else None
    rows = [r for r in rows or [] if isinstance(r, dict) and isinstance(r.get("item"), str)]
    rows.sort(key=lambda r: r.get("rank", 0) if isinstance(r.get("rank"), int | float) else 0)
    return list(dict.fromkeys(r["item"] for r in rows))


def _int_setting(key: str, default: int) -> int:
    try:
        return int(str(settings().value(key, default)))
    except (TypeError, ValueError):
        return default


def _float_setting(key: str, default: float) -> float:
    try:
        return float(str(settings().value(key, default)))
    except (TypeError, ValueError):
        return default


class AcceptWithinDialog(QDialog):
    """Asks the bound of "Accept all proposals within ..." and counts, live, how many proposals it takes."""

    def __init__(self, state: AppState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        scalar = state.kind == "scalar"
        self.setWindowTitle("Accept proposals")
        self.bound = QDoubleSpinBox(self)
        self.bound.setObjectName("bound")
        self.bound.setRange(0.0, 1e6)
        self.bound.setDecimals(2)
        self.bound.setSuffix("" if scalar else " px")
        self.bound.setValue(_float_setting(bound_key(state.kind), 5.0 if scalar else 10.0))
        what = "interval width at most" if scalar else "interval radius at most"
        self.count = QLabel(self)
        self.count.setObjectName("count")
        form = QFormLayout()
        form.addRow(f"Accept predictions of unlabelled items with {what}", self.bound)
        lay = QVBoxLayout(self)
        note = QLabel(
            f"Uses run {state.active_run}'s calibrated intervals; labelled items are never touched. "
            "One undo step takes them all back."
        )
        note.setWordWrap(True)
        lay.addWidget(note)
        lay.addLayout(form)
        lay.addWidget(self.count)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel, parent=self
        )
        self.ok = buttons.button(QDialogButtonBox.StandardButton.Ok)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        lay.addWidget(buttons)
        self.rows: list[PredictionRow] = []
        self.bound.valueChanged.connect(self.preview)
        self.preview()

    def proposals(self) -> list[PredictionRow]:
        """The proposals the bound takes now (``safe_proposals``)."""
        st = self.state
        if st.dataset is None or st.store is None or not st.active_run:
            return []
        b = float(self.bound.value())
        if st.kind == "scalar":
            return safe_proposals(st.dataset, st.store, st.active_run, max_width=b)
        return safe_proposals(st.dataset, st.store, st.active_run, max_radius=b)

    def preview(self) -> None:
        """Count the proposals within the bound (or say why none can be judged)."""
        try:
            self.rows = self.proposals()
        except AcceptError as e:  # no intervals yet: Predict all with a coverage first
            self.rows, why = [], str(e)
        else:
            why = f"{plural(len(self.rows), 'proposal')} within this bound"
        n = len(self.rows)
        self.count.setText(why)
        self.ok.setText(f"Accept {n}")
        self.ok.setEnabled(n > 0)

    def accept(self) -> None:
        """Remember the bound and close."""
        set_value(bound_key(self.state.kind), float(self.bound.value()))
        super().accept()


class LabelFlow(QObject):
    """The Label menu: bulk accept, suggestions (the Suggested filter, Next / Previous suggestion), Retrain.

    ``retrain_started(run_id)`` when a fine-tune from the active run starts; ``suggested(list)`` when a suggest
    child gave its items.
    """

    suggested = Signal(list)
    retrain_started = Signal(str)

    def __init__(
        self, state: AppState, editor: Editor, window: QMainWindow, panel: Any, training: Any, menus: Menus
    ) -> None:
        super().__init__(window)
        self.state, self.editor, self.window, self.training = state, editor, window, training
        self.panel = panel  # the dataset panel: its Suggested filter choice
        self.make_suggest_command: Callable[[str, int, str | None], list[str]] = suggest_command
        self.child = ChildProcess(self)
        self.child.event.connect(self._on_event)
        self.child.ended.connect(self._on_suggested)
        self.suggest_n = _int_setting(SUGGEST_N_KEY, 20)
        self.retrain_every = _int_setting(RETRAIN_EVERY_KEY, 0)
        self.dialog: AcceptWithinDialog | None = None
        self.error_box: Any = None
        self.retraining: str | None = None  # the run a running fine-tune started from
        self._labelled_at = -1  # labelled count when the automatic retrain last started
        self._menu(menus)
        self.retrain_btn = QPushButton("Retrain")
        self.retrain_btn.setObjectName("retrain")
        self.retrain_btn.setToolTip(self.actions["retrain"].statusTip())
        self.retrain_btn.clicked.connect(lambda: self.retrain())
        training.train.add_button(self.retrain_btn)
        training.train.run_finished.connect(self._on_run_finished)
        training.runs.predictions_stored.connect(self._on_predictions_stored)
        training.train.busy_changed.connect(lambda _b: self.update_actions())
        state.records_changed.connect(self._maybe_retrain)
        state.dataset_changed.connect(self._on_dataset)
        state.active_run_changed.connect(lambda _r: self.update_actions())
        self.update_actions()

    def _menu(self, menus: Menus) -> None:
        m = menus.add("&Label", before="Training")
        self.menu = m
        rows = (
            ("accept_within", "Accept all proposals &within…", "Ctrl+Shift+Return",
             "Label every unlabelled item whose calibrated interval is within a bound with its prediction (one "
             "undo step)", self.ask_accept_within),
            ("suggest", "&Suggest next to label…", "Ctrl+Shift+G",
             "Ask imgreg suggest which unlabelled items to label next; shows them as the Suggested filter",
             self.ask_suggest),
            ("cancel_suggest", "Cancel suggestion", "", "Stop the running imgreg suggest", self.child.cancel),
            ("next_suggestion", "Next su&ggestion", "J", "Go to the next suggested item", self.next_suggestion),
            ("prev_suggestion", "Previous sugg&estion", "Shift+J", "Go to the previous suggested item",
             self.prev_suggestion),
            ("retrain", "&Retrain", "Ctrl+Shift+T",
             "Fine-tune the active run on the labels as they are now (imgreg train --from RUN), then predict "
             "every item again with calibrated intervals", self.retrain),
            ("retrain_every", "Retrain after every N new labels…", "", "Off by default", self.ask_retrain_every),
        )  # fmt: skip
        self.actions: dict[str, QAction] = {}
        for key, text, keys, tip, slot in rows:
            act = QAction(text, self.window)
            act.setObjectName(f"action_{key}")
            if keys:
                act.setShortcut(QKeySequence(keys))
            act.setToolTip(f"{tip} ({keys})" if keys else tip)
            act.setStatusTip(tip)
            act.triggered.connect(lambda _c=False, f=slot: f())
            self.window.addAction(act)  # shortcuts work with the menu bar hidden
            m.addAction(act)
            self.actions[key] = act
        m.insertSeparator(self.actions["next_suggestion"])
        m.insertSeparator(self.actions["retrain"])

    def update_actions(self) -> None:
        """Enable what the state allows."""
        st, a = self.state, self.actions
        a["accept_within"].setEnabled(st.is_open and bool(st.active_run))
        a["suggest"].setEnabled(st.is_open and not self.child.running)
        a["cancel_suggest"].setEnabled(self.child.running)
        for k in ("next_suggestion", "prev_suggestion"):
            a[k].setEnabled(bool(st.suggested))
        a["retrain"].setEnabled(self._retrain_refusal() is None)
        self.retrain_btn.setEnabled(a["retrain"].isEnabled())
        why = self._retrain_refusal()
        self.retrain_btn.setToolTip(f"Retrain: {why}" if why else a["retrain"].statusTip())

    def _on_dataset(self) -> None:
        self._labelled_at = self.state.counts.get("labelled", 0) if self.state.is_open else -1
        self.update_actions()

    # -- bulk accept -------------------------------------------------------------------------------------

    def ask_accept_within(self) -> int:
        """The bound dialog, then one undoable command labelling every proposal within it; returns how many."""
        if not self.state.is_open or not self.state.active_run:
            self.state.notify("Accepting proposals needs an active run with predictions")
            return 0
        self.dialog = AcceptWithinDialog(self.state, self.window)
        ok = self.dialog.exec() == QDialog.DialogCode.Accepted
        rows, self.dialog = self.dialog.rows, None
        return self.editor.accept_proposals(rows) if ok else 0

    # -- suggestions -------------------------------------------------------------------------------------

    def ask_suggest(self) -> bool:
        """Ask how many items to suggest (remembered), then run ``imgreg suggest``."""
        n, ok = QInputDialog.getInt(
            self.window, "Suggest next to label", "How many items", self.suggest_n, 1, 100000
        )
        return self.suggest(n) if ok else False

    def suggest(self, n: int | None = None) -> bool:
        """Run ``imgreg suggest`` for ``n`` items (the last count by default) in a child; False if it cannot."""
        ds = self.state.dataset
        if ds is None or self.child.running:
            return False
        self.suggest_n = n or self.suggest_n
        set_value(SUGGEST_N_KEY, self.suggest_n)
        self.child.start(self.make_suggest_command(str(ds.root), self.suggest_n, self.state.active_run))
        self.state.notify(f"Suggesting {self.suggest_n} items to label…", 0)
        self.update_actions()
        return True

    def _on_event(self, ev: dict) -> None:
        if isinstance(ev.get("done"), int) and isinstance(ev.get("total"), int) and ev["total"]:
            self.state.notify(
                f"Suggesting… {ev['done']} / {ev['total']} (Label ▸ Cancel suggestion stops)", 0
            )

    def _on_suggested(self, res: ChildResult) -> None:
        self.update_actions()
        if res.status == "cancelled":
            self.state.notify("Suggestion cancelled")
            return
        if not res.ok:
            self.state.notify("Suggestion failed")
            self.error_box = open_error_box(self.window, "Suggestion failed", res.message, res.stderr_tail)
            return
        names = [n for n in suggested_items(dict(res.summary)) if self.state.item(n) is not None]
        self.show_suggested(names)

    def show_suggested(self, names: list[str]) -> None:
        """Make ``names`` the Suggested filter, in this order, and go to the first."""
        st = self.state
        st.set_suggested(names)
        if names:
            self.panel.set_filter_choice("suggested")
            st.set_current(names[0])
            st.notify(f"{len(names)} suggested items: J next, Shift+J previous")
        else:
            st.notify("Nothing to suggest: every item is labelled")
        self.update_actions()
        self.suggested.emit(list(names))

    def _step(self, delta: int) -> None:
        sug, cur = self.state.suggested, self.state.current
        if not sug:
            self.state.notify("No suggestions: Label ▸ Suggest next to label… first")
            return
        i = sug.index(cur) + delta if cur in sug else (0 if delta > 0 else len(sug) - 1)
        if 0 <= i < len(sug):
            self.state.set_current(sug[i])
        else:
            self.state.notify("Last suggestion" if delta > 0 else "First suggestion")

    def next_suggestion(self) -> None:
        """Go to the next suggested item."""
        self._step(1)

    def prev_suggestion(self) -> None:
        """Go to the previous suggested item."""
        self._step(-1)

    # -- retrain -----------------------------------------------------------------------------------------

    def _retrain_refusal(self) -> str | None:
        st, tr = self.state, self.training
        if not st.is_open:
            return "no dataset open"
        if not st.active_run:
            return "no active run to fine-tune"
        rec = tr.runs.run(st.active_run)
        if rec is None or not rec.has_model:
            return f"run {st.active_run} has no model to start from"
        if tr.train.busy:
            return "a training runs"
        return None

    def retrain(self) -> bool:
        """Fine-tune from the active run on the current labels; its predictions (with intervals) follow."""
        why = self._retrain_refusal()
        if why:
            self.state.notify(f"Cannot retrain: {why}")
            return False
        run = self.state.active_run
        rec = self.training.runs.run(run)
        if not self.training.train.start(init_from=rec.run_dir):
            return False
        self.retraining = run
        self._labelled_at = self.state.counts.get("labelled", 0)
        self.retrain_started.emit(run)
        self.update_actions()
        return True

    def _on_run_finished(self, run_id: str) -> None:
        """A retrain's new run is predicted even when "Predict all items after training" is off."""
        was, self.retraining = self.retraining, None
        if was and run_id and not self.training.predict_after.isChecked():
            self.training.runs.predict(run_id)
        self.update_actions()

    def _on_predictions_stored(self, _run_id: str) -> None:
        """New predictions: proposals follow the state; the suggestions are asked again when there were some."""
        if self.state.suggested and not self.child.running:
            self.suggest(self.suggest_n)
        self.update_actions()

    def ask_retrain_every(self) -> None:
        """Ask N (0: off) for retraining after every N new labels."""
        n, ok = QInputDialog.getInt(
            self.window, "Retrain automatically", "Retrain after every N new labels (0: off)", self.retrain_every,
            0, 100000,
        )  # fmt: skip
        if ok:
            self.set_retrain_every(n)

    def set_retrain_every(self, n: int) -> None:
        """Retrain after every ``n`` new labels (0: never), remembered."""
        self.retrain_every = max(0, n)
        set_value(RETRAIN_EVERY_KEY, self.retrain_every)
        self._labelled_at = self.state.counts.get("labelled", 0)

    def _maybe_retrain(self, _names: object = None) -> None:
        n = self.state.counts.get("labelled", 0)
        if self._labelled_at < 0:
            self._labelled_at = n
        if (
            self.retrain_every
            and n - self._labelled_at >= self.retrain_every
            and self._retrain_refusal() is None
        ):
            self.state.notify(
                f"{n - self._labelled_at} new labels: retraining from run {self.state.active_run}"
            )
            self.retrain()
