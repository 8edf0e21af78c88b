"""Mixup for scalar targets: fastai's ``MixUp`` callback, whose targets are mixed like the inputs (the age
write-up's ``stack_y=False``), and the refusal for points (two faces' centres do not mix into a face's centre)."""

from __future__ import annotations

from fastai.callback.mixup import MixUp

MIXUP_POINTS = "mixup is for scalar targets: a blend of two images has no single point where both centres are"


def mixup_error(kind: str, alpha: float) -> str | None:
    """Why mixup cannot be used for this target kind and alpha (None when it can)."""
    if not alpha:
        return None
    if alpha < 0:
        return f"mixup alpha must be positive, got {alpha}"
    return MIXUP_POINTS if kind == "point" else None


def mixup_callbacks(kind: str, alpha: float) -> list:
    """The fastai callbacks that add mixup (none when ``alpha`` is 0); ValueError for points."""
    err = mixup_error(kind, alpha)
    if err:
        raise ValueError(err)
    # huber_loss has no ``y_int``, so MixUp lerps the targets (stack_y False) and keeps the loss as it is.
    return [MixUp(alpha)] if alpha else []
