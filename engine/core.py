"""Core types shared by every part of the engine: items, datasets, problems, events, cancel tokens."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from engine.events import Event

Label = tuple[float, ...]
"""A label: flat float pixels ``(x, y)`` (``(x1, y1, x2, y2, ...)`` for several points) or ``(value,)``."""

Kind = Literal["point", "scalar"]
OnEvent = Callable[[Event], None]
"""What engine work reports to: each event of ``engine/events.py``."""

ARCH_NAMES = (
    "resnet18",
    "resnet34",
    "resnet50",
    "mobilenet_v2",
    "mobilenet_v3_small",
    "mobilenet_v3_large",
    "tiny",
)
"""Backbones a run can use (here, torch-free, so the CLI and the app list them without loading torch)."""


def no_event(event: Event) -> None:
    """Default ``on_event``: drop the event."""


def label_distance(a: Label | None, b: Label | None) -> float | None:
    """Mean point distance in pixels (or absolute difference for scalars) between two labels; None if unmatched."""
    if a is None or b is None or len(a) != len(b) or not len(a):
        return None
    if len(a) == 1:
        return float(abs(a[0] - b[0]))
    dists = [math.hypot(a[i] - b[i], a[i + 1] - b[i + 1]) for i in range(0, len(a) - 1, 2)]
    return sum(dists) / len(dists)


@dataclass(frozen=True)
class Problem:
    """Why an item (or a file that could not become an item) is unusable."""

    item: str
    reason: str


@dataclass
class Item:
    """One image of a dataset, named by its POSIX path relative to the dataset root."""

    name: str
    group: str
    path: Path
    label: Label | None = None
    problem: str | None = None


@dataclass
class Dataset:
    """An indexed dataset: its format, kind, items, problems and notes (e.g. fallback calibrations)."""

    root: Path
    format: str
    kind: Kind
    items: list[Item] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    n_points: int = 1
    point_names: list[str] = field(default_factory=list)
    """Names of the points when the source names them (COCO ``categories[].keypoints``), else empty."""
    _by_name: dict[str, Item] = field(default_factory=dict, init=False, repr=False, compare=False)

    def item(self, name: str) -> Item:
        """The item called ``name`` (KeyError when absent)."""
        if len(self._by_name) != len(self.items):
            self._by_name = {it.name: it for it in self.items}
        return self._by_name[name]

    @property
    def groups(self) -> list[str]:
        """Group names in first-seen order."""
        return list(dict.fromkeys(it.group for it in self.items))


class Cancelled(Exception):
    """Raised inside engine work when its cancel token asks it to stop now."""


class CancelToken:
    """Thread-safe cancel request: ``cancel('now')`` stops within a batch, ``cancel('epoch')`` after the epoch."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.mode: Literal["now", "epoch"] | None = None

    def cancel(self, mode: Literal["now", "epoch"] = "now") -> None:
        """Ask the work to stop; a later 'now' overrides an 'epoch'."""
        if self.mode != "now":
            self.mode = mode
        self._event.set()

    @property
    def requested(self) -> bool:
        """Whether any stop was asked for."""
        return self._event.is_set()

    @property
    def now(self) -> bool:
        """Whether an immediate stop was asked for."""
        return self.mode == "now"

    def raise_if_now(self) -> None:
        """Raise ``Cancelled`` when an immediate stop was asked for."""
        if self.now:
            raise Cancelled()
