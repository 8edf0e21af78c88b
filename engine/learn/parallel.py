"""Out-of-fold folds side by side: spawned processes, one per device, each fitting folds with the serial seeds."""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import queue
import threading
import time
from dataclasses import replace
from typing import Any

import torch

from engine import events
from engine.core import Cancelled, CancelToken, Item, Label, OnEvent, no_event
from engine.labels.store import PredictionRow
from engine.learn.distributed import warm_cache
from engine.learn.dls import Sample
from engine.learn.folds import fit_fold, fold_record, merge_neighbours
from engine.learn.train import TrainConfig, TrainingError

FAIL_ENV = "IMGREG_FAIL_FOLD"  # fault injection for tests: this fold (1-based) raises in its process


def fold_devices(device: str, parallel: int, devices: list[str] | None = None) -> list[str]:
    """One device per fold process: the given ones, the GPUs (``auto``/``cuda``), or the CPU ``parallel`` times."""
    if devices:
        if len(devices) < parallel:
            raise TrainingError(f"--parallel {parallel} needs as many GPUs; {len(devices)} given")
        return list(devices[:parallel])
    if device == "cpu" or (device == "auto" and not torch.cuda.is_available()):
        return ["cpu"] * parallel
    if device.startswith("cuda:"):
        raise TrainingError(f"--parallel {parallel} with one device ({device}): name GPUs with --gpus")
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if n < parallel:
        raise TrainingError(f"--parallel {parallel} needs {parallel} GPUs; {n} found (or use --device cpu)")
    return [f"cuda:{i}" for i in range(parallel)]


class _Forward:
    """A picklable ``on_event`` of a fold process: puts events on the result queue, tagged with the fold."""

    def __init__(self, out: Any, fold: int, folds: int) -> None:
        self.out, self.fold, self.folds = out, fold, folds

    def __call__(self, e: events.Event) -> None:
        self.out.put(("event", self.fold, events.tagged(e, self.fold + 1, self.folds)))


def _watch(stop_epoch: Any, stop_now: Any, token: CancelToken) -> None:
    """Copy the parent's stop requests (multiprocessing events) onto this process's token."""
    while not token.now:
        if stop_now.wait(0.1):
            token.cancel("now")
        elif stop_epoch.is_set() and not token.requested:
            token.cancel("epoch")


def _child(
    device: str,
    threads: int,
    tasks: Any,
    out: Any,
    stop_epoch: Any,
    stop_now: Any,
    job: dict[str, Any],
) -> None:
    """A fold process: fit and predict each fold it takes from ``tasks`` on ``device``, as the serial loop does."""
    from engine.learn.distributed import die_with_parent, one_line

    die_with_parent()
    if device == "cpu":
        torch.set_num_threads(threads)
    token = CancelToken()
    threading.Thread(target=_watch, args=(stop_epoch, stop_now, token), daemon=True).start()
    samples, cfg, total = job["samples"], job["cfg"], job["total"]
    while (task := tasks.get()) is not None:
        k, r, valid_idx = task  # k: the job's number (0-based over all repeats), r: its repeat
        if token.requested:
            out.put(("skipped", k, None))
            continue
        fwd = _Forward(out, k, total)
        out.put(("start", k, None))
        try:
            if os.environ.get(FAIL_ENV) == str(k + 1):
                raise RuntimeError(f"injected failure in fold {k + 1} ({FAIL_ENV})")
            # the serial loop's job: repeat r trains with seed + r
            out.put(("done", k, fit_fold(
                samples, valid_idx, replace(cfg, device=device), r, job["items"], job["labels"], job["bs"], fwd,
                token, {"fold": k + 1, "folds": total}, job["tta"], job["neighbours"],
            )))  # fmt: skip
        except Cancelled:
            out.put(("cancelled", k, None))
        except BaseException as e:  # noqa: BLE001  (reported once by the parent, which stops every process)
            out.put(("error", k, one_line(e)))
            break
    # deliver what was put, then skip the interpreter's teardown (seconds of garbage collection under torch)
    out.close()
    out.join_thread()
    os._exit(0)


