"""``imgreg train --nproc N``: torchrun starts the data-parallel ranks; this process relays rank 0's events."""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from engine.cli.common import CliError, fmt_metrics, open_with_store, parse_list
from engine.cli.reporter import Reporter, stdin_control
from engine.core import Cancelled
from engine.events import Event, EventError, check_event, failed

WORKER_ENV = "IMGREG_DDP_WORKER"  # set for the ranks torchrun starts (engine.learn.distributed reads it too)
ARGV_ENV = "IMGREG_DDP_ARGV"  # the ranks' ``imgreg`` arguments (JSON list; read by engine/cli/__main__.py)
DIR_ENV = "IMGREG_DDP_DIR"  # the launcher's scratch folder: each failing rank writes failed-<rank>.json there


def add_options(s: argparse.ArgumentParser, ranking: bool = False) -> None:
    """``--gpus`` and, for training, ``--nproc`` and torchrun's rendezvous; for ranking, ``--parallel``."""
    s.add_argument(
        "--gpus", type=parse_list, help="GPUs to use, e.g. 0,1,3 (default: all) with --nproc or --parallel"
    )
    if ranking:
        s.add_argument(
            "--parallel", type=int, default=1, help="folds trained at a time, one process per GPU (or CPU)"
        )
        return
    g = s.add_argument_group("data-parallel training (torchrun)")
    g.add_argument(
        "--nproc", type=int, help="processes on this machine: one per GPU (default: the --gpus count)"
    )
    g.add_argument("--nnodes", type=int, default=1, help="machines taking part (torchrun --nnodes)")
    g.add_argument("--node-rank", type=int, default=0, help="this machine's number, 0 on the one that saves")
    g.add_argument(
        "--rdzv-endpoint", help="HOST:PORT of machine 0, where the machines meet (several machines)"
    )
    s.add_argument("--parallel", type=int, default=1, help="with --folds: folds trained at a time")


def wanted(args: argparse.Namespace) -> bool:
    """Whether ``imgreg train`` must run data-parallel (a launcher here, or a rank torchrun started)."""
    if getattr(args, "folds", None):
        if args.nproc is not None or (args.nnodes or 1) > 1:
            raise CliError("--folds trains folds side by side with --parallel P, not --nproc")
        return False
    if (args.parallel or 1) > 1:
        raise CliError(
            "--parallel runs folds side by side: use it with --folds K (or --nproc N for one training)"
        )
    asked = args.nproc is not None or bool(args.gpus) or (args.nnodes or 1) > 1
    return asked or os.environ.get(WORKER_ENV) == "1"


def fold_options(args: argparse.Namespace) -> dict[str, Any]:
    """``out_of_fold``'s ``parallel`` and ``devices`` (``--gpus``; else chosen from ``--device``)."""
    p = getattr(args, "parallel", 1) or 1
    if p < 1:
        raise CliError("--parallel must be at least 1")
    gpus = getattr(args, "gpus", None)
    return {"parallel": p, "devices": [f"cuda:{g}" for g in gpus] if gpus else None}


def run(args: argparse.Namespace, make_config: Callable[..., Any]) -> int:
    """Run ``imgreg train`` data-parallel: as a torchrun rank, or as the launcher of torchrun.

    ``make_config(args, rep)`` builds the ``TrainConfig`` (``engine.cli.model.train_config``).
    """
    if getattr(args, "lr_find", False) or args.lr is None:
        raise CliError(
            "the LR finder runs in one process: run `imgreg train --lr-find` first, then --lr VALUE"
        )
    if os.environ.get(WORKER_ENV) == "1":
        return worker(args, make_config)
    return launch(args)


