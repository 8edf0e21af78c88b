"""Training: fastai Learner over a dataset's effective labels, with events, cancel, best-epoch weights and run folders."""

from __future__ import annotations

import math
import os
import tempfile
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from fastai.callback.core import CancelFitException
from fastai.callback.progress import ProgressCallback
from fastai.callback.schedule import fit_one_cycle  # noqa: F401  (patches Learner.fit_one_cycle, fine_tune, lr_find)
from fastai.learner import Learner
from fastai.losses import MSELossFlat
from fastai.metrics import mae, rmse
from fastai.optimizer import Adam
from fastai.torch_core import set_seed
from fastcore.basics import noop
from torch import nn

from engine import events
from engine.core import Cancelled, CancelToken, Dataset, OnEvent, no_event
from engine.data.shape import DEFAULT_SIZE
from engine.data.split import too_few
from engine.labels.location import store_dir_of
from engine.labels.store import LabelStore
from engine.learn import distributed
from engine.learn.arch import ModelConfig, build_model
from engine.learn.callbacks import CancelCheck, EngineCallback, FitState, LRFindProgress, PixelError
from engine.learn.device import resolve_device
from engine.learn.dls import Sample, make_dls, scalar_range, split_groups, usable_samples
from engine.learn.feed import cached_dls, fill_bs, tune_step
from engine.learn.models import load_run, save_run
from engine.learn.predict import save_calibration
from engine.options import AUTO, CPU_BS, OPTIONS, defaults, options_of
from engine.runs.files import new_run_id, run_parent


class TrainingError(Exception):
    """Training cannot start (too little data, bad split, unknown device) or failed (NaN loss)."""


_D = defaults()


@dataclass
class TrainConfig(ModelConfig):
    """Model config plus how to train: epochs, lr, batch size, split, schedule, sizes, device.

    The defaults of the declared options come from ``engine.options`` (``from_options`` builds one from checked
    option values). ``head="auto"`` picks the spatial heatmap head for points (about 10x more accurate in
    ``benchmarks/bench_accuracy.py``) and the pooled head for scalars.
    """

    arch: str = _D["arch"]
    head: str = _D["head"]
    scalar_head: str = _D["scalar_head"]
    ps: float = _D["ps"]
    spatial_stride: int | None = _D["stride"]
    pretrained: bool = _D["pretrained"]
    weights: str | None = _D["weights"]
    epochs: int = _D["epochs"]
    lr: float | None = _D["lr"]
    bs: int | None = None if _D["bs"] == AUTO else _D["bs"]
    """None (``--bs auto``, the default): ``fill_bs`` picks one that fills a GPU, ``CPU_BS`` elsewhere."""
    valid_groups: list[str] | None = _D["valid_groups"]
    valid_pct: float = _D["valid_pct"]
    seed: int = _D["seed"]
    schedule: str | None = _D["schedule"]
    freeze_epochs: int = _D["freeze_epochs"]
    sizes: list[tuple[int, int]] | None = _D["sizes"]
    device: str = _D["device"]
    augment: bool = _D["augment"]
    mixed_precision: bool = True
    num_workers: int | None = None
    max_event_rate: float = 10.0
    spatial_reg: float = 1.0
    mixup: float = _D["mixup"]
    lr_ratio: float | None = _D["lr_ratio"]
    cache: bool = _D["cache"]
    """Train from the decoded-image cache (``engine.learn.feed``); False decodes every file every epoch."""
    cache_dir: str | None = None
    """The store folder whose ``cache`` holds the caches (``prepare`` fills it in)."""
    init_from: str | None = _D["init_from"]
    """A run folder whose weights start the model (``train --from``: a warm start)."""

    @classmethod
    def from_options(cls, values: Mapping[str, Any]) -> TrainConfig:
        """A config from checked option values (``engine.options.check``); ``size`` auto becomes the default
        size here: the CLI sizes it from the data first (``engine.data.shape.auto_size``)."""
        kw: dict[str, Any] = {}
        for o in OPTIONS:
            v = values.get(o.name, o.default)
            if o.name == "pretrained_if_cached":
                continue  # resolved into ``pretrained`` by the caller, which knows what this machine holds
            if o.name == "bs":
                kw["bs"] = None if v == AUTO else int(v)
                continue
            if o.name == "size":
                v = DEFAULT_SIZE if v == AUTO else tuple(v)
            elif o.name == "sizes":
                v = [tuple(s) for s in v] if v else None
            kw[o.target] = v
        if kw.get("weights"):
            kw["pretrained"] = False  # the file's weights replace ImageNet's
        return cls(**kw)

    def stage_sizes(self) -> list[tuple[int, int]]:
        """Image sizes (h, w) of the progressive-resizing stages (just ``size`` without ``sizes``)."""
        return [(int(h), int(w)) for h, w in (self.sizes or [self.size])]

    def resolved_schedule(self) -> str:
        """``fine_tune`` for pretrained starts, ``one_cycle`` for random ones, unless set explicitly."""
        if self.schedule:
            if self.schedule not in ("fine_tune", "one_cycle"):
                raise TrainingError(f"unknown schedule {self.schedule!r}; use fine_tune or one_cycle")
            return self.schedule
        return "fine_tune" if (self.pretrained or self.weights) else "one_cycle"


