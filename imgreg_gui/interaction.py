"""What the mouse does on the image, without a widget: hit-testing, dragging and placing a label's points, and
where the legend may go without covering a marker (labelme's ``_canvas_interaction``, napari's drag generators).

Scene points are original-image pixels; view points are viewport pixels. The canvas converts between them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from engine.core import Label

Point = tuple[float, float]
Rect = tuple[float, float, float, float]  # x, y, width, height
HIT_RADIUS = 12.0
MARKER_RADIUS = 16.0  # a cross or ring with its outline, in view pixels
MARGIN = 10.0


def points(label: Label | None) -> list[Point]:
    """The (x, y) points of a point label (none for a scalar or no label)."""
    if label is None or len(label) < 2:
        return []
    return [(label[i], label[i + 1]) for i in range(0, len(label) - 1, 2)]


def hit(view_pts: Iterable[Point], pos: Point, radius: float = HIT_RADIUS) -> int:
    """Index of the point nearest ``pos`` within ``radius`` (view pixels), or -1."""
    best, best_d = -1, radius
    for i, (x, y) in enumerate(view_pts):
        d = math.hypot(x - pos[0], y - pos[1])
        if d <= best_d:
            best, best_d = i, d
    return best


def clamp(pt: Point, size: tuple[int, int] | None) -> Point:
    """``pt`` kept inside an image of ``size`` (W, H)."""
    w, h = size or (0, 0)
    return min(max(pt[0], 0.0), float(w)), min(max(pt[1], 0.0), float(h))


@dataclass
class Drag:
    """A label being dragged or placed: the whole label as drawn, which point moves, whether it moved yet."""

    label: list[float]
    index: int
    moved: bool = False

    def move(self, pt: Point, size: tuple[int, int] | None) -> None:
        """Move the dragged point to scene point ``pt`` (kept on the image)."""
        x, y = clamp(pt, size)
        self.label[2 * self.index], self.label[2 * self.index + 1] = x, y
        self.moved = True

    def result(self, before: Label | None) -> Label | None:
        """The new label to store on release, or None when nothing changed."""
        label = tuple(self.label)
        return label if self.moved and label != before else None


def press(
    label: Label | None,
    hit_index: int,
    scene_pt: Point,
    size: tuple[int, int] | None,
    *,
    ctrl: bool,
    place_mode: bool,
    active_point: int,
) -> Drag | None:
    """What a left press starts: dragging the point under it, placing the active point at the click (place mode,
    Ctrl, or an item with no label yet), or nothing (the caller pans)."""
    if hit_index >= 0 and not ctrl:
        return Drag(list(label or ()), hit_index)
    if place_mode or ctrl or label is None:
        x, y = clamp(scene_pt, size)
        new = list(label) if label else [x, y]
        idx = active_point if label else 0
        drag = Drag(new, idx)
        drag.move((x, y), size)
        return drag
    return None


def _overlaps(r: Rect, pts: Iterable[Point], pad: float) -> bool:
    x, y, w, h = r
    return any(x - pad <= px <= x + w + pad and y - pad <= py <= y + h + pad for px, py in pts)


def legend_rect(
    view: tuple[float, float], chip: tuple[float, float], markers: list[Point], top: float = 0.0
) -> Rect | None:
    """Where the legend chip (W, H) goes in a view (W, H) so that it covers no marker (view points): the
    bottom-left corner if free, else the other free corner or a free place along the bottom or top edge (below
    ``top``, the header's bottom); None when every place would cover one (then the legend is not drawn)."""
    vw, vh = view
    cw, ch = chip
    left, right = MARGIN, max(MARGIN, vw - MARGIN - cw)
    bottom, upper = vh - MARGIN - ch, top + MARGIN
    candidates = [(left, bottom), (right, bottom), (right, upper)]
    step = max(20.0, (right - left) / 24)
    for y in (bottom, upper):
        x = left
        while x <= right:
            candidates.append((x, y))
            x += step
    for x, y in candidates:
        r = (x, y, cw, ch)
        if y >= top and not _overlaps(r, markers, MARKER_RADIUS):
            return r
    return None
