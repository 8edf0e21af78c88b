"""The app's one dispatch of engine events by type: ``Router(batch=..., epoch=...)(event)``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypedDict, Unpack, cast

from engine import events
from engine.events import (
    Batch,
    Cancelled,
    Epoch,
    Event,
    Failed,
    Finished,
    Fold,
    LrFind,
    Note,
    Prepared,
    Progress,
    Summary,
)


class Handlers(TypedDict, total=False):
    """A handler per event type, typed by its event; ``progress`` takes every progress kind without its own."""

    prepared: Callable[[Prepared], None]
    batch: Callable[[Batch], None]
    epoch: Callable[[Epoch], None]
    lr_find: Callable[[LrFind], None]
    fold: Callable[[Fold], None]
    note: Callable[[Note], None]
    finished: Callable[[Finished], None]
    cancelled: Callable[[Cancelled], None]
    failed: Callable[[Failed], None]
    summary: Callable[[Summary], None]
    progress: Callable[[Progress], None]
    predict_progress: Callable[[Progress], None]
    lr_find_progress: Callable[[Progress], None]
    embed_progress: Callable[[Progress], None]
    cache_progress: Callable[[Progress], None]


class Router:
    """Calls the handler of each event's type; events with none are ignored (a ``default`` takes them, if set)."""

    def __init__(self, default: Callable[[Event], None] | None = None, **handlers: Unpack[Handlers]) -> None:
        unknown = set(handlers) - set(events.EVENT_TYPES) - {"progress"}
        if unknown:
            raise TypeError(f"no event type {', '.join(sorted(unknown))}")
        # each handler takes its key's event type (checked where a Router is made)
        self.handlers = cast(dict[str, Callable[[Any], None]], dict(handlers))
        self.default = default

    def handler(self, kind: str) -> Callable[[Any], None] | None:
        """The handler of events of type ``kind``."""
        fn = self.handlers.get(kind)
        if fn is None and kind in events.PROGRESS_TYPES:
            fn = self.handlers.get("progress")
        return fn or self.default

    def __call__(self, ev: Event) -> None:
        """Dispatch one event."""
        fn = self.handler(ev["type"])
        if fn is not None:
            fn(ev)
