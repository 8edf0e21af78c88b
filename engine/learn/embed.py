"""Item embeddings: a trained run's (or the ImageNet backbone's) pooled features, taken with a forward hook.

A run's body output is pooled as its pooled head's first layer does (fastai's ``AdaptiveConcatPool2d``: max and
average); the ImageNet body's as torchvision's classifier does (average, which keeps planted near-duplicates
further from distinct faces than concat pooling in ``benchmarks/bench_similar.py``). One vector per item, stored float16 per source by ``engine.runs.embeddings``; only new or changed
images are embedded again.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from fastai.callback.hook import hook_output
from fastai.layers import AdaptiveConcatPool2d
from torch import nn

from engine import events
from engine.core import Cancelled, CancelToken, Dataset, Item, OnEvent, no_event
from engine.data.cache import ImageCache, cache_dir, open_cache
from engine.data.shape import auto_size
from engine.data.squish import squished_batches
from engine.learn.backbones import IMAGENET_STATS, backbone
from engine.learn.device import resolve_device
from engine.learn.models import load_run
from engine.learn.predict import default_items, to_batch
from engine.runs.embeddings import (
    EmbeddingError,
    Embeddings,
    embeddings_path,
    item_key,
    load_embeddings,
    merge,
    save_embeddings,
    stale_items,
)
from engine.weights import local_weights

IMAGENET_ARCH = "mobilenet_v2"
FALLBACK_ARCH = "resnet18"
SAME = ("run_dir", "size", "arch", "pool")
"""Metadata that must match for stored vectors to be reused."""


@dataclass
class Embedder:
    """A model, the module whose output is pooled into the embedding, and how to feed it."""

    model: nn.Module
    hooked: nn.Module
    size: tuple[int, int]
    stats: tuple[list[float], list[float]]
    source: str
    meta: dict[str, Any]
    pool: str = "concat"


def imagenet_weights(arch: str = IMAGENET_ARCH) -> Path | None:
    """ImageNet weights of ``arch`` on this machine (torchvision's cache or an offline package), or None."""
    return local_weights(arch)


def model_body(model: nn.Module) -> nn.Module:
    """The backbone of a run's model (``model.body`` of the spatial head, ``model[0]`` of the pooled one)."""
    body = getattr(model, "body", None)
    return body if isinstance(body, nn.Module) else cast(nn.Sequential, model)[0]


def run_embedder(run_dir: Path | str) -> Embedder:
    """The embedder of a saved run: its whole model runs, the hook takes the body's output."""
    run = load_run(run_dir)
    body = model_body(run.model)
    meta = {"source": run.run_id, "run_dir": str(Path(run_dir).resolve()), "arch": run.cfg.arch,
            "size": list(run.cfg.size), "what": f"run {run.run_id} ({run.cfg.arch} backbone, pooled features)", "pool": "concat"}  # fmt: skip
    return Embedder(run.model, body, (run.cfg.size[0], run.cfg.size[1]), run.cfg.normalize, run.run_id, meta)


def imagenet_embedder(size: tuple[int, int]) -> Embedder:
    """The ImageNet MobileNetV2 body when its weights are found, else a seeded random ResNet18 body (weak)."""
    path = imagenet_weights()
    if path is not None:
        body, _ = backbone(IMAGENET_ARCH, weights=path)
        source, what = f"imagenet-{IMAGENET_ARCH}", f"ImageNet {IMAGENET_ARCH} backbone ({path.name})"
    else:
        torch.manual_seed(0)
        body, _ = backbone(FALLBACK_ARCH, pretrained=False)
        source = f"random-{FALLBACK_ARCH}"
        what = f"no ImageNet weights found: a randomly initialised {FALLBACK_ARCH} (seed 0), weak features"
    meta = {"source": source, "run_dir": None, "arch": IMAGENET_ARCH if path else FALLBACK_ARCH,
            "size": list(size), "what": what, "pool": "avg"}  # fmt: skip
    return Embedder(body.eval(), body, (size[0], size[1]), IMAGENET_STATS, source, meta, pool="avg")


def embed_vectors(
    emb: Embedder,
    items: list[Item],
    on_event: OnEvent = no_event,
    cancel: CancelToken | None = None,
    device: torch.device | str = "cpu",
    bs: int = 32,
    workers: int = 2,
    done_before: int = 0,
    total: int | None = None,
    cache: ImageCache | None = None,
) -> tuple[list[str], np.ndarray, list[str]]:
    """Names, pooled vectors (float32) and file keys of the readable ``items`` (stops early on cancel); images come
    from ``cache`` (of ``emb.size``) when it holds the unchanged file, else they are decoded."""
    device = torch.device(device)
    model = emb.model.to(device).eval()
    pool = AdaptiveConcatPool2d() if emb.pool == "concat" else nn.AdaptiveAvgPool2d(1)
    total = len(items) if total is None else total
    names: list[str] = []
    keys: list[str] = []
    vecs: list[np.ndarray] = []
    done = done_before
    with hook_output(emb.hooked, detach=True, cpu=False) as hook, torch.inference_mode():
        for batch in squished_batches(items, emb.size, bs, workers, cache):
            if cancel is not None and cancel.requested:
                break
            ok = [b for b in batch if b.img is not None]
            if ok:
                model(to_batch([b.img for b in ok if b.img is not None], emb.stats, device))
                feats = pool(hook.stored.float()).flatten(1).cpu().numpy()
                vecs.append(feats)
                names += [b.item.name for b in ok]
                keys += [item_key(b.item.path) for b in ok]
            done += len(batch)
            on_event(events.progress("embed_progress", done, total))
    dim = vecs[0].shape[1] if vecs else 0
    return names, (np.concatenate(vecs) if vecs else np.zeros((0, dim), np.float32)), keys


def embed(
    ds: Dataset,
    store_dir: Path | str,
    run_dir: Path | str | None = None,
    items: list[Item] | list[str] | None = None,
    on_event: OnEvent = no_event,
    cancel: CancelToken | None = None,
    device: str = "auto",
    bs: int = 32,
    size: tuple[int, int] | None = None,
) -> tuple[Embeddings, Path]:
    """Embed the items of ``ds`` that are new or changed, store all under ``store_dir``, return them and the file.

    Without ``run_dir`` the ImageNet backbone embeds at ``size`` (default: the data's shape, long side 160, small
    images enlarged: at their own 48-96 px its features of re-encoded copies drift apart). Images come from the
    decoded-image cache of that input size under ``store_dir`` when one is built (the items it holds unchanged).
    A cancel keeps the vectors computed so far (saved) and raises ``Cancelled``.
    """
    emb_r = (
        run_embedder(run_dir)
        if run_dir is not None
        else imagenet_embedder(size or auto_size(ds, 160, upscale=True))
    )
    path = embeddings_path(store_dir, emb_r.source)
    try:
        old = load_embeddings(path)
    except EmbeddingError as e:
        on_event(events.note(f"{e}: computing them again"))
        old = None
    if old is not None and {k: old.meta.get(k) for k in SAME} != {k: emb_r.meta[k] for k in SAME}:
        old = None
    want = default_items(ds, items)
    todo = stale_items(old, want)
    on_event(events.note(f"embedding {len(todo)} of {len(want)} items with {emb_r.meta['what']}"))
    # the training cache of this input size, when built: its squished images are what decoding would give
    cache = open_cache(cache_dir(store_dir, emb_r.size), emb_r.size) if todo else None
    if cache is not None:
        on_event(events.note(f"reading images from the decoded-image cache {cache.dir}"))
    dev = resolve_device(device)
    names, vecs, keys = embed_vectors(
        emb_r,
        todo,
        on_event,
        cancel,
        dev,
        bs,
        done_before=len(want) - len(todo),
        total=len(want),
        cache=cache,
    )
    res = merge(old, names, vecs, keys)
    res.meta = dict(emb_r.meta)
    if items is None:
        res = res.subset([it.name for it in ds.items if it.name in res])
    save_embeddings(path, res)
    if cancel is not None and cancel.requested and len(names) < len(todo):
        on_event(events.cancelled(f"stopped after embedding {len(names)} of {len(todo)} items"))
        raise Cancelled("embedding stopped")
    return res, path
