"""The typed events of engine work: what ``on_event`` hears, what ``--json`` prints, what the app reads.

Events stay plain JSON-able dicts (they cross a process boundary as JSON lines); these ``TypedDict``s are their
one definition, used by the engine that sends them, the CLI reporter, the app and the tests' fake child.
"""

from __future__ import annotations

import json
from typing import Any, Literal, NotRequired, TypedDict

EventType = Literal[
    "prepared",
    "batch",
    "epoch",
    "lr_find",
    "lr_find_progress",
    "fold",
    "predict_progress",
    "embed_progress",
    "cache_progress",
    "audit_progress",
    "note",
    "finished",
    "cancelled",
    "failed",
    "summary",
]
EVENT_TYPES: tuple[str, ...] = EventType.__args__  # type: ignore[attr-defined]
PROGRESS_TYPES = (
    "predict_progress",
    "lr_find_progress",
    "embed_progress",
    "cache_progress",
    "audit_progress",
)
"""Events with ``done`` / ``total`` counts."""
END_TYPES = ("finished", "cancelled", "failed")
"""Events that end a job."""


class Prepared(TypedDict, total=False):
    """Training is set up: what will run where."""

    type: Literal["prepared"]
    device: str
    on_cpu: bool
    arch: str
    head: str
    kind: str
    n_train: int
    n_valid: int
    size: list[int]
    bs: int
    epochs: int
    n_batches: int
    fold: int
    folds: int
    world_size: int  # processes of a data-parallel run (``train --nproc``); n_batches is per process


class Batch(TypedDict):
    """One training batch done."""

    type: Literal["batch"]
    epoch: int
    batch: int
    n_batches: int
    loss: float
    fold: NotRequired[int]  # folds side by side (``rank --parallel``) tag their progress
    folds: NotRequired[int]


class Epoch(TypedDict):
    """One epoch done, with validation metrics (whole validation set)."""

    type: Literal["epoch"]
    epoch: int
    epochs: int
    train_loss: float
    valid_loss: float
    metrics: dict[str, float]
    fold: NotRequired[int]
    folds: NotRequired[int]


class LrFind(TypedDict):
    """The LR finder's curve and suggestion."""

    type: Literal["lr_find"]
    suggestion: float
    lrs: list[float]
    losses: list[float]


class Progress(TypedDict):
    """``done`` of ``total`` steps of a job (``predict_progress``, ``lr_find_progress``, ``embed_progress``,
    ``cache_progress``: images decoded into the training cache, ``audit_progress``: checks of ``imgreg audit``)."""

    type: Literal[
        "predict_progress", "lr_find_progress", "embed_progress", "cache_progress", "audit_progress"
    ]
    done: int
    total: int


class Fold(TypedDict):
    """An out-of-fold model starts."""

    type: Literal["fold"]
    fold: int
    folds: int


class Note(TypedDict):
    """Something a user should know that is not an error (a fallback taken, weights missing, ...)."""

    type: Literal["note"]
    message: str


class Finished(TypedDict, total=False):
    """A run was saved."""

    type: Literal["finished"]
    run_id: str
    run_dir: str
    metrics: dict[str, float]
    best_epoch: int | None


class Cancelled(TypedDict, total=False):
    """The job stopped on request (``run_id``/``run_dir`` when a run was still saved)."""

    type: Literal["cancelled"]
    message: str
    run_id: str
    run_dir: str


class Failed(TypedDict):
    """The job failed: one line for a person."""

    type: Literal["failed"]
    message: str


class Summary(TypedDict, total=False):
    """The CLI's last ``--json`` line."""

    type: Literal["summary"]
    run_id: str | None
    run_dir: str | None
    metrics: dict[str, float]
    cancelled: bool


Event = Prepared | Batch | Epoch | LrFind | Progress | Fold | Note | Finished | Cancelled | Failed | Summary


def note(message: str) -> Note:
    """A ``note`` event."""
    return {"type": "note", "message": message}


def failed(message: str) -> Failed:
    """A ``failed`` event."""
    return {"type": "failed", "message": message}


def progress(
    kind: Literal["predict_progress", "lr_find_progress", "cache_progress", "audit_progress"],
    done: int,
    total: int,
) -> Progress:
    """A progress event."""
    return {"type": kind, "done": done, "total": total}


def parse_event(line: str) -> dict[str, Any] | None:
    """An event from one JSON line of ``imgreg ... --json`` (None for anything else)."""
    try:
        e = json.loads(line)
    except ValueError:
        return None
    return e if isinstance(e, dict) and e.get("type") in EVENT_TYPES else None
