"""Run folders: ids, saving and loading config, history, weights (state dict only) and summary."""

from __future__ import annotations

import csv
import json
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from engine.arch import ModelConfig, WeightsError, build_model, load_state_dict
from engine.atomic import atomic_write_text

CONFIG = "config.json"
HISTORY = "history.csv"
WEIGHTS = "model.safetensors"
SUMMARY = "summary.json"
RUN_FORMAT = 1


class RunError(Exception):
    """A run folder is missing, incomplete or unreadable."""


@dataclass
class LoadedRun:
    """A model rebuilt from a run folder, in eval mode on the CPU, with its config and summary."""

    run_id: str
    run_dir: Path
    cfg: ModelConfig
    model: nn.Module
    summary: dict[str, Any]


def runs_dir(store_dir: Path) -> Path:
    """The folder holding the runs of a store (``<store.dir>/runs``)."""
    return Path(store_dir) / "runs"


def new_run_id(parent: Path, prefix: str = "") -> str:
    """A fresh, sortable run id (``YYYYmmdd-HHMMSS`` plus a counter when taken) not yet used in ``parent``."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = f"{prefix}{stamp}"
    run_id, n = base, 1
    while (parent / run_id).exists():
        n += 1
        run_id = f"{base}-{n}"
    return run_id


def model_config_dict(cfg: ModelConfig) -> dict[str, Any]:
    """The model-defining fields of ``cfg`` as JSON-able values (rebuilding never needs pretrained weights)."""
    names = {f.name for f in fields(ModelConfig)}
    d = {k: v for k, v in asdict(cfg).items() if k in names}
    d["size"] = list(d["size"])
    d["y_range"] = list(d["y_range"]) if d["y_range"] is not None else None
    d["normalize"] = [list(d["normalize"][0]), list(d["normalize"][1])]
    d["pretrained"], d["weights"] = False, None
    return d


def config_from_dict(d: dict[str, Any]) -> ModelConfig:
    """A ``ModelConfig`` from ``config.json`` (unknown keys ignored)."""
    names = {f.name for f in fields(ModelConfig)}
    kw = {k: v for k, v in d.items() if k in names}
    kw["size"] = tuple(kw.get("size", (240, 320)))
    if kw.get("y_range") is not None:
        kw["y_range"] = tuple(kw["y_range"])
    if kw.get("normalize") is not None:
        kw["normalize"] = (list(kw["normalize"][0]), list(kw["normalize"][1]))
    kw["pretrained"], kw["weights"] = False, None
    return ModelConfig(**kw)


def _json_default(o: Any) -> Any:
    """JSON for paths, tuples and numpy scalars."""
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "item"):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write JSON atomically (temporary file, then rename)."""
    atomic_write_text(path, json.dumps(data, indent=2, default=_json_default, allow_nan=True))


def save_state_dict(path: Path, sd: dict[str, torch.Tensor]) -> None:
    """Save a state dict as safetensors (contiguous CPU copies; no pickled code)."""
    from safetensors.torch import save_file

    save_file({k: v.detach().cpu().contiguous().clone() for k, v in sd.items()}, str(path))


def save_run(
    run_dir: Path,
    cfg: ModelConfig,
    state_dict: dict[str, torch.Tensor],
    history: list[dict[str, Any]],
    summary: dict[str, Any],
    extra_config: dict[str, Any] | None = None,
) -> None:
    """Write a complete run folder: config.json, history.csv, model.safetensors, summary.json."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_state_dict(run_dir / WEIGHTS, state_dict)
    conf = {"format": RUN_FORMAT, **model_config_dict(cfg), "weights_file": WEIGHTS, **(extra_config or {})}
    write_json(run_dir / CONFIG, conf)
    cols = list(dict.fromkeys(k for row in history for k in row))
    with open(run_dir / HISTORY, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        w.writerows(history)
    # summary.json last: its presence marks the run as complete
    write_json(run_dir / SUMMARY, summary)


def read_history(run_dir: Path) -> list[dict[str, str]]:
    """Rows of ``history.csv`` (strings, as written)."""
    path = Path(run_dir) / HISTORY
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def read_summary(run_dir: Path) -> dict[str, Any]:
    """The run's ``summary.json`` ({} when absent or unreadable)."""
    try:
        return json.loads((Path(run_dir) / SUMMARY).read_text())
    except (OSError, ValueError):
        return {}


def is_run(path: Path) -> bool:
    """Whether ``path`` is a run folder (has config.json and weights)."""
    path = Path(path)
    return (path / CONFIG).is_file() and any((path / n).is_file() for n in (WEIGHTS, "model.pth"))


def list_runs(store_dir: Path) -> list[Path]:
    """Complete run folders of a store, oldest first."""
    parent = runs_dir(store_dir)
    if not parent.is_dir():
        return []
    return sorted(p for p in parent.iterdir() if p.is_dir() and is_run(p))


def resolve_run(spec: str | Path, store_dir: Path | None = None) -> Path:
    """A run folder from a run id of the store or a path to any run folder (RunError otherwise)."""
    path = Path(spec)
    if is_run(path):
        return path
    if store_dir is not None and is_run(runs_dir(store_dir) / str(spec)):
        return runs_dir(store_dir) / str(spec)
    known = ", ".join(p.name for p in list_runs(store_dir)) if store_dir is not None else ""
    raise RunError(f"unknown run {spec!r}" + (f" (runs: {known})" if known else " (no runs yet)"))


def load_run(run_dir: Path | str) -> LoadedRun:
    """Rebuild a run's model from config.json and its state dict (never unpickles code); eval mode, CPU."""
    run_dir = Path(run_dir)
    try:
        conf = json.loads((run_dir / CONFIG).read_text())
    except (OSError, ValueError) as e:
        raise RunError(f"{run_dir} is not a run folder (cannot read {CONFIG}: {e})") from None
    cfg = config_from_dict(conf)
    wfile = run_dir / conf.get("weights_file", WEIGHTS)
    if not wfile.is_file() and (run_dir / "model.pth").is_file():
        wfile = run_dir / "model.pth"
    try:
        sd = load_state_dict(wfile)
    except WeightsError as e:
        raise RunError(str(e)) from None
    model, _ = build_model(cfg)
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        raise RunError(f"weights in {wfile} do not fit the run's config: {str(e).splitlines()[0]}") from None
    model.eval()
    return LoadedRun(run_dir.name, run_dir, cfg, model, read_summary(run_dir))