@dataclass
class RunInfo:
    """The outcome of a saved training run."""

    run_id: str
    run_dir: Path
    metrics: dict[str, float]
    best_epoch: int | None = None
    cancelled: bool = False
    summary: dict[str, Any] = field(default_factory=dict)
    model: nn.Module | None = field(default=None, repr=False)


@dataclass
class FitResult:
    """An in-memory fit: model with the best epoch's weights loaded, its config and the fit state."""

    model: nn.Module
    cfg: TrainConfig
    state: FitState
    device: torch.device
    n_train: int
    n_valid: int
    lr: float
    time_s: float


def huber_loss(pred: torch.Tensor, targ: torch.Tensor) -> torch.Tensor:
    """SmoothL1 (Huber) loss for scalar regression, flattened."""
    return nn.functional.smooth_l1_loss(pred.float().view(-1), targ.float().view(-1))


def _metrics(kind: str) -> tuple[list, list[str]]:
    """fastai metrics and their names for a target kind."""
    if kind == "point":
        return [rmse, PixelError("mean"), PixelError("median")], ["rmse", "mean_px", "median_px"]
    return [mae], ["mae"]


def _n_epochs(cfg: TrainConfig) -> int:
    """Total epochs over all stages for the schedule."""
    per = cfg.epochs + (cfg.freeze_epochs if cfg.resolved_schedule() == "fine_tune" else 0)
    return per * len(cfg.stage_sizes())


def _learner(
    samples: list[Sample],
    valid_idx: list[int],
    cfg: TrainConfig,
    size: tuple[int, int],
    device: torch.device,
    on_event: OnEvent = no_event,
    cancel: CancelToken | None = None,
) -> Learner:
    """A silent fastai Learner (no progress bars, no printing) for ``cfg`` at ``size``."""
    model, splitter = build_model(cfg)
    if cfg.init_from:  # warm start: the run's whole model (body and head), from its state dict
        try:
            model.load_state_dict(load_run(cfg.init_from).model.state_dict(), strict=True)
        except RuntimeError as e:
            raise TrainingError(
                f"run {cfg.init_from} does not fit these options: {str(e).splitlines()[0]}"
            ) from None
    dls = _dls(samples, valid_idx, cfg, size, device, on_event, cancel)
    loss = _loss(cfg)
    mets, _ = _metrics(cfg.kind)
    # fastai's LR finder saves a temporary checkpoint under learn.path/models: keep it out of the working folder
    path = Path(tempfile.gettempdir()) / "imgreg-fastai"
    learn = Learner(dls, model, loss_func=loss, opt_func=Adam, splitter=splitter, metrics=mets, path=path)
    if cfg.mixup:
        from engine.learn.mixup import mixup_callbacks

        learn.add_cbs(mixup_callbacks(cfg.kind, cfg.mixup))
    learn.remove_cbs(ProgressCallback)
    learn.logger = noop
    tune_step(learn, device, cfg.mixed_precision)
    return learn


