"""Data-parallel training inside a torchrun worker: process group, training shards, the DDP fastai callback."""

from __future__ import annotations

import contextlib
import ctypes
import math
import os
import signal
import sys
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from fastai.callback.core import Callback
from torch.nn.parallel import DistributedDataParallel

from engine.core import CancelToken, OnEvent, no_event
from engine.options import SEED

WORKER_ENV = "IMGREG_DDP_WORKER"  # set by `imgreg train --nproc` for the processes torchrun starts
FAIL_ENV = "IMGREG_FAIL_RANK"  # fault injection for tests: this rank raises at its first training batch
_STOP_CODES = {None: 0, "epoch": 1, "now": 2}


def is_worker() -> bool:
    """Whether this process is one of the ranks torchrun started for ``imgreg train --nproc``."""
    return os.environ.get(WORKER_ENV) == "1" and "WORLD_SIZE" in os.environ


def active() -> bool:
    """Whether a process group of more than one process is running (DDP training)."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    """The number of training processes (1 without DDP)."""
    return dist.get_world_size() if active() else 1


def rank() -> int:
    """This process's global rank (0 without DDP)."""
    return dist.get_rank() if active() else 0


def is_main() -> bool:
    """Whether this process writes files and reports events: rank 0, or the only process."""
    return rank() == 0


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Linux: have the kernel send ``sig`` to this process when its parent dies, so nothing is left running."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(sig))  # PR_SET_PDEATHSIG


def one_line(e: BaseException) -> str:
    """An exception's message on one line, without fastai's "Exception occured in `Callback`" wrapper line."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    if len(lines) > 1 and lines[0].startswith("Exception occured in `"):
        lines = lines[1:]
    return lines[0] if lines else type(e).__name__


def init(device: str = "auto", timeout_s: float = 1800) -> str:
    """Join torchrun's process group (nccl on GPUs, gloo on the CPU); return this rank's device."""
    local = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device != "cpu" and torch.cuda.is_available()
    if device.startswith("cuda") and not use_cuda:
        raise ValueError(f"device {device!r} asked for but no CUDA GPU is available")
    dev = "cpu"
    if use_cuda:
        if local >= torch.cuda.device_count():
            raise ValueError(f"process {local} has no GPU: only {torch.cuda.device_count()} visible")
        torch.cuda.set_device(local)
        dev = f"cuda:{local}"
    dist.init_process_group("nccl" if use_cuda else "gloo", timeout=timedelta(seconds=timeout_s))
    return dev


def finish() -> None:
    """Leave the process group."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@contextlib.contextmanager
def rank0_first() -> Iterator[None]:
    """Each machine's first rank runs the block first (builds caches, syncs the label store), then the others."""
    if not active():
        yield
        return
    first = int(os.environ.get("LOCAL_RANK", rank())) == 0
    if not first:
        dist.barrier()
    yield
    if first:
        dist.barrier()


def warm_cache(
    samples: list[Any], cfg: Any, on_event: OnEvent = no_event, cancel: CancelToken | None = None
) -> None:
    """Build the decoded-image cache of ``samples`` at every stage size once, before several processes read it."""
    from engine.learn.feed import build_for

    if getattr(cfg, "cache", False) and getattr(cfg, "cache_dir", None):
        for size in cfg.stage_sizes():
            if build_for(samples, cfg.cache_dir, tuple(size), on_event, cancel) is None:
                return


def shard(idx: list[int], seed: int = SEED) -> list[int]:
    """This rank's share of the training indices (all of them without DDP).

    Like torch's ``DistributedSampler``: a seeded shuffle padded to a multiple of the world size, so every rank
    gets as many items, hence as many batches (DDP needs every rank to take the same number of steps).
    """
    n = world_size()
    if n == 1 or not idx:
        return list(idx)
    perm = np.random.default_rng(seed).permutation(len(idx)).tolist()
    total = math.ceil(len(idx) / n) * n
    perm = (perm * math.ceil(total / len(perm)))[:total]
    return sorted(idx[i] for i in perm[rank() :: n])


def hooks(cancel: CancelToken | None) -> tuple[CancelToken | None, list[Callback]]:
    """The token ``fit`` must obey and the callbacks to add: unchanged without DDP."""
    if not active():
        return cancel, []
    synced = CancelToken()
    return synced, [DDPCallback(cancel, synced)]


class DDPCallback(Callback):
    """Trains through ``DistributedDataParallel`` and keeps the ranks in step.

    The model is wrapped for each training phase and unwrapped for validation, so validation (over the whole
    validation set on every rank, after rank 0's BatchNorm statistics are broadcast) and the saved weights see the
    plain module. Every training batch, one small all-reduce shares rank 0's stop request (read from its
    ``--control-stdin``) and whether any rank's loss is not finite, so all ranks stop at the same batch.
    """

    order = 55  # before EngineCallback (60): the shared stop and NaN decisions are made before it looks

    def __init__(self, raw: CancelToken | None, synced: CancelToken) -> None:
        self.raw, self.synced = raw, synced
        self.module: torch.nn.Module | None = None
        self.fail = os.environ.get(FAIL_ENV) == str(rank())

    def before_train(self) -> None:
        """Wrap the model (again: fastai's freeze/unfreeze change which parameters train)."""
        self.module = self.learn.model
        dev = next(self.module.parameters()).device
        ids = [dev.index] if dev.type == "cuda" else None
        self.learn.model = DistributedDataParallel(self.module, device_ids=ids)

    def after_train(self) -> None:
        """Unwrap for validation and ``after_epoch`` (state dicts without the ``module.`` prefix)."""
        if self.module is not None:
            self.learn.model, self.module = self.module, None

    def after_fit(self) -> None:
        """Unwrap when a fit ends inside a training phase (cancel, NaN)."""
        self.after_train()

    def before_validate(self) -> None:
        """Every rank validates rank 0's model: broadcast BatchNorm running statistics."""
        for buf in self.learn.model.buffers():
            dist.broadcast(buf, 0)

    def before_batch(self) -> None:
        """Fault injection for the tests of failure handling."""
        if self.fail and self.training:
            raise RuntimeError(f"injected failure in rank {rank()} ({FAIL_ENV})")

    def after_loss(self) -> None:
        """Share rank 0's stop request and any rank's non-finite loss with every rank."""
        if not self.training:
            return
        loss = self.learn.loss.detach()
        code = _STOP_CODES[self.raw.mode] if self.raw is not None and rank() == 0 else 0
        flags = torch.tensor([float(code), 0.0 if torch.isfinite(loss).all() else 1.0], device=loss.device)
        dist.all_reduce(flags, op=dist.ReduceOp.MAX)
        code, bad = int(flags[0]), bool(flags[1])
        if code:
            self.synced.cancel("now" if code == 2 else "epoch")
        if bad and torch.isfinite(loss).all():
            # another rank's loss is NaN: this rank fails at the same batch (EngineCallback reports it)
            self.learn.loss = torch.full_like(loss, math.nan)
