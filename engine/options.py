"""The one declaration of each training option (type, default, range or choices, help, the kinds it applies to):
the CLI's parser, ``TrainConfig`` and the app's form are built from it, and config files are checked by it."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.core import ARCH_NAMES

VALID_PCT = 0.2
"""The share of groups (or of items, with one group) that validates when no groups are named."""
SEED = 42
"""The seed of the split, the shuffles and the weights' initialisation."""
CPU_BS = 16
"""The batch size of ``--bs auto`` where it cannot fill a GPU (the CPU, MPS)."""
MAX_SIDE = 2048
"""The longest input side: 2048x2048 is 50 MB an image as float32 (a typo such as 24000x32000 asks for 9 GB)."""
FROM_EPOCHS = 3
"""The epochs of a warm start (``train --from RUN``) unless asked for others."""
FROM_KEYS = {"arch": "arch", "head": "head", "scalar_head": "scalar_head", "stride": "spatial_stride",
             "size": "size", "ps": "ps"}  # fmt: skip
"""Options a warm start takes from its run (option name: the run's ``config.json`` key)."""
AUTO = "auto"
DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


class OptionError(ValueError):
    """An option value that cannot be used: the one line saying why."""


@dataclass(frozen=True)
class Opt:
    """One training option: its name (the ``TrainConfig`` field and config-file key), value type and rules."""

    name: str
    type: str  # int, float, str, bool, choice, size, sizes, list, bs, lr, device
    default: Any
    help: str
    label: str
    lo: float | None = None
    hi: float | None = None
    open_lo: bool = False  # lo itself is refused
    open_hi: bool = False
    choices: tuple[Any, ...] = ()
    kinds: str = "both"  # point, scalar or both
    advanced: bool = False  # the app folds it into Advanced
    flag: str = ""  # the CLI flag when it is not --name (bools defaulting to True get --no-name)
    field: str = ""  # the TrainConfig field when it is not the name
    none: str = ""  # the text meaning "not set" (None): "find" for lr, "default" for others
    commands: tuple[str, ...] = ("train", "rank")
    form: bool = True  # in the app's form (False: only on the command line)

    @property
    def cli(self) -> str:
        """The command-line flag."""
        if self.flag:
            return self.flag
        neg = self.type == "bool" and self.default is True
        return "--" + ("no-" if neg else "") + self.name.replace("_", "-")

    @property
    def dest(self) -> str:
        """The argparse destination of the flag."""
        return self.cli[2:].replace("-", "_")

    @property
    def target(self) -> str:
        """The TrainConfig field the option sets."""
        return self.field or self.name

    def applies(self, kind: str) -> bool:
        """Whether the option matters for a dataset of ``kind`` (point or scalar)."""
        return self.kinds in ("both", kind)

    def range_text(self) -> str:
        """The allowed range in words, e.g. ``between 0 and 1 (exclusive)``."""
        lo = "" if self.lo is None else f"{'>' if self.open_lo else '>='} {self.lo:g}"
        hi = "" if self.hi is None else f"{'<' if self.open_hi else '<='} {self.hi:g}"
        return " and ".join(p for p in (lo, hi) if p)

    def parse(self, value: Any) -> Any:
        """``value`` (flag text or a config file's JSON value) checked and converted; ``OptionError`` says why."""
        try:
            return self._parse(value)
        except OptionError as e:
            raise OptionError(f"{self.cli} {_show(value)}: {e}") from None

    def _parse(self, v: Any) -> Any:
        t = self.type
        if isinstance(v, str):
            v = v.strip()
            if self.none and v.lower() in (self.none, "none"):
                return None
        if v is None or (v == "" and (self.default is None or self.none)):
            if self.default is None or self.none:
                return None
            raise OptionError("needs a value")
        if t == "bool":
            if isinstance(v, str) and v.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
                return v.lower() in ("1", "true", "yes", "on")
            if not isinstance(v, bool):
                raise OptionError("is not true or false")
            return v
        if t == "bs" and isinstance(v, str) and v.lower() == AUTO:
            return AUTO
        if t == "size" and isinstance(v, str) and v.lower() == AUTO:
            return AUTO
        if t in ("int", "bs"):
            return self._check(_int(v))
        if t in ("float", "lr"):
            return self._check(_float(v))
        if t == "choice":
            for c in self.choices:
                if str(c) == str(v).strip():
                    return c
            raise OptionError(f"is not one of {', '.join(str(c) for c in self.choices)}")
        if t == "size":
            return list(parse_size(v))
        if t == "sizes":
            parts = v.split(",") if isinstance(v, str) else list(v)
            sizes = [list(parse_size(p)) for p in parts if not (isinstance(p, str) and not p.strip())]
            return sizes or None
        if t == "list":
            items = v.split(",") if isinstance(v, str) else [str(g) for g in v]
            return [g.strip() for g in items if g.strip()] or None
        if t == "device":
            if not DEVICE_RE.match(str(v)):
                raise OptionError("is not auto, cpu, cuda, cuda:N or mps")
            return str(v)
        if not isinstance(v, str):
            raise OptionError("is not text")
        return v

    def _check(self, x: float) -> Any:
        bad = (self.lo is not None and (x < self.lo or (self.open_lo and x == self.lo))) or (
            self.hi is not None and (x > self.hi or (self.open_hi and x == self.hi))
        )
        if bad:
            raise OptionError(f"must be {self.range_text()}")
        return x