def _loss(cfg: TrainConfig):
    """MSE for points (DSNT loss with its heatmap regulariser for the spatial head), Huber for scalars."""
    if cfg.kind == "scalar":
        return huber_loss
    if cfg.head == "spatial" and cfg.spatial_reg:
        from engine.learn.spatial import DSNTLoss

        return DSNTLoss(reg=cfg.spatial_reg)
    return MSELossFlat()


def _dls(
    samples: list[Sample],
    valid_idx: list[int],
    cfg: TrainConfig,
    size,
    device: torch.device,
    on_event: OnEvent = no_event,
    cancel: CancelToken | None = None,
):
    """DataLoaders for one stage: from the decoded-image cache when it can be used, else decoding every epoch."""
    dls = cached_dls(samples, valid_idx, cfg, size, device, on_event, cancel)
    if dls is not None:
        return dls
    nw = (
        cfg.num_workers
        if cfg.num_workers is not None
        else (0 if device.type == "cpu" else min(8, os.cpu_count() or 1))
    )
    return make_dls(
        samples, valid_idx, cfg.kind, tuple(size), cfg.bs or CPU_BS, device, cfg.n_points, cfg.augment, nw, cfg.seed,
        stats=cfg.normalize,
    )  # fmt: skip


def _run_lr_find(learn: Learner, on_event: OnEvent, cancel: CancelToken | None = None) -> float:
    """Run fastai's LR finder silently, emit ``lr_find`` with the curve, return the suggestion (valley)."""
    res = None
    try:
        with learn.added_cbs([CancelCheck(cancel), LRFindProgress(on_event, total=100)]):
            res = learn.lr_find(num_it=100, show_plot=False)
    except (IndexError, ValueError):
        # fastai's suggestion code fails on an empty curve, which is what a cancel at the first batch leaves
        if not (cancel is not None and cancel.now):
            raise
    if res is None or (cancel is not None and cancel.now):
        on_event(events.cancelled("stopped during the learning-rate finder"))
        raise Cancelled("stopped during the learning-rate finder")
    lrs = [float(v) for v in learn.recorder.lrs]
    losses = [float(v) for v in learn.recorder.losses]
    sugg = float(res.valley) if math.isfinite(float(res.valley)) else 1e-3
    on_event(events.lr_find(sugg, lrs, losses))
    return sugg


def prepare(
    ds: Dataset, store: LabelStore | None, cfg: TrainConfig
) -> tuple[TrainConfig, list[Sample], dict[str, str]]:
    """Usable samples and a config completed from the data (kind, n_points, y_range)."""
    found = usable_samples(ds, store)
    reason = too_few(len(found.samples))
    if reason:
        raise TrainingError(f"training {reason}")
    head = cfg.head if cfg.head != "auto" else "spatial"
    # The spatial head localises points; a scalar target has nothing to localise.
    cfg = replace(cfg, kind=ds.kind, n_points=ds.n_points, head=head if ds.kind == "point" else "pooled")
    if cfg.mixup:
        from engine.learn.mixup import mixup_error

        if err := mixup_error(cfg.kind, cfg.mixup):
            raise TrainingError(err)
    cfg.cache_dir = cfg.cache_dir or str(store_dir_of(ds.root, store))
    if cfg.kind == "point":
        cfg.y_range = (-1.0, 1.0)
    elif cfg.y_range is None:
        cfg.y_range = scalar_range(found.samples)
    return cfg, found.samples, found.skipped


