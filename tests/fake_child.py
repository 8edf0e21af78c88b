"""A scripted stand-in for ``imgreg train|predict|rank --json --control-stdin``, for tests of the GUI supervisor.

It prints the documented events one JSON line at a time, reads ``stop-epoch`` / ``cancel`` lines on stdin, and can
fail in several ways: ``--fail event`` (a ``failed`` event and exit 1), ``--fail raise`` (a traceback and no
event), ``--fail abort`` (killed by a signal), ``--ignore-cancel`` (has to be killed).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from engine import events  # noqa: E402  (the one definition of the events the real child prints)

state = {"stop": None}


def emit(ev: events.Event) -> None:
    """Print one event line, built with the engine's constructors and checked against their definition."""
    events.check_event(ev)
    sys.stdout.write(events.to_json(ev) + "\n")
    sys.stdout.flush()


def read_control(ignore_cancel: bool) -> None:
    """Read control lines until stdin closes."""
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "stop-epoch" and state["stop"] is None:
            state["stop"] = "epoch"
        elif cmd == "cancel" and not ignore_cancel:
            state["stop"] = "now"


def main() -> int:
    """Run the scripted job."""
    p = argparse.ArgumentParser()
    p.add_argument("command", nargs="?", default="train")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batches", type=int, default=4)
    p.add_argument("--sleep", type=float, default=0.01)
    p.add_argument("--fail", choices=["event", "raise", "abort"])
    p.add_argument("--fail-epoch", type=int, default=0)
    p.add_argument("--ignore-cancel", action="store_true")
    p.add_argument("--lr-find", action="store_true")
    p.add_argument("--run-id", default="fake-run")
    p.add_argument("--total", type=int, default=10)
    p.add_argument("--folds", type=int, default=0)
    p.add_argument("--parallel", type=int, default=1)
    p.add_argument("--fail-message", default="", help="predict --fail event: the failed event's message")
    p.add_argument("--items", default="", help="suggest: the items to suggest, best first, comma-separated")
    a, _ = p.parse_known_args()
    threading.Thread(target=read_control, args=(a.ignore_cancel,), daemon=True).start()
    print("fake child starting", file=sys.stderr, flush=True)
    if a.command == "suggest":
        names = [n for n in a.items.split(",") if n]
        for i in range(len(names)):
            emit(events.progress("predict_progress", i + 1, len(names)))
        emit(events.finished(a.run_id, "", {}))
        rows = [
            {"rank": r + 1, "item": n, "reason": "far from every labelled image"} for r, n in enumerate(names)
        ]
        emit(events.summary({"items": rows[::-1]}))  # out of order: the app sorts by rank
        return 0
    if a.command in ("predict", "rank"):
        if a.fail == "event" and a.fail_message:
            emit(events.failed(a.fail_message))
            return 1
        for i in range(a.total):
            if state["stop"] == "now":
                emit(events.cancelled("cancelled"))
                return 1
            time.sleep(a.sleep)
            emit(events.progress("predict_progress", i + 1, a.total))
        emit(events.finished(a.run_id, "", {}))
        emit(events.summary({"run_id": a.run_id, "run_dir": "", "metrics": {}}))
        return 0
    if a.lr_find:
        lrs = [10 ** (-6 + 5 * i / 49) for i in range(50)]
        losses = [1.0 + 0.5 * math.cos(i / 8) + (i / 40) ** 6 for i in range(50)]
        emit(events.lr_find(3e-3, lrs, losses))
        emit(events.summary({"suggestion": 3e-3}))
        return 0
    if a.parallel > 1:
        return side_by_side(a)
    for fold in range(max(1, a.folds)):
        if a.folds > 1:
            emit(events.fold(fold + 1, a.folds))
        emit(
            events.prepared(
                device="cpu",
                on_cpu=True,
                arch="resnet18",
                head="pooled",
                kind="point",
                n_train=10,
                n_valid=4,
                size=[64, 64],
                bs=4,
                epochs=a.epochs,
                n_batches=a.batches,
            )
        )
        if a.ignore_cancel:
            time.sleep(60)
        for ep in range(a.epochs):
            if a.fail and ep == a.fail_epoch:
                if a.fail == "event":
                    emit(events.failed("CUDA out of memory (fake)"))
                    return 1
                if a.fail == "abort":
                    os.abort()
                raise RuntimeError("boom in the fake child")
            for b in range(a.batches):
                if state["stop"] == "now":
                    # Like the engine: a run is saved only when an epoch had finished.
                    saved = {"run_id": a.run_id} if ep > 0 else {}
                    emit(events.cancelled("training cancelled", saved.get("run_id")))
                    emit(events.summary({"cancelled": True, **saved}))
                    return 0
                time.sleep(a.sleep)
                emit(
                    events.batch(epoch=ep + 1, batch=b + 1, n_batches=a.batches, loss=1.0 / (1 + ep + b / 4))
                )
            emit(
                events.epoch(
                    epoch=ep + 1,
                    epochs=a.epochs,
                    train_loss=1.0 / (1 + ep),
                    valid_loss=1.2 / (1 + ep),
                    metrics={"mean_px": 20.0 / (1 + ep)},
                )
            )
            if state["stop"] == "epoch":
                break
    metrics = {"mean_px": 10.0}
    emit(events.finished(a.run_id, "", metrics, 0))
    emit(events.summary({"run_id": a.run_id, "run_dir": "", "metrics": metrics}))
    return 0


def side_by_side(a: argparse.Namespace) -> int:
    """Folds ``--parallel`` at a time, their events interleaved and tagged with ``fold`` (like ``rank --parallel``)."""
    for first in range(0, a.folds, a.parallel):
        group = range(first, min(a.folds, first + a.parallel))
        for k in group:
            emit(events.fold(k + 1, a.folds))
        for ep in range(a.epochs):
            for b in range(a.batches):
                for k in group:
                    if state["stop"] == "now":
                        emit(events.cancelled("cancelled"))
                        return 1
                    time.sleep(a.sleep)
                    ev = events.batch(epoch=ep + 1, batch=b + 1, n_batches=a.batches, loss=0.5)
                    emit(events.tagged(ev, k + 1, a.folds))
            for k in group:
                ep_ev = events.epoch(
                    epoch=ep + 1, epochs=a.epochs, train_loss=0.5, valid_loss=0.6, metrics={"mean_px": 5.0}
                )
                emit(events.tagged(ep_ev, k + 1, a.folds))
    emit(events.finished(a.run_id, "", {}, 0))
    emit(events.summary({"run_id": a.run_id, "run_dir": "", "metrics": {}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
