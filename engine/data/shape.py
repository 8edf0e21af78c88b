"""The input size that follows a dataset's image shape (``--size auto``): aspect kept, long side capped."""

from __future__ import annotations

import statistics

from engine.core import Dataset
from engine.data.images import ImageError, image_size

DEFAULT_SIZE = (240, 320)
"""(h, w) used when no image size can be read."""


def auto_size(
    ds: Dataset, max_side: int = 320, multiple: int = 16, probe: int = 64, upscale: bool = False
) -> tuple[int, int]:
    """(h, w): the median image shape scaled so its long side is at most ``max_side``, rounded to ``multiple``.

    Images are not enlarged past their own long side (rounded up) unless ``upscale``, so 200x200 faces give
    208x208 and 640x480 Biwi frames give 240x320. Reads only the headers of up to ``probe`` items.
    """
    items = [it for it in ds.items if not it.problem]
    step = max(1, len(items) // probe)
    sizes = []
    for it in items[::step][:probe]:
        try:
            sizes.append(image_size(it.path))
        except (ImageError, OSError, ValueError):
            continue
    if not sizes:
        return DEFAULT_SIZE
    w = statistics.median(s[0] for s in sizes)
    h = statistics.median(s[1] for s in sizes)
    long = max(w, h)
    side = max_side if upscale else min(max_side, -(-int(long) // multiple) * multiple)
    scale = side / long

    def snap(v: float) -> int:
        return max(multiple, int(round(v * scale / multiple)) * multiple)

    return snap(h), snap(w)