def parallel_folds(
    samples: list[Sample],
    jobs: list[tuple[int, int, list[int]]],
    cfg: TrainConfig,
    items: dict[str, Item],
    labels: dict[str, Label],
    by_groups: bool,
    bs: int,
    parallel: int,
    devices: list[str] | None = None,
    on_event: OnEvent = no_event,
    cancel: CancelToken | None = None,
    tta: bool = True,
    neighbours: int = 0,
) -> tuple[list[list[PredictionRow]], list[dict[str, Any]], bool, dict[str, list[str]]]:
    """Fit and predict ``jobs`` ((repeat, fold, valid indices)) ``parallel`` at a time, as the serial loop does.

    Returns (rows per repeat, per-fold metrics, cancelled, the fold models' neighbours). Each fold gets the same
    samples, indices and config (seed + repeat) as in the serial loop, so the same model and rows. One failing fold
    stops every process and raises ``TrainingError`` after one ``failed`` event.
    """
    devs = fold_devices(cfg.device, min(parallel, len(jobs)), devices)
    warm_cache(samples, cfg, on_event, cancel)  # once, here: the fold processes then only read it
    threads = max(1, torch.get_num_threads() // len(devs))
    ctx = mp.get_context("spawn")
    tasks, out = ctx.Queue(), ctx.Queue()
    stop_epoch, stop_now = ctx.Event(), ctx.Event()
    n = len(jobs)
    for k, (r, _, valid_idx) in enumerate(jobs):
        tasks.put((k, r, valid_idx))
    for _ in devs:
        tasks.put(None)
    job = {"samples": samples, "cfg": cfg, "total": n, "items": items, "labels": labels, "bs": bs, "tta": tta,
           "neighbours": neighbours}  # fmt: skip
    procs = [
        ctx.Process(
            target=_child, args=(d, threads, tasks, out, stop_epoch, stop_now, job), name=f"imgreg-fold-{i}"
        )
        for i, d in enumerate(devs)
    ]
    results: dict[int, Any] = {}
    cancelled = False
    try:
        for p in procs:
            p.start()
        while len(results) < n:
            if cancel is not None and cancel.requested:
                (stop_now if cancel.now else stop_epoch).set()
            try:
                kind, k, data = out.get(timeout=0.2)
            except queue.Empty:
                dead = [p for p in procs if p.exitcode not in (None, 0)]
                if dead:
                    _fail(on_event, f"a fold process ended with exit code {dead[0].exitcode}")
                if all(p.exitcode is not None for p in procs) and out.empty():
                    _fail(on_event, "the fold processes ended before every fold was done")
                continue
            if kind == "event":
                if data.get("type") not in ("failed", "cancelled", "finished"):
                    on_event(data)
            elif kind == "start":
                on_event(events.fold(k + 1, n))
            elif kind == "error":
                _fail(on_event, f"fold {k + 1}: {data}")
            else:
                results[k] = data
                cancelled |= kind != "done" or bool(data.stopped)
    finally:
        _stop(procs, done=len(results) == n)
    rounds: dict[int, list[PredictionRow]] = {}
    fold_metrics: list[dict[str, Any]] = []
    nbrs: dict[str, list[str]] = {}
    for k, (r, fold, valid_idx) in enumerate(jobs):
        if (got := results.get(k)) is None:
            continue
        rounds.setdefault(r, []).extend(got.rows)
        merge_neighbours(nbrs, got.neighbours)
        fold_metrics.append(fold_record(samples, valid_idx, by_groups, fold, r, got.best))
    return [rounds[r] for r in sorted(rounds)], fold_metrics, cancelled, nbrs


def _fail(on_event: OnEvent, message: str) -> None:
    """Report a fold failure once and raise it (the caller's ``finally`` stops the processes)."""
    on_event(events.failed(message))
    raise TrainingError(message)


def _stop(procs: list[Any], done: bool = False, grace_s: float = 10.0) -> None:
    """End every fold process: let them exit when all is done, else terminate (then kill) them."""
    deadline = time.monotonic() + grace_s
    for p in procs:
        if done:
            with contextlib.suppress(AssertionError):
                p.join(max(0.0, deadline - time.monotonic()))
        if p.is_alive():
            p.terminate()
    for p in procs:
        with contextlib.suppress(AssertionError):
            p.join(max(0.0, deadline - time.monotonic()))
            if p.is_alive():
                p.kill()
                p.join(5)