def _show(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v)


def _int(v: Any) -> int:
    if isinstance(v, bool) or (isinstance(v, float) and not v.is_integer()):
        raise OptionError("is not a whole number")
    try:
        return int(v)
    except (TypeError, ValueError):
        raise OptionError("is not a whole number") from None


def _float(v: Any) -> float:
    if isinstance(v, bool):
        raise OptionError("is not a number")
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise OptionError("is not a number") from None
    if x != x or x in (float("inf"), float("-inf")):
        raise OptionError("is not a finite number")
    return x


def parse_size(v: Any) -> tuple[int, int]:
    """``HxW`` text (one number: a square) or ``[h, w]`` as (h, w), each side 8 to ``MAX_SIDE``."""
    if isinstance(v, str):
        try:
            parts = [int(p) for p in v.lower().replace(",", "x").split("x")]
        except ValueError:
            raise OptionError("is not HxW, e.g. 240x320") from None
    elif isinstance(v, (list, tuple)) and all(isinstance(p, int) and not isinstance(p, bool) for p in v):
        parts = list(v)
    else:
        raise OptionError("is not HxW, e.g. 240x320")
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2:
        raise OptionError("is not HxW, e.g. 240x320")
    if min(parts) < 8 or max(parts) > MAX_SIDE:
        raise OptionError(f"sides must be 8 to {MAX_SIDE} pixels")
    return parts[0], parts[1]


