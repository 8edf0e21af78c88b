"""Run folders with models: saving a trained run and rebuilding its model (state dict only, never pickles)."""

from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from engine.atomic import atomic_write_text
from engine.inputs import load_json, read_regular
from engine.learn.arch import ModelConfig, build_model
from engine.learn.backbones import WeightsError, load_state_dict
from engine.runs.files import (
    CONFIG,
    HISTORY,
    RUN_FORMAT,
    SUMMARY,
    WEIGHTS,
    RunError,
    read_summary,
    write_json,
)
from engine.runs.schema import SchemaError, check_config


@dataclass
class LoadedRun:
    """A model rebuilt from a run folder, in eval mode on the CPU, with its config and summary."""

    run_id: str
    run_dir: Path
    cfg: ModelConfig
    model: nn.Module
    summary: dict[str, Any]


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
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=cols)
    w.writeheader()
    w.writerows(history)
    atomic_write_text(run_dir / HISTORY, buf.getvalue())
    # summary.json last: its presence marks the run as complete
    write_json(run_dir / SUMMARY, summary)


def load_run(run_dir: Path | str) -> LoadedRun:
    """Rebuild a run's model from config.json and its state dict (never unpickles code); eval mode, CPU."""
    run_dir = Path(run_dir)
    try:
        conf = load_json(read_regular(run_dir / CONFIG))
    except (OSError, ValueError) as e:
        raise RunError(f"{run_dir} is not a run folder (cannot read {CONFIG}: {e})") from None
    try:
        cfg = config_from_dict(check_config(conf))
    except (SchemaError, TypeError) as e:
        raise RunError(f"{run_dir / CONFIG}: {e}") from None
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