def fit(
    samples: list[Sample],
    train_idx: list[int],
    valid_idx: list[int],
    cfg: TrainConfig,
    on_event: OnEvent = no_event,
    cancel: CancelToken | None = None,
    extra_prepared: events.PreparedExtra | None = None,
) -> FitResult:
    """Fit a model on ``samples`` (only ``train_idx`` and ``valid_idx`` are used) and keep the best epoch.

    Raises ``TrainingError`` on a NaN loss (after a ``failed`` event) and ``Cancelled`` when stopped before any
    epoch finished; a later cancel returns the best epoch so far with ``state.cancelled`` set.
    """
    t0 = time.perf_counter()
    set_seed(cfg.seed)
    device = resolve_device(cfg.device)
    cfg = fill_bs(cfg, device)
    cancel, ddp_cbs = distributed.hooks(cancel)  # DDP: rank 0's stop request, shared by every rank
    used = sorted(distributed.shard(train_idx, cfg.seed)) + sorted(valid_idx)  # DDP: this rank's share
    sub = [samples[i] for i in used]
    v_idx = list(range(len(used) - len(valid_idx), len(used)))
    schedule = cfg.resolved_schedule()
    sizes = cfg.stage_sizes()
    state = FitState(epochs=_n_epochs(cfg))
    _, names = _metrics(cfg.kind)
    with distributed.rank0_first():  # DDP: each machine's first rank builds the cache of every rank's items
        if distributed.active():
            distributed.warm_cache(
                [samples[i] for i in sorted(set(train_idx) | set(valid_idx))], cfg, on_event
            )
        learn = _learner(sub, v_idx, cfg, sizes[0], device, on_event, cancel)
    learn.add_cbs(ddp_cbs)
    on_cpu = device.type == "cpu"
    on_event(
        events.prepared(
            device=str(device),
            on_cpu=on_cpu,
            arch=cfg.arch,
            head=cfg.head,
            kind=cfg.kind,
            n_train=len(train_idx),
            n_valid=len(valid_idx),
            size=list(sizes[-1]),
            bs=learn.dls.train.bs,
            epochs=state.epochs,
            n_batches=len(learn.dls.train),
            schedule=schedule,
            message="training on the CPU (no GPU found): this is slow" if on_cpu else f"training on {device}",
            **(extra_prepared or {}),
        )
    )
    lr = cfg.lr
    try:
        if lr is None:
            lr = _run_lr_find(learn, on_event, cancel)
        for stage, size in enumerate(sizes):
            if stage:
                learn.dls = _dls(sub, v_idx, cfg, size, device, on_event, cancel)
            hw = f"{size[0]}x{size[1]}"
            cb = EngineCallback(
                state, names, on_event, cancel, cfg.max_event_rate, {"size": hw}, hw if len(sizes) > 1 else ""
            )
            with learn.added_cbs(cb):
                if schedule == "fine_tune":
                    mult = cfg.lr_ratio or 100  # fastai's default: the body trains at lr/100 after unfreezing
                    learn.fine_tune(cfg.epochs, base_lr=lr, freeze_epochs=cfg.freeze_epochs, lr_mult=mult)
                else:
                    learn.unfreeze()
                    learn.fit_one_cycle(cfg.epochs, slice(lr / cfg.lr_ratio, lr) if cfg.lr_ratio else lr)
            if state.failed or state.cancelled:
                break
    except CancelFitException:
        state.cancelled = True
    if state.failed:
        on_event(events.failed(state.failed))
        raise TrainingError(state.failed)
    if state.best_state is None:
        if state.cancelled:
            on_event(events.cancelled("training stopped before the first epoch finished"))
            raise Cancelled("training stopped before the first epoch finished")
        msg = "no epoch produced a finite validation loss"
        on_event(events.failed(msg))
        raise TrainingError(msg)
    model = learn.model
    model.load_state_dict(state.best_state)
    model.to("cpu").eval()
    cfg = replace(cfg, size=sizes[-1])
    assert lr is not None  # an epoch finished, so the LR finder (if any) returned
    return FitResult(
        model, cfg, state, device, len(train_idx), len(valid_idx), float(lr), time.perf_counter() - t0
    )


def _skip_summary(skipped: dict[str, str]) -> dict[str, Any]:
    """Skipped items: count by reason and a few examples."""
    return {"by_reason": dict(Counter(skipped.values())), "examples": dict(list(skipped.items())[:20])}


