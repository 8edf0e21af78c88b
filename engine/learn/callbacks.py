"""fastai callbacks and metrics of the engine: events, cancel, NaN guard, best-epoch weights, pixel errors."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from fastai.callback.core import Callback, CancelFitException
from fastai.learner import Metric

from engine import events
from engine.core import CancelToken, OnEvent, no_event


@dataclass
class FitState:
    """What the engine callback learned during fitting, shared across the stages of one run."""

    epoch: int = 0
    epochs: int = 0
    best_loss: float = math.inf
    best_epoch: int | None = None
    best_state: dict[str, torch.Tensor] | None = None
    best_metrics: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)
    cancelled: bool = False
    failed: str | None = None


def _finite(v: Any) -> bool:
    """Whether ``v`` is a finite number."""
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


class EngineCallback(Callback):
    """Emits batch/epoch events (batches throttled), obeys the cancel token, stops on NaN, keeps the best weights."""

    order = 60  # after Recorder (50), so the epoch's losses and metrics are in `final_record`

    def __init__(
        self,
        state: FitState,
        metric_names: list[str],
        on_event: OnEvent = no_event,
        cancel: CancelToken | None = None,
        max_rate: float = 10.0,
        extra: dict | None = None,
        stage_size: str = "",
    ) -> None:
        """``extra``: added to each history row; ``stage_size``: the progressive-resizing stage on batch events."""
        self.state, self.metric_names, self.on_event, self.cancel = state, metric_names, on_event, cancel
        self.stage_size = stage_size
        self.min_gap = 1.0 / max_rate
        self.extra = extra or {}
        self._last = 0.0

    def before_fit(self) -> None:
        """Skip the later fits of a schedule (fine_tune runs two) once the run was stopped."""
        if self.state.cancelled or self.state.failed:
            raise CancelFitException()

    def before_epoch(self) -> None:
        """Start timing the epoch."""
        self._t0 = time.perf_counter()

    def before_batch(self) -> None:
        """Stop at once when an immediate cancel was asked for."""
        if self.cancel is not None and self.cancel.now:
            self.state.cancelled = True
            raise CancelFitException()

    def after_loss(self) -> None:
        """A NaN or infinite training loss ends the run as failed."""
        if self.training and not torch.isfinite(self.learn.loss.detach()).all():
            self.state.failed = (
                f"training loss became {float(self.learn.loss.detach())} at epoch {self.state.epoch + 1}, "
                f"batch {self.iter + 1}: the learning rate is probably too high"
            )
            raise CancelFitException()

    def after_batch(self) -> None:
        """Emit a throttled ``batch`` event (the last batch of an epoch always)."""
        if not self.training:
            return
        now = time.perf_counter()
        last = self.iter == self.n_iter - 1
        if last or now - self._last >= self.min_gap:
            self._last = now
            ev = events.batch(
                epoch=self.state.epoch + 1,
                batch=self.iter + 1,
                n_batches=self.n_iter,
                loss=float(self.learn.loss.detach()),
            )
            if self.stage_size:
                ev["size"] = self.stage_size
            self.on_event(ev)

    def after_epoch(self) -> None:
        """Record the epoch, keep the weights when the valid loss improved, emit ``epoch``, obey 'epoch' cancel."""
        rec = list(self.learn.final_record)
        train_loss = float(rec[0]) if rec else math.nan
        valid_loss = float(rec[1]) if len(rec) > 1 and rec[1] is not None else math.nan
        metrics = {n: float(v) for n, v in zip(self.metric_names, rec[2:], strict=False) if v is not None}
        self.state.epoch += 1
        ep = self.state.epoch
        row = {"epoch": ep, "train_loss": train_loss, "valid_loss": valid_loss, **metrics}
        row["time_s"] = time.perf_counter() - self._t0
        row.update(self.extra)
        self.state.history.append(row)
        if not (_finite(train_loss) and _finite(valid_loss)):
            self.state.failed = (
                f"loss became NaN or infinite at epoch {ep} (train {train_loss}, valid {valid_loss}): "
                "the learning rate is probably too high"
            )
        elif valid_loss < self.state.best_loss:
            self.state.best_loss, self.state.best_epoch = valid_loss, ep
            self.state.best_metrics = {"valid_loss": valid_loss, **metrics}
            self.state.best_state = {
                k: v.detach().to("cpu", copy=True) for k, v in self.learn.model.state_dict().items()
            }
        self.on_event(
            events.epoch(
                epoch=ep,
                epochs=self.state.epochs,
                train_loss=train_loss,
                valid_loss=valid_loss,
                metrics=metrics,
            )
        )
        if self.state.failed:
            raise CancelFitException()
        if self.cancel is not None and self.cancel.requested:
            self.state.cancelled = True
            raise CancelFitException()


class CancelCheck(Callback):
    """Stops any fit (e.g. the LR finder) at the next batch once an immediate cancel was asked for."""

    def __init__(self, cancel: CancelToken | None) -> None:
        self.cancel = cancel

    def before_batch(self) -> None:
        """Raise ``CancelFitException`` on ``cancel('now')``."""
        if self.cancel is not None and self.cancel.now:
            raise CancelFitException()


class LRFindProgress(Callback):
    """Sends ``lr_find_progress`` {done, total} events while the LR finder runs (at most ``rate`` per second)."""

    order = 60  # after fastai's LRFinder (order 50), so its stop decision is already made

    def __init__(self, on_event: OnEvent, total: int = 100, rate: float = 10.0) -> None:
        self.on_event, self.total, self.gap, self.last = on_event, total, 1.0 / rate, 0.0

    def after_batch(self) -> None:
        """Report the batch count, throttled."""
        now = time.monotonic()
        if now - self.last >= self.gap:
            self.last = now
            self.on_event(events.progress("lr_find_progress", self.learn.train_iter, self.total))


class PixelError(Metric):
    """Mean or median per-sample point error in original-image pixels over the validation set.

    Each sample's error is the mean Euclidean distance over its points, using that item's own (w, h): the
    validation loader is not shuffled, so the n-th prediction belongs to ``learn.dl.items[n]``.
    """

    def __init__(self, stat: str = "mean") -> None:
        self.stat = stat

    def reset(self) -> None:
        """Forget the previous validation pass."""
        self.errs: list[np.ndarray] = []
        self.seen = 0

    def accumulate(self, learn) -> None:
        """Add this batch's per-sample pixel errors."""
        pred = learn.pred.detach().float().cpu().numpy()
        targ = learn.y.detach().float().cpu().numpy()
        bs = pred.shape[0]
        items = learn.dl.items[self.seen : self.seen + bs]
        self.seen += bs
        sizes = np.array([s.size for s in items], dtype=np.float64)
        d = (pred.reshape(bs, -1, 2) - targ.reshape(bs, -1, 2)) * sizes[:, None, :] / 2
        self.errs.append(np.sqrt((d**2).sum(-1)).mean(-1))

    @property
    def value(self) -> float | None:
        """The mean or median error (None before any batch)."""
        if not self.errs:
            return None
        e = np.concatenate(self.errs)
        return float(np.median(e) if self.stat == "median" else e.mean())

    @property
    def name(self) -> str:
        """``mean_px`` or ``median_px``."""
        return f"{self.stat}_px"