def _nproc(args: argparse.Namespace) -> tuple[int, bool]:
    """(processes on this machine, on GPUs)."""
    import torch

    gpus = torch.cuda.device_count() if args.device != "cpu" and torch.cuda.is_available() else 0
    if args.device.startswith("cuda") and not gpus:
        raise CliError(f"device {args.device!r} asked for but no CUDA GPU is available")
    if args.device.startswith("cuda:") and not args.gpus:
        args.gpus = [args.device.split(":", 1)[1]]  # --device cuda:N is --gpus N
    if args.gpus:
        bad = [g for g in args.gpus if not g.isdigit() or int(g) >= gpus]
        if bad:
            raise CliError(f"--gpus {','.join(bad)}: this machine has {gpus} GPU(s)")
        gpus = len(args.gpus)
    n = args.nproc or gpus
    if n < 1:
        raise CliError("--nproc must be at least 1 (with --device cpu, say how many processes)")
    if gpus and n > gpus:
        raise CliError(f"--nproc {n} but {gpus} GPU(s): one process per GPU (or --device cpu)")
    return n, bool(gpus)


def torchrun_command(args: argparse.Namespace, n: int) -> list[str]:
    """``python -m torch.distributed.run`` starting this machine's ``n`` ranks (``python -m engine.cli``)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(n)]
    if (args.nnodes or 1) > 1:
        if not args.rdzv_endpoint:
            raise CliError("several machines need --rdzv-endpoint HOST:PORT (machine 0's address)")
        cmd += ["--nnodes", str(args.nnodes), "--node-rank", str(args.node_rank)]
        cmd += ["--rdzv-backend", "static", "--rdzv-endpoint", args.rdzv_endpoint]
    else:
        cmd += ["--standalone"]  # torchrun's own rendezvous on a free local port
    # the ranks' own arguments travel in ARGV_ENV: torchrun would take some of them (--node-rank) for its own
    return [*cmd, "--max-restarts", "0", "-m", "engine.cli"]


def _worker_argv(argv: list[str]) -> list[str]:
    """The ranks run the same command with JSON events (the launcher renders them)."""
    return argv if "--json" in argv else [*argv, "--json"]


def launch(args: argparse.Namespace) -> int:
    """Start torchrun as a child, relay rank 0's events, report one failure, leave nothing running."""
    rep = Reporter(args.json)
    n, on_gpu = _nproc(args)
    _, store = open_with_store(args.dataset)  # a bad path fails here, at once; the store is synced once
    store.close()
    tmp = Path(tempfile.mkdtemp(prefix="imgreg-ddp-"))
    env = {**os.environ, WORKER_ENV: "1", DIR_ENV: str(tmp), ARGV_ENV: json.dumps(_worker_argv(args.argv))}
    if args.gpus:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(args.gpus)
    if not on_gpu:
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // n)))
    cmd = torchrun_command(args, n)
    log = tmp / "torchrun.log"
    t0 = time.perf_counter()
    events: dict[str, Any] = {}
    with open(log, "w") as err:
        proc = subprocess.Popen(
            cmd,
            stdin=None if args.control_stdin else subprocess.DEVNULL,  # rank 0 reads stop/cancel lines
            stdout=subprocess.PIPE,
            stderr=err,
            env=env,
            text=True,
            start_new_session=True,
            preexec_fn=_parent_death_term,
        )
        main = threading.current_thread() is threading.main_thread()
        old = signal.signal(signal.SIGTERM, _exit_on_term) if main else None
        try:
            for line in proc.stdout or ():  # stdout=PIPE
                _relay(line, rep, events, err)
            rc = proc.wait()
        finally:
            if main:
                signal.signal(signal.SIGTERM, old)
            _stop(proc)
    if rc != 0:
        msg = _failure(tmp) or events.get("failed") or f"torchrun exited with code {rc}"
        if args.json:
            rep(failed(msg))
        raise CliError(f"{msg} (details: {log})")
    shutil.rmtree(tmp, ignore_errors=True)
    data = events.get("summary")
    if data is None:
        rep.summary({"node_rank": args.node_rank}, "this machine's ranks finished; machine 0 saved the run")
        return 0
    data.update(time_s=time.perf_counter() - t0)
    if data.get("cancelled") and not data.get("run_id"):
        rep.summary(data, "cancelled: no run saved")
        return 1
    rep.summary(data, f"run {data['run_id']} saved in {data['run_dir']} ({data.get('world_size')} processes)\n"
                f"{fmt_metrics(data['metrics'])}")  # fmt: skip
    return 0


