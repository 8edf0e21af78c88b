"""Undoable label edits: QUndoCommands that call the LabelStore and restore exact earlier states on undo."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from PySide6.QtGui import QUndoCommand

from engine.core import Label
from engine.labels.store import LabelRecord, LabelStore

NUDGE_ID = 1001
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class State:
    """What ``LabelStore.set_state`` restores: the current label, its source and the verified flag."""

    current: Label | None
    source: str
    verified: bool

    @classmethod
    def of(cls, rec: LabelRecord) -> State:
        """The restorable state of a record."""
        return cls(rec.current, rec.source, rec.verified)


class StoreCommand(QUndoCommand):
    """One edit of one item: ``apply(store)`` the first time, then exact before/after states.

    The first ``redo`` runs the real store call (``correct``, ``revert``, ``set_verified``) so the history says
    what happened; undo and later redos use ``set_state`` with the states seen around that first call.
    """

    def __init__(
        self,
        store: LabelStore,
        item: str,
        text: str,
        apply: Callable[[LabelStore], LabelRecord],
        action: str = "",
        before: LabelRecord | None = None,
    ) -> None:
        super().__init__(text)
        self.action = action or text  # what the Edit menu calls it: "Undo Move label"
        self.store = store
        self.item = item
        self._apply = apply
        # The caller's copy of the record (the app state's) saves reading the row again.
        self.before = State.of(before if before is not None else store.record(item))
        self.after: State | None = None
        self.error: Exception | None = None

    def redo(self) -> None:
        """Apply the edit (first time) or restore the state after it; a failed first write is dropped."""
        try:
            if self.after is None:
                self.after = State.of(self._apply(self.store))
            else:
                self._restore(self.after)
            self.error = None
        except Exception as e:  # Qt would swallow it: keep it for the window to report instead
            log.exception("label edit failed: %s", self.text())
            self.error = e
            if self.after is None:
                self.setObsolete(True)  # QUndoStack.push then discards the command

    def undo(self) -> None:
        """Restore the state from before the edit."""
        try:
            self._restore(self.before)
            self.error = None
        except Exception as e:
            log.exception("undo failed: %s", self.text())
            self.error = e

    def _restore(self, state: State) -> None:
        self.store.set_state(self.item, state.current, state.source, state.verified)


def correct_command(
    store: LabelStore,
    item: str,
    label: Label,
    source: str = "corrected",
    text: str = "",
    before: LabelRecord | None = None,
    action: str = "",
) -> StoreCommand:
    """Set a new label (a drag, a click, a typed value; ``source='prediction'`` to accept a prediction)."""
    action = action or ("Accept prediction" if source == "prediction" else "Move label")
    text = text or (f"Accept prediction for {item}" if source == "prediction" else f"Move label of {item}")
    return StoreCommand(store, item, text, lambda s: s.correct(item, label, source=source), action, before)


def revert_command(store: LabelStore, item: str, before: LabelRecord | None = None) -> StoreCommand:
    """Drop the correction so the original label applies again."""
    return StoreCommand(
        store, item, f"Revert {item} to original", lambda s: s.revert(item), "Revert to original", before
    )


def verify_command(
    store: LabelStore, item: str, verified: bool, before: LabelRecord | None = None
) -> StoreCommand:
    """Set or clear the verified flag."""
    text = f"Mark {item} verified" if verified else f"Clear verified mark of {item}"
    action = "Mark verified" if verified else "Clear verified mark"
    return StoreCommand(store, item, text, lambda s: s.set_verified(item, verified), action, before)


class NudgeCommand(StoreCommand):
    """A keyboard nudge; consecutive nudges of the same item in the same session merge into one undo step."""

    def __init__(
        self, store: LabelStore, item: str, label: Label, session: int, before: LabelRecord | None = None
    ) -> None:
        text = f"Nudge label of {item}"
        super().__init__(store, item, text, lambda s: s.correct(item, label), "Nudge label", before)
        self.session = session

    def id(self) -> int:
        """Nudges share a merge id."""
        return NUDGE_ID

    def mergeWith(self, other: QUndoCommand) -> bool:
        """Absorb a following nudge of the same item and session (it has already been applied)."""
        if not isinstance(other, NudgeCommand) or other.item != self.item or other.session != self.session:
            return False
        if other.after is None or self.after is None:
            return False
        self.after = other.after
        return True


class BatchCommand(QUndoCommand):
    """Many items labelled at once (Accept all proposals within ...): one undo step restores every one of them.

    The first ``redo`` runs ``store.correct`` per item so each history row says what happened; undo and later
    redos restore the exact states seen around it. Items that fail to save are dropped and named in ``error``.
    """

    def __init__(
        self,
        store: LabelStore,
        labels: dict[str, Label],
        befores: dict[str, LabelRecord],
        source: str = "prediction",
        text: str = "",
    ) -> None:
        super().__init__(text or f"Accept {len(labels)} proposals")
        self.action = "Accept proposals"
        self.store = store
        self.item: str | None = None  # no single item to show on undo
        self.labels = dict(labels)
        self.source = source
        self.before = {n: State.of(befores[n]) if n in befores else State.of(store.record(n)) for n in labels}
        self.after: dict[str, State] | None = None
        self.error: Exception | None = None

    @property
    def items(self) -> list[str]:
        """The items this command labels."""
        return list(self.labels)

    def redo(self) -> None:
        """Label every item (first time) or restore their states after it."""
        try:
            if self.after is None:
                self.after = {}
                for n, lab in self.labels.items():
                    self.after[n] = State.of(self.store.correct(n, lab, source=self.source))
            else:
                self._restore(self.after)
            self.error = None
        except Exception as e:
            log.exception("label edit failed: %s", self.text())
            self.error = e
            if self.after is not None:  # keep what was saved undoable; drop the rest
                self.labels = {n: self.labels[n] for n in self.after}
                if not self.after:
                    self.setObsolete(True)

    def undo(self) -> None:
        """Restore every item's state from before."""
        try:
            self._restore({n: self.before[n] for n in (self.after or {})})
            self.error = None
        except Exception as e:
            log.exception("undo failed: %s", self.text())
            self.error = e

    def _restore(self, states: dict[str, State]) -> None:
        for n, s in states.items():
            self.store.set_state(n, s.current, s.source, s.verified)