OPTIONS: tuple[Opt, ...] = (
    Opt("arch", "choice", "resnet18", "backbone (torchvision); tiny is a small untrained CNN for quick checks",
        "Architecture", choices=tuple(ARCH_NAMES)),
    Opt("epochs", "int", 5, "passes over the training images (at each size with progressive resizing)",
        "Epochs", lo=1, hi=10000),
    Opt("lr", "lr", 2e-3, "maximum learning rate of the schedule, or 'find' for fastai's LR finder",
        "Learning rate", lo=0, hi=10, open_lo=True, none="find"),
    Opt("size", "size", AUTO, "input size HxW (one number: a square), or auto: the images' shape, long side "
        f"at most 320 (Biwi 240x320, 200px faces 208x208); sides 8 to {MAX_SIDE}", "Image size"),
    Opt("bs", "bs", AUTO, "images per batch, or auto: one that fills the GPU for the input size "
        f"(engine.learn.feed.gpu_bs), {CPU_BS} on the CPU; lower it when the GPU runs out of memory",
        "Batch size", lo=1, hi=4096),
    Opt("head", "choice", AUTO, "point head: spatial heatmap (auto's choice for points, about 10x more "
        "accurate) or the book's pooled regression head; scalars always use pooled", "Head",
        choices=(AUTO, "spatial", "pooled"), kinds="point"),
    Opt("valid_groups", "list", None, "groups that validate, e.g. 07,08 (none: a seeded random share)",
        "Validation groups"),
    Opt("valid_pct", "float", VALID_PCT, "share of the groups (or items, with one group) that validates "
        "when no groups are named", "Validation share", lo=0, hi=1, open_lo=True, open_hi=True, advanced=True),
    Opt("seed", "int", SEED, "seed of the split, the shuffles and the head's initialisation", "Seed",
        lo=0, hi=2**32 - 1, advanced=True),
    Opt("weights", "str", None, "torchvision state dict (.pth/.safetensors) to start from (offline; "
        "never unpickled)", "Weights"),
    Opt("pretrained", "bool", True, "start from ImageNet weights (--no-pretrained: random weights)", "Weights"),
    Opt("pretrained_if_cached", "bool", False, "ImageNet weights when torchvision's cache has them, else "
        "random weights (and say so)", "Weights", field="pretrained"),
    Opt("device", "device", AUTO, "auto (a GPU when there is one), cpu, cuda, cuda:N or mps", "Device"),
    Opt("sizes", "sizes", None, "progressive resizing: train the epochs at each size in turn, e.g. "
        "120x160,240x320 (small sizes first: fast early epochs)", "Progressive sizes", advanced=True),
    Opt("schedule", "choice", None, "fine_tune trains the head alone for the freeze epochs, then everything "
        "(the default for pretrained starts); one_cycle trains every layer from the start", "Schedule",
        choices=("fine_tune", "one_cycle"), advanced=True, none="default"),
    Opt("freeze_epochs", "int", 1, "fine_tune: epochs with the pretrained body frozen before unfreezing",
        "Freeze epochs", lo=0, hi=1000, advanced=True),
    Opt("lr_ratio", "float", None, "head-to-body learning-rate ratio R: the body trains at slice(lr/R, lr) "
        "(default: fastai's 100 for fine_tune, one rate for one_cycle)", "Body LR ratio", lo=1, hi=1e6,
        advanced=True, none="default"),
    Opt("mixup", "float", 0.0, "mixup alpha (e.g. 0.4): blend pairs of images and mix their targets alike "
        "(fastai's MixUp); a regulariser for scalar targets such as age; 0: off", "Mixup", lo=0, hi=10,
        kinds="scalar", advanced=True),
    Opt("scalar_head", "choice", "fastai", "head of scalar models: fastai's create_head, or the age "
        "write-up's custom AgeModel head", "Scalar head", choices=("fastai", "custom"), kinds="scalar",
        advanced=True),
    Opt("stride", "choice", None, "spatial head: the backbone's output stride (default 16; 8 is finer and "
        "slower)", "Spatial stride", choices=(8, 16), kinds="point", advanced=True, field="spatial_stride",
        none="default"),
    Opt("ps", "float", 0.5, "dropout of the pooled head", "Head dropout", lo=0, hi=1, open_hi=True,
        advanced=True),
    Opt("augment", "bool", True, "augment the training images (flips, rotation, zoom, warp, lighting); "
        "--no-augment: train on the images as they are", "Augment the training images", advanced=True),
    Opt("cache", "bool", True, "train from the decoded-image cache (<dataset>/.imgreg/cache); --no-cache "
        "decodes every image every epoch: slower, but uses no disk space", "Use the decoded-image cache",
        advanced=True),
    Opt("init_from", "str", None, "warm start: a run (id or folder) whose weights, architecture, head and "
        "size start the model; trains a few epochs on the labels as they are now", "Retrain from",
        flag="--from", commands=("train",), form=False),
)  # fmt: skip
BY_NAME: dict[str, Opt] = {o.name: o for o in OPTIONS}
WEIGHT_OPTS = (
    "weights",
    "pretrained",
    "pretrained_if_cached",
)  # one choice on the command line and in the app