def _relay(line: str, rep: Reporter, events: dict[str, Any], log: Any) -> None:
    """Pass one of rank 0's event lines on; keep its summary and failure for the end."""
    try:
        e = json.loads(line)
    except json.JSONDecodeError:
        log.write(line)
        return
    try:
        ev = check_event(e)
    except EventError:
        log.write(line)
        return
    if ev["type"] == "summary":
        events["summary"] = {k: v for k, v in ev.items() if k != "type"}
    elif ev["type"] == "failed":
        events.setdefault("failed", ev["message"])
    else:
        rep(ev)


def _failure(tmp: Path) -> str | None:
    """The first failure any rank of this machine recorded (later ones are usually its consequences)."""
    found = []
    for f in tmp.glob("failed-*.json"):
        try:
            found.append(json.loads(f.read_text()))
        except (OSError, ValueError):
            continue
    if not found:
        return None
    first = min(found, key=lambda d: d.get("time", 0.0))
    return f"rank {first.get('rank')}: {first.get('message')}"


def _parent_death_term() -> None:
    """In the torchrun child (Linux): SIGTERM when this launcher dies, even by SIGKILL (torchrun stops its ranks)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG


def _exit_on_term(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def _stop(proc: subprocess.Popen, grace_s: float = 15.0) -> None:
    """Stop torchrun and its ranks if they still run (SIGTERM, then SIGKILL to the whole group)."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue
        except ProcessLookupError:
            return


def worker(args: argparse.Namespace, make_config: Callable[..., Any]) -> int:
    """One rank: train its shard; rank 0 prints the events and the summary, every rank records its failure."""
    from engine.learn import distributed
    from engine.learn.train import train

    distributed.die_with_parent()
    r = int(os.environ.get("RANK", "0"))
    rep = Reporter(True, out=sys.stdout if r == 0 else open(os.devnull, "w"))
    store = None
    try:
        dev = distributed.init(args.device)
        with distributed.rank0_first():  # rank 0 syncs the label store first
            ds, store = open_with_store(args.dataset)
        with stdin_control(args.control_stdin and r == 0) as token:
            cfg = replace(make_config(args, rep), device=dev)
            try:
                info = train(ds, store, cfg, rep if r == 0 else _quiet, token)
            except Cancelled:
                rep.summary({"run_id": None, "run_dir": None, "metrics": {}, "cancelled": True}, "")
                return 0
        data = {"run_id": info.run_id, "run_dir": str(info.run_dir), "metrics": info.metrics,
                "best_epoch": info.best_epoch, "cancelled": info.cancelled,
                "world_size": distributed.world_size()}  # fmt: skip
        rep.summary(data, "")
        return 0
    except BaseException as e:  # noqa: BLE001  (recorded for the launcher, which reports one failure)
        _record_failure(r, e)
        return 1
    finally:
        if store is not None:
            store.close()
        distributed.finish()


def _quiet(e: Event) -> None:
    """Ranks other than 0 report nothing."""


def _record_failure(rank: int, e: BaseException) -> None:
    """Write ``failed-<rank>.json`` (time, rank, one-line message) for the launcher; the traceback to the log."""
    from engine.learn.distributed import one_line

    msg = one_line(e)
    traceback.print_exc(file=sys.stderr)
    folder = os.environ.get(DIR_ENV)
    if folder:
        rec = {"time": time.time(), "rank": rank, "message": msg}
        Path(folder, f"failed-{rank}.json").write_text(json.dumps(rec))
