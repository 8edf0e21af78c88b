"""Label editing over the app state: undoable corrections, nudges, accept / revert / verify, undo and redo.

Every change goes through ``imgreg_gui.model.commands`` onto one ``QUndoStack``; the store tells the state what changed.
"""

from __future__ import annotations

import logging

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QUndoStack

from engine.core import Label
from engine.labels.limits import check_label
from engine.labels.store import PredictionRow
from imgreg_gui.model import commands
from imgreg_gui.model.state import AppState

log = logging.getLogger(__name__)


class Editor(QObject):
    """Edits the state's current item through the undo stack; ``edited()`` after every attempt (state may move),
    ``refused(reason)`` when a new label breaks the dataset's label rule (nothing is saved then)."""

    edited = Signal()
    refused = Signal(str)

    def __init__(self, state: AppState, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.undo_stack = QUndoStack(self)
        self.nudge_session = 0
        self.opening = False  # a dataset is being indexed: edits wait until its store is open
        state.current_changed.connect(self._new_session)
        state.dataset_changed.connect(self.undo_stack.clear)

    def _new_session(self, _name: object = None) -> None:
        self.nudge_session += 1

    def _editable(self) -> str | None:
        st = self.state
        if st.store is None or st.current is None:
            st.notify("Wait until the dataset has finished opening" if self.opening else "No item")
            return None
        return st.current

    def refusal(self, name: str, label: Label) -> str | None:
        """Why ``label`` may not become ``name``'s label (``engine.labels.limits``), said to the user; or None."""
        ds = self.state.dataset
        item = self.state.item(name)
        reason = check_label(ds, item or name, label) if ds is not None else None
        if reason:
            self.state.notify(f"Not saved: {reason}", 10000)
            self.refused.emit(reason)
            self.edited.emit()
        return reason

    def push(self, cmd: commands.StoreCommand | commands.BatchCommand) -> None:
        """Apply ``cmd`` through the undo stack; a failed write is reported and the view resynced."""
        self.undo_stack.push(cmd)
        self._check(cmd)

    def _check(self, cmd: object) -> None:
        err = cmd.error if isinstance(cmd, commands.StoreCommand | commands.BatchCommand) else None
        if err is not None:  # disk full, locked or read-only database: say so, show the stored state
            if self.state.current is not None:
                self.state.refresh_records([self.state.current])
            self.state.notify(f"Could not save: {err}", 15000)
        self.edited.emit()

    def set_label(self, name: str, label: Label, text: str = "", action: str = "") -> None:
        """Correct ``name``'s label (a drag, a placement, a typed value)."""
        if self.state.store is None or name != self.state.current or self.refusal(name, label):
            return
        before = self.state.record(name)
        self.push(
            commands.correct_command(
                self.state.store, name, tuple(label), text=text or "", before=before, action=action
            )
        )

    def set_value(self, value: float) -> None:
        """Set the current scalar item's value (no edit when it is unchanged)."""
        name = self._editable()
        if name is None or self.state.kind != "scalar":
            return
        eff = self.state.effective(name)
        if eff is None or abs(eff[0] - value) > 1e-9:
            self.set_label(name, (value,), text=f"Set value of {name}", action="Set value")

    def nudge(self, dx: float, dy: float, point: int = 0) -> None:
        """Move the current label's ``point`` by (dx, dy) pixels; consecutive nudges are one undo step.

        For a scalar item, Up/Down change the value by -dy (Up adds 1, Shift+Up adds 10).
        """
        name, store = self._editable(), self.state.store
        if name is None or store is None:
            return
        label = self.state.effective(name)
        before = self.state.record(name)
        if self.state.kind == "scalar":
            if label is not None and dy and not self.refusal(name, (label[0] - dy,)):
                self.push(commands.NudgeCommand(store, name, (label[0] - dy,), self.nudge_session, before))
            return
        if label is None or len(label) < 2:
            self.state.notify("No label to nudge: click the image to place one")
            return
        new = list(label)
        i = 2 * min(point, len(label) // 2 - 1)
        new[i] += dx
        new[i + 1] += dy
        if self.refusal(name, tuple(new)):
            return
        self.push(commands.NudgeCommand(store, name, tuple(new), self.nudge_session, before))

    def accept_prediction(self) -> None:
        """Use the active run's prediction as the current item's label."""
        name, store = self._editable(), self.state.store
        pred = self.state.prediction(name)
        if name is None or store is None or pred is None:
            if name:
                self.state.notify("No prediction for this item: choose a run with predictions first")
            return
        if self.refusal(name, tuple(pred.pred)):
            return
        before = self.state.record(name)
        self.push(commands.correct_command(store, name, tuple(pred.pred), "prediction", before=before))

    def accept_proposal(self) -> None:
        """Enter: make the current unlabelled item's proposal (the active run's prediction) its label; a labelled
        item keeps its label (Ctrl+Enter replaces it with the prediction on purpose)."""
        name = self._editable()
        if name is None:
            return
        if self.state.proposal(name) is None:
            why = (
                "it has a label (Ctrl+Enter replaces it)"
                if self.state.effective(name) is not None
                else ("the active run has no prediction for it")
            )
            self.state.notify(f"No proposal for {name}: {why}")
            return
        self.accept_prediction()

    def accept_proposals(self, rows: list[PredictionRow]) -> int:
        """Label every still-unlabelled item of ``rows`` with its prediction as ONE undo step; returns how many."""
        store = self.state.store
        if store is None:
            return 0
        labels = {
            r.item: tuple(r.pred)
            for r in rows
            if self.state.item(r.item) is not None and self.state.effective(r.item) is None
        }
        ds = self.state.dataset
        if ds is not None:
            labels = {
                n: lab for n, lab in labels.items() if not check_label(ds, self.state.item(n) or n, lab)
            }
        if not labels:
            self.state.notify("No proposals to accept")
            return 0
        befores = {n: r for n in labels if (r := self.state.record(n)) is not None}
        self.push(commands.BatchCommand(store, labels, befores))
        self.state.notify(f"Accepted {len(labels)} proposals (one undo step)")
        return len(labels)

    def accept_suggestion(self) -> None:
        """Move the current item's label to where its doubt expects it (one undoable correction)."""
        name, store = self._editable(), self.state.store
        if name is None or store is None:
            return
        want = self.state.annotations(name).expected
        if want is None:
            self.state.notify("No suggestion for this item: nothing doubts its label")
            return
        if self.refusal(name, tuple(want)):
            return
        text = f"Accept suggestion for {name}"
        self.push(
            commands.correct_command(store, name, tuple(want), text=text, before=self.state.record(name))
        )

    def revert_label(self) -> None:
        """Go back to the label from the dataset's own files."""
        name, store = self._editable(), self.state.store
        if name is None or store is None:
            return
        rec = self.state.record(name)
        if rec is None or rec.source == "original":
            self.state.notify("This item already has its original label")
            return
        self.push(commands.revert_command(store, name, rec))

    def mark_verified(self) -> None:
        """Toggle the verified mark of the current item."""
        name, store = self._editable(), self.state.store
        if name is None or store is None:
            return
        rec = self.state.record(name) or store.record(name)
        self.push(commands.verify_command(store, name, not rec.verified, rec))

    def undo(self) -> None:
        """Undo the last edit, showing the item it touched."""
        stack = self.undo_stack
        cmd = stack.command(stack.index() - 1) if stack.canUndo() else None
        self._show_item_of(cmd)
        stack.undo()
        self._check(cmd)

    def redo(self) -> None:
        """Redo the edit just undone, showing the item it touches."""
        stack = self.undo_stack
        cmd = stack.command(stack.index()) if stack.canRedo() else None
        self._show_item_of(cmd)
        stack.redo()
        self._check(cmd)

    def _show_item_of(self, cmd: object) -> None:
        item = cmd.item if isinstance(cmd, commands.StoreCommand) else None
        if item is not None and item != self.state.current:
            self.state.set_current(item)
