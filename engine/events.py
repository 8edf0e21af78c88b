"""The typed events of engine work: what ``on_event`` hears, what ``--json`` prints, what the app reads.

Events stay plain JSON-able dicts (they cross a process boundary as JSON lines). The ``TypedDict``s below are
their one definition: emitters build them with the constructors (``note(...)``, ``batch(...)``, ...), the app reads
them through ``parse_event``, which checks each line against the same classes, and the tests check every event
built (``IMGREG_CHECK_EVENTS=1``) against them.
"""

import json
import logging
import os
import types
from typing import (
    Any,
    Literal,
    NotRequired,
    Required,
    TypedDict,
    Union,
    Unpack,
    cast,
    get_args,
    get_origin,
    get_type_hints,
)

log = logging.getLogger(__name__)

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
    "note",
    "finished",
    "cancelled",
    "failed",
    "summary",
]
ProgressType = Literal["predict_progress", "lr_find_progress", "embed_progress", "cache_progress"]


class Tagged(TypedDict, total=False):
    """What any event may carry: the fold it comes from when folds train side by side (``rank --parallel``)."""

    fold: int
    folds: int


class PreparedExtra(Tagged, total=False):
    """What the caller of a fit adds to its ``prepared`` event."""

    n_skipped: int
    valid_groups: list[str]
    world_size: int  # processes of a data-parallel run (``train --nproc``); n_batches is per process


class PreparedFields(PreparedExtra, total=False):
    """Training is set up: what will run where."""

    device: Required[str]
    on_cpu: Required[bool]
    arch: Required[str]
    head: Required[str]
    kind: Required[str]
    n_train: Required[int]
    n_valid: Required[int]
    size: Required[list[int]]
    bs: Required[int]
    epochs: Required[int]
    n_batches: Required[int]
    schedule: str
    message: str


class Prepared(PreparedFields):
    type: Literal["prepared"]


class BatchFields(Tagged):
    """One training batch done (``size``: the progressive-resizing stage's ``HxW`` when there are several)."""

    epoch: int
    batch: int
    n_batches: int
    loss: float
    size: NotRequired[str]


class Batch(BatchFields):
    type: Literal["batch"]


class EpochFields(Tagged):
    """One epoch done, with validation metrics (whole validation set)."""

    epoch: int
    epochs: int
    train_loss: float
    valid_loss: float
    metrics: dict[str, float]


class Epoch(EpochFields):
    type: Literal["epoch"]


class LrFind(Tagged):
    """The LR finder's curve and suggestion."""

    type: Literal["lr_find"]
    suggestion: float
    lrs: list[float]
    losses: list[float]


class Progress(Tagged):
    """``done`` of ``total`` steps of a job (``predict_progress``, ``lr_find_progress``, ``embed_progress``,
    ``cache_progress``: images decoded into the training cache)."""

    type: ProgressType
    done: int
    total: int


class Fold(TypedDict):
    """An out-of-fold model starts."""

    type: Literal["fold"]
    fold: int
    folds: int


class Note(Tagged):
    """Something a user should know that is not an error (a fallback taken, weights missing, ...)."""

    type: Literal["note"]
    message: str


class Finished(Tagged, total=False):
    """A run was saved."""

    type: Required[Literal["finished"]]
    run_id: str
    run_dir: str
    metrics: dict[str, float]
    best_epoch: int | None


class Cancelled(Tagged, total=False):
    """The job stopped on request (``run_id``/``run_dir`` when a run was still saved)."""

    type: Required[Literal["cancelled"]]
    message: Required[str]
    run_id: str
    run_dir: str
    metrics: dict[str, float]
    best_epoch: int | None


class Failed(Tagged):
    """The job failed: one line for a person."""

    type: Literal["failed"]
    message: str


class Summary(TypedDict, total=False):
    """The CLI's last ``--json`` line: the command's result. Open: each command adds its own keys (listed in
    README.md); the ones the app reads are typed here."""

    type: Required[Literal["summary"]]
    run_id: str | None
    run_dir: str | None
    metrics: dict[str, float]
    cancelled: bool
    suggestion: float
    time_s: float


Event = Prepared | Batch | Epoch | LrFind | Progress | Fold | Note | Finished | Cancelled | Failed | Summary
OPEN = (Summary,)
"""Events whose keys are not all listed (command results); the listed ones are still checked."""


def _schemas() -> dict[str, type]:
    """Each event type's class, read from the classes' ``type`` literals."""
    out: dict[str, type] = {}
    for cls in get_args(Event):
        for t in get_args(get_type_hints(cls)["type"]):
            out[t] = cls
    return out


SCHEMAS = _schemas()
EVENT_TYPES: tuple[str, ...] = get_args(EventType)
PROGRESS_TYPES: tuple[str, ...] = get_args(ProgressType)
"""Events with ``done`` / ``total`` counts."""
END_TYPES = ("finished", "cancelled", "failed")
"""Events that end a job."""
assert set(SCHEMAS) == set(EVENT_TYPES), "every event type has one class"
CHECK_ENV = "IMGREG_CHECK_EVENTS"
"""Set to 1 (the tests do) and every event built by a constructor is checked against its class at once."""


class EventError(ValueError):
    """An event that does not match its definition."""