def defaults() -> dict[str, Any]:
    """Every option's default value."""
    return {o.name: o.default for o in OPTIONS}


def check(values: Mapping[str, Any], source: str = "") -> dict[str, Any]:
    """``values`` (names with ``_`` or ``-``) checked and converted; unknown names refused with a one-liner."""
    out: dict[str, Any] = {}
    for key, raw in values.items():
        name = str(key).replace("-", "_")
        opt = BY_NAME.get(name)
        if opt is None:
            where = f" in {source}" if source else ""
            known = ", ".join(o.name for o in OPTIONS)
            raise OptionError(f"unknown option {key!r}{where} (options: {known})")
        out[name] = opt.parse(raw)
    return out


def read_config(path: str | Path) -> dict[str, Any]:
    """The options of a YAML or JSON file (a run's ``config.json``: the options it was trained with), checked."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise OptionError(f"cannot read config {p}: {e}") from None
    try:
        if p.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as e:  # noqa: BLE001 (yaml and json raise their own errors; each is one line here)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise OptionError(
            f"config {p} is not valid {'YAML' if p.suffix != '.json' else 'JSON'}: {first}"
        ) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise OptionError(f"config {p} must hold a mapping of option names to values")
    if "format" in data and "weights_file" in data:  # a run folder's config.json
        if not isinstance(data.get("options"), dict):
            raise OptionError(f"run config {p} records no options (a run saved before they were recorded)")
        data = data["options"]
    return check(data, str(p))


def merged(*layers: Mapping[str, Any]) -> dict[str, Any]:
    """Defaults overlaid by each layer in turn (a config file, then the flags given)."""
    out = defaults()
    for layer in layers:
        out.update(layer)
    return out


def changed(values: Mapping[str, Any], kind: str | None = None) -> dict[str, Any]:
    """The options of ``values`` that differ from their defaults (and apply to ``kind`` when given)."""
    return {
        k: v
        for k, v in values.items()
        if k in BY_NAME and v != BY_NAME[k].default and (kind is None or BY_NAME[k].applies(kind))
    }


def to_text(opt: Opt, value: Any) -> str:
    """A value as its flag's text (``[240, 320]`` -> ``240x320``)."""
    if opt.type == "size" and isinstance(value, (list, tuple)):
        return f"{value[0]}x{value[1]}"
    if opt.type == "sizes":
        return ",".join(f"{s[0]}x{s[1]}" for s in value)
    if opt.type == "list":
        return ",".join(value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def to_args(values: Mapping[str, Any]) -> list[str]:
    """Command-line arguments setting ``values`` (bools: their flag when it departs from the default)."""
    args: list[str] = []
    for name, v in values.items():
        opt = BY_NAME[name]
        if opt.type == "bool":
            if v != opt.default:
                args.append(opt.cli)
        elif v is None:
            if opt.none:
                args += [opt.cli, opt.none]
        else:
            args += [opt.cli, to_text(opt, v)]
    return args


def options_of(cfg: Any) -> dict[str, Any]:
    """A TrainConfig's option values (what a run's ``config.json`` keeps, so ``--config`` repeats it)."""
    out: dict[str, Any] = {}
    for o in OPTIONS:
        if o.name == "pretrained_if_cached":
            out[o.name] = False  # already resolved into ``pretrained``
        elif o.name == "bs":
            out[o.name] = AUTO if cfg.bs is None else int(cfg.bs)
        elif o.name == "size":
            out[o.name] = [int(v) for v in cfg.size]
        elif o.type == "sizes":
            out[o.name] = [[int(a) for a in s] for s in cfg.sizes] if cfg.sizes else None
        elif o.type == "list":
            val = getattr(cfg, o.target)
            out[o.name] = list(val) if val else None
        else:
            out[o.name] = getattr(cfg, o.target)
    return out


def for_command(command: str) -> Iterable[Opt]:
    """The options a command (train or rank) takes."""
    return (o for o in OPTIONS if command in o.commands)
