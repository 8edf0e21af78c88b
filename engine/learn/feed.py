"""Batches on the device: whole batches gathered by index from the decoded-image cache, fastai's batch augmentation
and normalisation on the whole batch, and the training step's device settings (channels-last, bf16, cuDNN).

On a GPU the cached uint8 images live in GPU memory when they fit (else in pinned host memory, each batch copied
asynchronously one batch ahead); on a CPU batches are read from the memory-mapped cache. No per-item Python runs
in the training loop: one gather per batch, then fastai's ``aug_transforms`` on the whole batch (points move with
the image) exactly as the decode-every-epoch path applies them.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from fastai.data.core import DataLoaders
from fastai.torch_core import TensorImage
from fastai.vision.core import TensorPoint

from engine import events
from engine.core import Cancelled, CancelToken, OnEvent, no_event
from engine.data.cache import CacheSpaceError, ImageCache, cache_dir, ensure_cache, file_key, open_cache
from engine.learn.augment import Aug
from engine.learn.augment import augment as augment_batch
from engine.learn.dls import Sample

GPU_SHARE = 0.5
"""The cache goes to GPU memory when it takes at most this share of the free memory (the rest is the model's)."""


def train_cache(cfg: Any, size: tuple[int, int] | None = None) -> ImageCache | None:
    """The already built cache for a config (``cfg.cache_dir``) at ``size`` (default ``cfg.size``), or None."""
    if not getattr(cfg, "cache", False) or not getattr(cfg, "cache_dir", None):
        return None
    return open_cache(cache_dir(cfg.cache_dir, tuple(size or cfg.size)), tuple(size or cfg.size))


def build_for(
    samples: list[Sample],
    store_dir: Path | str,
    size: tuple[int, int],
    on_event: OnEvent = no_event,
    cancel: CancelToken | None = None,
) -> tuple[ImageCache, np.ndarray] | None:
    """The cache of ``samples`` at ``size`` (built as needed) and each sample's slot; None (after a ``note``) when
    the cache cannot be used, so training decodes on the fly as before."""
    try:
        cache = ensure_cache(
            cache_dir(store_dir, size), size, [(s.name, s.path) for s in samples], on_event, cancel
        )
    except Cancelled:
        on_event(events.cancelled("stopped while building the image cache"))
        raise
    except CacheSpaceError as e:
        on_event(events.note(f"{e}: decoding images on the fly instead"))
        return None
    except OSError as e:
        on_event(events.note(f"cannot write the image cache ({e}): decoding images on the fly"))
        return None
    slots = np.array([cache.slot(s.name, file_key(s.path)) for s in samples], dtype=np.int64)
    bad = int((slots < 0).sum())
    if bad:
        on_event(
            events.note(f"{bad} image(s) could not be decoded into the cache: decoding images on the fly")
        )
        return None
    return cache, slots


class Images:
    """The used cached images (n, h, w, 3) uint8, where batches are gathered: GPU memory, pinned host memory
    (copied one batch ahead) or the memory map (CPU)."""

    def __init__(
        self, arr: np.ndarray, slots: np.ndarray, device: torch.device, mode: str | None = None
    ) -> None:
        self.device = device
        n, (h, w) = len(slots), arr.shape[1:3]
        nbytes = n * h * w * 3
        self.mode = mode or "host"
        if mode is None and device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            # memory the caching allocator holds but no tensor uses (an earlier fold's images) is free to us
            free += torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
            self.mode = "device" if nbytes <= GPU_SHARE * free else "pinned"
        if self.mode == "host":
            self.arr, self.slots = arr, slots
            return
        try:
            dst = self._alloc((n, h, w, 3))
        except torch.cuda.OutOfMemoryError:
            self.mode = "pinned"
            dst = self._alloc((n, h, w, 3))
        step = 256
        for i in range(0, n, step):
            # sorted chunks read the memory map mostly in order
            dst[i : i + step].copy_(torch.from_numpy(np.ascontiguousarray(arr[slots[i : i + step]])))
        self.data = dst
        self._bufs: list[torch.Tensor] = []
        self._evs: list[Any] = [None, None]
        self._k = 0

    def _alloc(self, shape: tuple[int, ...]) -> torch.Tensor:
        """Room for the images: on the device, or pinned host memory."""
        pinned = self.mode == "pinned"
        return torch.empty(
            shape, dtype=torch.uint8, device="cpu" if pinned else self.device, pin_memory=pinned
        )

    def fetch(self, idx: torch.Tensor, idx_dev: torch.Tensor) -> torch.Tensor:
        """The images at ``idx`` (``idx_dev``: the same indices on the device) as (bs, h, w, 3) uint8 on the device;
        an asynchronous copy when the images are in pinned host memory."""
        if self.mode == "device":
            return self.data.index_select(0, idx_dev)
        if self.mode == "host":
            x = torch.from_numpy(np.ascontiguousarray(self.arr[self.slots[idx.numpy()]]))
            return x if self.device.type == "cpu" else x.to(self.device)
        # pinned: two staging buffers, so filling the next batch never overwrites one still being copied
        bs = len(idx)
        if not self._bufs or self._bufs[0].shape[0] < bs:
            self._bufs = [
                torch.empty((bs, *self.data.shape[1:]), dtype=torch.uint8, pin_memory=True) for _ in "ab"
            ]
            self._evs = [None, None]
        k = self._k
        if self._evs[k] is not None:
            self._evs[k].synchronize()
        buf = self._bufs[k][:bs]
        torch.index_select(self.data, 0, idx, out=buf)
        out = buf.to(self.device, non_blocking=True)
        self._evs[k] = torch.cuda.Event()
        self._evs[k].record()
        self._k = 1 - k
        return out


class FeedLoader:
    """A fastai-compatible loader of whole batches gathered by index from ``Images``, then augmented and normalised
    on the device. ``items`` are the samples in loader order (``PixelError`` reads their sizes)."""

    n_inp = 1

    def __init__(
        self,
        imgs: Images,
        ys: torch.Tensor,
        items: list[Sample],
        bs: int,
        train: bool,
        aug: Aug | None,
        stats: tuple[list[float], list[float]] | None,
        kind: str,
        seed: int = 42,
    ) -> None:
        self.imgs, self.items, self.bs, self.kind = imgs, items, bs, kind
        self.shuffle = self.drop_last = train
        self.aug = aug if train else None
        self.gen = torch.Generator().manual_seed(seed)
        self.device = imgs.device
        self.ys = ys.to(self.device)
        self.stats = None
        if stats is not None:
            self.stats = tuple(torch.tensor(v, device=self.device).view(1, 3, 1, 1) for v in stats)
        self.channels_last = self.device.type == "cuda"

    @property
    def n(self) -> int:
        """Number of items."""
        return len(self.items)

    def __len__(self) -> int:
        return self.n // self.bs if self.drop_last else math.ceil(self.n / self.bs)

    def to(self, device: torch.device | str) -> FeedLoader:
        """fastai's ``DataLoaders.device`` setter calls this; the images already live where they should."""
        return self

    def _order(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Index batches on the host and on the device: shuffled (each batch sorted, for reads in file order) or in
        order. One copy to the device per epoch, so no batch waits for the GPU to catch up."""
        if self.shuffle:
            perm = torch.randperm(self.n, generator=self.gen)[: len(self) * self.bs]
            perm = perm.view(len(self), self.bs).sort(1).values.reshape(-1)
        else:
            perm = torch.arange(self.n)
        dev = perm.to(self.device)
        return list(zip(perm.split(self.bs), dev.split(self.bs), strict=True))

    def __iter__(self):
        batches = self._order()
        if not batches:
            return
        nxt = self.imgs.fetch(*batches[0])
        for k, (_, idx_dev) in enumerate(batches):
            cur = nxt
            if k + 1 < len(batches):
                nxt = self.imgs.fetch(*batches[k + 1])
            yield self.finish(cur, idx_dev)

    def finish(self, xb: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 (bs, h, w, 3) images and their indices (on the device) to the model's (x, y): float, augmented,
        normalised."""
        x = xb.permute(0, 3, 1, 2).float().div_(255)
        y = self.ys[idx]
        if self.aug is not None:
            x, pts = augment_batch(x, y if self.kind == "point" else None, self.aug)
            y = pts if pts is not None else y
        if self.stats is not None:
            x = (x - self.stats[0]) / self.stats[1]
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        # fastai's types, as its own loaders give them (losses and metrics see the same batches)
        x = TensorImage(x.contiguous(memory_format=fmt))
        return x, TensorPoint(y) if self.kind == "point" else y

    def one_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The first batch."""
        idx = torch.arange(min(self.bs, self.n))
        return self.finish(self.imgs.fetch(idx, idx.to(self.device)), idx.to(self.device))


def targets(samples: list[Sample], kind: str) -> torch.Tensor:
    """Training targets: points in [-1, 1] (n, n_points, 2) from each item's own size, or scalars (n,)."""
    if kind == "point":
        # float32 arithmetic in fastai's order (``PointScaler``), so targets equal the decode path's bit for bit
        pts = torch.tensor([s.label for s in samples], dtype=torch.float32).view(len(samples), -1, 2)
        sizes = torch.tensor([s.size for s in samples], dtype=torch.float32)
        return pts * 2 / sizes[:, None, :] - 1
    return torch.tensor([float(s.label[0]) for s in samples], dtype=torch.float32)


def feed_dls(
    samples: list[Sample],
    valid_idx: list[int],
    kind: str,
    size: tuple[int, int],
    bs: int,
    device: torch.device,
    arr: np.ndarray,
    slots: np.ndarray,
    n_points: int = 1,
    augment: bool = True,
    seed: int = 42,
    stats: tuple[list[float], list[float]] | None = None,
) -> DataLoaders:
    """fastai ``DataLoaders`` over cached images ``arr[slots[i]]`` of ``samples``: the same batches, augmentation
    and normalisation as ``make_dls``, gathered on the device."""
    vset = set(valid_idx)
    t_idx = [i for i in range(len(samples)) if i not in vset]
    v_idx = sorted(valid_idx)
    # Flipping swaps the meaning of ordered points (left/right eye), so only single points are flipped.
    aug = Aug(flip=kind == "scalar" or n_points == 1) if augment else None
    ys = targets(samples, kind)
    out = []
    for idx, train in ((t_idx, True), (v_idx, False)):
        imgs = Images(arr, slots[idx], device)
        items = [samples[i] for i in idx]
        # a batch size above the training set would leave no full batch (the last partial one is dropped)
        b = max(1, min(bs, len(idx))) if train else bs
        out.append(FeedLoader(imgs, ys[idx], items, b, train, aug, stats, kind, seed))
    return DataLoaders(*out, device=device)


def cached_dls(
    samples: list[Sample],
    valid_idx: list[int],
    cfg: Any,
    size: tuple[int, int],
    device: torch.device,
    on_event: OnEvent = no_event,
    cancel: CancelToken | None = None,
) -> DataLoaders | None:
    """``feed_dls`` from the cache in ``cfg.cache_dir`` (built as needed), or None when it cannot be used."""
    if not getattr(cfg, "cache", False) or not getattr(cfg, "cache_dir", None):
        return None
    size = (int(size[0]), int(size[1]))
    got = build_for(samples, cfg.cache_dir, size, on_event, cancel)
    if got is None:
        return None
    cache, slots = got
    on_event(events.note(f"training from the decoded-image cache {cache.dir}"))
    return feed_dls(
        samples, valid_idx, cfg.kind, size, cfg.bs, device, cache.array, slots, cfg.n_points, cfg.augment,
        cfg.seed, stats=cfg.normalize,
    )  # fmt: skip


def tune_step(learn: Any, device: torch.device, mixed_precision: bool = True) -> None:
    """On a GPU: cuDNN autotuning, a channels-last model, bf16 autocast where supported (else fp16 with a scaler)."""
    if device.type != "cuda":
        return
    torch.backends.cudnn.benchmark = True
    learn.model.to(memory_format=torch.channels_last)
    if mixed_precision:
        if torch.cuda.is_bf16_supported():
            learn.to_bf16()
        else:
            learn.to_fp16()


def gpu_bs(size: tuple[int, int], arch: str = "resnet34") -> int:
    """A batch size that keeps a GPU busy at ``size`` (h, w): 128 at 240x320, scaled by pixels, 16 to 512."""
    px = 240 * 320 / max(1, size[0] * size[1])
    bs = int(128 * px) // 8 * 8
    return max(16, min(512, bs))


def fill_bs(cfg: Any, device: torch.device) -> Any:
    """``cfg`` with a GPU-filling batch size when it asked for one (``auto_bs``) and trains on a GPU."""
    if not getattr(cfg, "auto_bs", False) or device.type != "cuda":
        return cfg
    return replace(cfg, bs=gpu_bs(tuple(cfg.stage_sizes()[-1]), cfg.arch))
