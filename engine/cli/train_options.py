"""The training options on the command line: flags from their declarations (``engine.options``), ``--config FILE``
under the flags, checked once, and ``TrainConfig``s built from them, ``train --from RUN`` included."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from engine import events
from engine.cli.common import CliError, add_image_root
from engine.options import (
    AUTO,
    BY_NAME,
    FROM_EPOCHS,
    FROM_KEYS,
    WEIGHT_OPTS,
    Opt,
    OptionError,
    for_command,
    merged,
    read_config,
    to_text,
)
from engine.runs.files import read_json

PREDICT_BS = replace(BY_NAME["bs"], type="int", default=32, help="images per batch (default 32)")
METAVARS = {"init_from": "RUN", "weights": "FILE", "size": "HxW", "sizes": "HxW,..."}


def _argtype(opt: Opt) -> Callable[[str], Any]:
    """The flag's argparse type: the declaration's check, its reason in the one-line error."""

    def parse(text: str) -> Any:
        try:
            return opt.parse(text)
        except OptionError as e:
            raise argparse.ArgumentTypeError(f"{text!r} " + str(e).split(": ", 1)[-1]) from None

    parse.__name__ = opt.name
    return parse


def add_option(s: Any, opt: Opt, **kw: Any) -> None:
    """A declared option as a flag; left out of the namespace unless given (a config file may set it)."""
    shown = to_text(opt, opt.default) if opt.default is not None else opt.none
    text = opt.help + (f" (default {shown})" if shown and opt.type != "bool" else "")
    if opt.kinds != "both":
        text += f"; {opt.kinds}s only"
    kw = {"dest": opt.dest, "default": argparse.SUPPRESS, "help": text, **kw}
    if opt.type == "bool":
        s.add_argument(opt.cli, action="store_true", **kw)
    else:
        few = opt.type == "choice" and len(opt.choices) <= 3
        meta = (
            "{" + ",".join(str(c) for c in opt.choices) + "}"
            if few
            else METAVARS.get(opt.name, opt.name.upper())
        )
        s.add_argument(opt.cli, type=_argtype(opt), metavar=meta, **kw)


def add_train_options(s: argparse.ArgumentParser, command: str = "train") -> None:
    """The declared training options of ``train`` or ``rank``, ``--config``, ``--json``, ``--control-stdin``."""
    w = s.add_mutually_exclusive_group()
    for opt in for_command(command):
        add_option(w if opt.name in WEIGHT_OPTS else s, opt)
    s.add_argument(
        "--config",
        metavar="FILE",
        help="YAML or JSON file of options (names as in the flags, e.g. 'bs: 32' or '\"valid_pct\": 0.1'); "
        "flags override it. A run's config.json repeats that run",
    )
    s.add_argument(
        "--json", action="store_true", help="one JSON object per event on stdout, then a summary line"
    )
    s.add_argument("--control-stdin", action="store_true", help="read 'stop-epoch' / 'cancel' lines on stdin")
    add_image_root(s)


def option_values(args: argparse.Namespace) -> dict[str, Any]:
    """Every option's value: its default, under ``--config FILE``, under the flags given; checked once.

    The values are also set on ``args`` by name (``args.lr`` None: the LR finder), for the data-parallel launcher.
    """
    done = getattr(args, "train_options", None)
    if done is not None:
        return done
    command = getattr(args, "command", None) or "train"
    given: dict[str, Any] = {}
    if getattr(args, "config", None):
        try:
            given = read_config(args.config)
        except OptionError as e:
            raise CliError(str(e)) from None
        other = [
            k for k, v in given.items() if command not in BY_NAME[k].commands and v != BY_NAME[k].default
        ]
        if other:
            raise CliError(f"{args.config}: {BY_NAME[other[0]].cli} is an option of imgreg train only")
        given = {k: v for k, v in given.items() if command in BY_NAME[k].commands}
    flags = {o.name: (not o.default) if o.type == "bool" else getattr(args, o.dest)
             for o in for_command(command) if hasattr(args, o.dest)}  # fmt: skip
    if any(k in flags for k in WEIGHT_OPTS):  # the flags' choice of starting weights replaces the file's
        given = {k: v for k, v in given.items() if k not in WEIGHT_OPTS}
    given.update(flags)
    values = merged(given)
    starts = [BY_NAME[k].cli for k in WEIGHT_OPTS if values[k] != BY_NAME[k].default]
    if len(starts) > 1:
        raise CliError(f"{' and '.join(starts)} both choose the starting weights: give one")
    args.train_options, args.given_options = values, given
    for k, v in values.items():
        setattr(args, k, v)
    return values


def train_config(
    args: argparse.Namespace, rep: Any = None, ds: Any = None, store_dir: str | Path | None = None
) -> Any:
    """A TrainConfig from the options (``rep`` hears a ``note`` when cached weights are missing; ``ds`` sizes
    ``--size auto``, which the ``prepared`` event reports; ``store_dir`` finds ``--from``'s run by id)."""
    from engine.data.shape import auto_size
    from engine.learn.train import TrainConfig

    values = dict(option_values(args))
    run_conf: dict[str, Any] | None = None
    if values["init_from"]:
        values, run_conf = warm_start(values, getattr(args, "given_options", {}), ds, store_dir)
    if values["pretrained_if_cached"] and not values["weights"]:
        from engine.weights import local_weights

        values["pretrained"] = local_weights(values["arch"]) is not None
        if not values["pretrained"] and rep is not None:
            rep(events.note(f"no cached ImageNet weights for {values['arch']}: random weights"))
    if values["size"] == AUTO and ds is not None:
        values["size"] = list(auto_size(ds))
    cfg = TrainConfig.from_options(values)
    if run_conf is not None and rep is not None:
        size = "x".join(str(v) for v in cfg.size)
        name = Path(str(cfg.init_from)).name
        rep(
            events.note(
                f"warm start from run {name}: {cfg.arch}, {cfg.head} head, {size}, {cfg.epochs} epochs"
            )
        )
    if run_conf is not None:  # the run's output range and input statistics, so its weights mean the same
        if run_conf.get("y_range") is not None and ds.kind == "scalar":
            cfg.y_range = tuple(run_conf["y_range"])
        if run_conf.get("normalize") is not None:
            cfg.normalize = (list(run_conf["normalize"][0]), list(run_conf["normalize"][1]))
        cfg.spatial_hidden = run_conf.get("spatial_hidden")
    return cfg


def warm_start(
    values: dict[str, Any], given: dict[str, Any], ds: Any, store_dir: str | Path | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``--from RUN``: the run's architecture, head and size, its weights to start from, a few epochs; refused
    with one line when the run's target differs from the dataset's or an option given contradicts the run."""
    from engine.runs.files import RunError, resolve_run

    if ds is None or store_dir is None:
        raise CliError("--from trains in one process: leave out --nproc")
    try:
        run_dir = resolve_run(str(values["init_from"]), Path(store_dir))
        conf = read_json(run_dir / "config.json")
    except (RunError, OSError, ValueError) as e:
        raise CliError(f"--from {values['init_from']}: {e}") from None
    name = run_dir.name
    kind, n = conf.get("kind"), conf.get("n_points")
    if kind != ds.kind:
        raise CliError(f"--from {name}: the run predicts {kind}s and this dataset holds {ds.kind}s")
    if kind == "point" and n != ds.n_points:
        raise CliError(f"--from {name}: the run predicts {n} points and this dataset has {ds.n_points}")
    for opt, key in FROM_KEYS.items():
        ran = list(conf[key]) if opt == "size" and conf.get(key) is not None else conf.get(key)
        if ran is None and opt != "stride":
            continue
        asked = given.get(opt)
        if opt in given and asked != ran and not (opt == "head" and asked == AUTO):
            raise CliError(
                f"{BY_NAME[opt].cli} {to_text(BY_NAME[opt], asked)} contradicts --from {name}, which has "
                f"{to_text(BY_NAME[opt], ran)}: a warm start keeps the run's architecture, head and size"
            )
        values[opt] = ran
    if values["sizes"]:
        raise CliError(f"--sizes with --from {name}: a warm start trains at the run's size")
    if "epochs" not in given:
        values["epochs"] = FROM_EPOCHS
    values.update(weights=None, pretrained=False, pretrained_if_cached=False, init_from=str(run_dir))
    return values, conf