def _fits(v: Any, tp: Any) -> bool:
    """Whether the JSON value ``v`` fits the annotation ``tp``."""
    origin, args = get_origin(tp), get_args(tp)
    if tp is Any:
        return True
    if tp is type(None) or tp is None:
        return v is None
    if origin is Literal:
        return v in args
    if origin in (Union, types.UnionType):
        return any(_fits(v, a) for a in args)
    if tp is float:  # JSON writes whole floats and non-finite ones as it likes
        return isinstance(v, int | float) and not isinstance(v, bool)
    if tp is int:
        return isinstance(v, int) and not isinstance(v, bool)
    if tp in (str, bool):
        return isinstance(v, tp)
    if origin is list:
        return isinstance(v, list | tuple) and all(_fits(x, args[0]) for x in v)
    if origin is dict:
        return isinstance(v, dict) and all(_fits(k, args[0]) and _fits(x, args[1]) for k, x in v.items())
    raise TypeError(f"no check for {tp!r}")


def check_event(e: object) -> Event:
    """``e`` as an event; ``EventError`` when its type is unknown, a field is missing or unknown, or a value has
    the wrong type."""
    if not isinstance(e, dict):
        raise EventError(f"an event is a JSON object, not {type(e).__name__}")
    t = e.get("type")
    cls = SCHEMAS.get(t) if isinstance(t, str) else None
    if cls is None:
        raise EventError(f"unknown event type {t!r}")
    hints = get_type_hints(cls)
    missing = sorted(cls.__required_keys__ - e.keys())  # type: ignore[attr-defined]
    if missing:
        raise EventError(f"{t} event without {', '.join(missing)}")
    unknown = sorted(e.keys() - hints.keys())
    if unknown and cls not in OPEN:
        raise EventError(f"{t} event with unknown field(s) {', '.join(map(str, unknown))}")
    for k, v in e.items():
        if k in hints and not _fits(v, hints[k]):
            raise EventError(f"{t} event's {k} is {v!r}, not {_name(hints[k])}")
    return cast(Event, e)


def _name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def parse_event(line: str) -> Event | None:
    """The event on one JSON line of ``imgreg ... --json``; None for any other line (a JSON line that is no valid
    event is logged and skipped)."""
    try:
        e = json.loads(line)
    except ValueError:
        return None
    try:
        return check_event(e)
    except EventError as err:
        log.warning("skipped a child's line that is no valid event (%s): %.200s", err, line)
        return None


_CHECK = os.environ.get(CHECK_ENV) == "1"


def to_json(e: Event) -> str:
    """One ``--json`` line (non-finite floats as JSON's NaN/Infinity, which ``parse_event`` reads back); checked
    as the app will read it under ``IMGREG_CHECK_EVENTS=1``."""
    line = json.dumps(e, default=str)
    if _CHECK:
        check_event(json.loads(line))
    return line


def _made(e: Any) -> Any:
    """A constructor's event, checked first under ``IMGREG_CHECK_EVENTS=1``."""
    if _CHECK:
        to_json(e)
    return e


# -- constructors: the only way engine code builds an event -------------------------------------------------


def prepared(**f: Unpack[PreparedFields]) -> Prepared:
    """A ``prepared`` event."""
    return cast(Prepared, _made({"type": "prepared", **f}))


def batch(**f: Unpack[BatchFields]) -> Batch:
    """A ``batch`` event."""
    return cast(Batch, _made({"type": "batch", **f}))


def epoch(**f: Unpack[EpochFields]) -> Epoch:
    """An ``epoch`` event."""
    return cast(Epoch, _made({"type": "epoch", **f}))


def lr_find(suggestion: float, lrs: list[float], losses: list[float]) -> LrFind:
    """An ``lr_find`` event."""
    return cast(LrFind, _made(LrFind(type="lr_find", suggestion=suggestion, lrs=lrs, losses=losses)))


def progress(kind: ProgressType, done: int, total: int) -> Progress:
    """A progress event of ``kind``."""
    return cast(Progress, _made(Progress(type=kind, done=done, total=total)))


def fold(fold: int, folds: int) -> Fold:
    """A ``fold`` event: model ``fold`` of ``folds`` starts."""
    return cast(Fold, _made(Fold(type="fold", fold=fold, folds=folds)))


def note(message: str) -> Note:
    """A ``note`` event."""
    return cast(Note, _made(Note(type="note", message=message)))


def finished(run_id: str, run_dir: str, metrics: dict[str, float], best_epoch: int | None = None) -> Finished:
    """A ``finished`` event."""
    e = Finished(type="finished", run_id=run_id, run_dir=run_dir, metrics=metrics, best_epoch=best_epoch)
    return cast(Finished, _made(e))


def cancelled(
    message: str,
    run_id: str | None = None,
    run_dir: str | None = None,
    metrics: dict[str, float] | None = None,
    best_epoch: int | None = None,
) -> Cancelled:
    """A ``cancelled`` event (with the run still saved when ``run_id`` is given)."""
    if run_id is None:
        return cast(Cancelled, _made(Cancelled(type="cancelled", message=message)))
    e = Cancelled(
        type="cancelled",
        message=message,
        run_id=run_id,
        run_dir=run_dir or "",
        metrics=metrics or {},
        best_epoch=best_epoch,
    )
    return cast(Cancelled, _made(e))


def failed(message: str) -> Failed:
    """A ``failed`` event."""
    return cast(Failed, _made(Failed(type="failed", message=message)))


def summary(data: dict[str, Any]) -> Summary:
    """The CLI's ``summary`` event of a command's result ``data``."""
    return cast(Summary, _made({"type": "summary", **data}))


def tagged(e: Event, fold: int, folds: int) -> Event:
    """``e`` tagged with the fold it comes from (folds side by side)."""
    return cast(Event, _made({**e, "fold": fold, "folds": folds}))
