"""Label editing for the main window: store notifications, undoable corrections, nudges, accept/revert/verify."""

from __future__ import annotations

import logging

from engine.core import Label
from imgreg_gui import commands

log = logging.getLogger(__name__)


class EditingMixin:
    """The editing half of ``MainWindow``: every change goes through ``commands`` onto ``undo_stack``."""

    def _store_listener(self, names: list[str]) -> None:
        self._store_changed.emit(list(names))

    def _on_store_changed(self, names: list[str]) -> None:
        if self.store is None:
            return
        self.panel.model.update_records({n: self.store.record(n) for n in names})
        if self._current in names:
            self._show_annotations()
        self.status.saved(names)
        self._update_summary()
        self._update_actions()
        self.labels_changed.emit(list(names))

    def _editable(self) -> str | None:
        if self.store is None or self._current is None:
            self.status.message("Wait until the dataset has finished opening" if self._worker else "No item")
            return None
        return self._current

    def _push(self, cmd: commands.StoreCommand) -> None:
        """Apply ``cmd`` through the undo stack; a failed write is reported and the view resynced."""
        self.undo_stack.push(cmd)
        self._check(cmd)

    def _check(self, cmd) -> None:
        err = getattr(cmd, "error", None)
        if err is not None:  # disk full, locked or read-only database: say so, show the stored state
            self.status.message(f"Could not save: {err}", 15000)
            if self._current is not None:
                self.refresh_item(self._current)
        self._update_actions()

    def _on_label_edited(self, name: str, label: Label) -> None:
        if self.store is None or name != self._current:
            return
        self._push(commands.correct_command(self.store, name, tuple(label)))

    def _on_value_edited(self) -> None:
        name = self._editable()
        if name is None or self.dataset is None or self.dataset.kind != "scalar":
            return
        value = float(self.value_box.value())
        eff = self.panel.model.effective(name)
        if eff is None or abs(eff[0] - value) > 1e-9:
            self._push(commands.correct_command(self.store, name, (value,), text=f"Set value of {name}"))

    def nudge(self, dx: float, dy: float) -> None:
        """Move the current label (its active point) by (dx, dy) pixels; consecutive nudges are one undo step.

        For a scalar item, Up/Down change the value by -dy (Up adds 1, Shift+Up adds 10).
        """
        name = self._editable()
        if name is None:
            return
        label = self.panel.model.effective(name)
        if self.canvas.kind == "scalar":
            if label is not None and dy:
                self._push(commands.NudgeCommand(self.store, name, (label[0] - dy,), self._nudge_session))
            return
        if label is None or len(label) < 2:
            self.status.message("No label to nudge: click the image to place one")
            return
        new = list(label)
        i = 2 * min(self.canvas.active_point, len(label) // 2 - 1)
        new[i] += dx
        new[i + 1] += dy
        self._push(commands.NudgeCommand(self.store, name, tuple(new), self._nudge_session))

    def next_point(self) -> None:
        """Select the next point of a multi-point label for nudging."""
        label = self.canvas.label
        if label and len(label) > 2:
            self.canvas.active_point = (self.canvas.active_point + 1) % (len(label) // 2)
            self._show_annotations()

    def accept_prediction(self) -> None:
        """Use the active run's prediction as the current item's label."""
        name = self._editable()
        pred = self.panel.model.preds.get(name) if name else None
        if name is None or pred is None:
            if name:
                self.status.message("No prediction for this item: choose a run with predictions first")
            return
        self._push(commands.correct_command(self.store, name, tuple(pred.pred), source="prediction"))

    def revert_label(self) -> None:
        """Go back to the label from the dataset's own files."""
        name = self._editable()
        if name is None:
            return
        rec = self.store.record(name)
        if rec.source == "original":
            self.status.message("This item already has its original label")
            return
        self._push(commands.revert_command(self.store, name))

    def mark_verified(self) -> None:
        """Toggle the verified mark of the current item."""
        name = self._editable()
        if name is None:
            return
        self._push(commands.verify_command(self.store, name, not self.store.record(name).verified))

    def toggle_place_mode(self, on: bool) -> None:
        """Arm or disarm 'the next click places the label'."""
        self.canvas.place_mode = on and self.store is not None
        if on:
            self.status.message("Click the image to put the label there (Esc cancels)")

    def undo(self) -> None:
        """Undo the last edit, showing the item it touched."""
        cmd = self.undo_stack.command(self.undo_stack.index() - 1) if self.undo_stack.canUndo() else None
        if cmd is not None and getattr(cmd, "item", None) not in (None, self._current):
            self.go_to_item(cmd.item)
        self.undo_stack.undo()
        self._check(cmd)

    def redo(self) -> None:
        """Redo the edit just undone, showing the item it touches."""
        cmd = self.undo_stack.command(self.undo_stack.index()) if self.undo_stack.canRedo() else None
        if cmd is not None and getattr(cmd, "item", None) not in (None, self._current):
            self.go_to_item(cmd.item)
        self.undo_stack.redo()
        self._check(cmd)