def train(
    ds: Dataset,
    store: LabelStore | None,
    cfg: TrainConfig,
    on_event: OnEvent = no_event,
    cancel: CancelToken | None = None,
    out_dir: Path | None = None,
) -> RunInfo:
    """Train on the store's effective labels, save the run to ``<store.dir>/runs/<id>/`` and return its info."""
    given = options_of(cfg)  # what --config repeats: the options as asked (bs auto stays auto)
    cfg, samples, skipped = prepare(ds, store, cfg)
    try:
        train_idx, valid_idx, vgroups = split_groups(samples, cfg.valid_groups, cfg.valid_pct, cfg.seed)
    except ValueError as e:
        raise TrainingError(str(e)) from None
    res = fit(
        samples,
        train_idx,
        valid_idx,
        cfg,
        on_event,
        cancel,
        {"n_skipped": len(skipped), "valid_groups": vgroups, "world_size": distributed.world_size()},
    )
    if not distributed.is_main():  # DDP: rank 0 alone writes the run folder and reports the end
        return RunInfo("", Path(), res.state.best_metrics, res.state.best_epoch, res.state.cancelled)
    parent = Path(out_dir) if out_dir is not None else run_parent(ds.root, store)
    parent.mkdir(parents=True, exist_ok=True)
    run_id = new_run_id(parent)
    run_dir = parent / run_id
    st = res.state
    tgroups = list(dict.fromkeys(samples[i].group for i in train_idx))
    summary = {
        "run_id": run_id,
        "dataset": str(ds.root),
        "format": ds.format,
        "kind": cfg.kind,
        "arch": cfg.arch,
        "head": cfg.head,
        "n_train": res.n_train,
        "n_valid": res.n_valid,
        "n_skipped": len(skipped),
        "skipped": _skip_summary(skipped),
        "train_groups": tgroups,
        "valid_groups": vgroups,
        "valid_items": [samples[i].name for i in valid_idx],
        "metrics": st.best_metrics,
        "best_epoch": st.best_epoch,
        "epochs_run": st.epoch,
        "epochs": st.epochs,
        "cancelled": st.cancelled,
        "device": str(res.device),
        "world_size": distributed.world_size(),
        "time_s": res.time_s,
        "lr": res.lr,
        "schedule": cfg.resolved_schedule(),
        "sizes": [list(s) for s in cfg.stage_sizes()],
        "bs": cfg.bs,
        "seed": cfg.seed,
        "init_from": cfg.init_from,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    train_conf = {
        "train": {"epochs": cfg.epochs, "lr": res.lr, "bs": cfg.bs, "schedule": summary["schedule"]}
    }
    train_conf["train"].update(mixup=cfg.mixup, lr_ratio=cfg.lr_ratio)
    train_conf["options"] = given
    save_run(run_dir, res.cfg, res.model.state_dict(), st.history, summary, train_conf)
    if not (cancel is not None and cancel.now):
        # the validation items' residuals, so predict --coverage calibrates on datasets the run never saw
        valid = [ds.item(samples[i].name) for i in valid_idx]
        save_calibration(run_dir, res.model, res.cfg, valid, {samples[i].name: samples[i].label for i in valid_idx},
                         res.device)  # fmt: skip
    info = RunInfo(run_id, run_dir, st.best_metrics, st.best_epoch, st.cancelled, summary, res.model)
    end = (run_id, str(run_dir), st.best_metrics, st.best_epoch)
    if st.cancelled:
        on_event(events.cancelled(f"stopped after epoch {st.epoch}; best epoch saved", *end))
    else:
        on_event(events.finished(*end))
    return info


def lr_find(
    ds: Dataset,
    store: LabelStore | None,
    cfg: TrainConfig,
    on_event: OnEvent = no_event,
    cancel: CancelToken | None = None,
) -> float:
    """Run the LR finder on the training split and return its suggestion (also sent as an ``lr_find`` event)."""
    cfg, samples, _ = prepare(ds, store, cfg)
    train_idx, valid_idx, _ = split_groups(samples, cfg.valid_groups, cfg.valid_pct, cfg.seed)
    set_seed(cfg.seed)
    device = resolve_device(cfg.device)
    cfg = fill_bs(cfg, device)
    used = sorted(train_idx) + sorted(valid_idx)
    learn = _learner(
        [samples[i] for i in used], list(range(len(train_idx), len(used))), cfg, cfg.stage_sizes()[0], device,
        on_event, cancel,
    )  # fmt: skip
    return _run_lr_find(learn, on_event, cancel)
