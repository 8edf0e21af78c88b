"""The training-option declarations: refusals at the edge (one line, exit 2), --config files under the flags, a
run's config.json repeating it, and ``train --from RUN`` warm starts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.cli import build_parser, main
from engine.cli.train_options import option_values, train_config
from engine.data import open_dataset
from engine.data.synth import make_biwi, make_points_csv, make_utkface
from engine.options import BY_NAME, OPTIONS, SEED, VALID_PCT, OptionError, check, defaults

FAST = [
    "--arch",
    "tiny",
    "--no-pretrained",
    "--size",
    "48x64",
    "--bs",
    "4",
    "--device",
    "cpu",
    "--head",
    "pooled",
]


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--bs", "0"], "--bs: '0' must be >= 1"),
        (["--bs", "-4"], "--bs: '-4' must be >= 1"),
        (["--bs", "many"], "--bs: 'many' is not a whole number"),
        (["--valid-pct", "0"], "--valid-pct: '0' must be > 0 and < 1"),
        (["--valid-pct", "1"], "--valid-pct: '1' must be > 0 and < 1"),
        (["--valid-pct", "1.5"], "--valid-pct: '1.5' must be > 0"),
        (["--freeze-epochs", "-5"], "--freeze-epochs: '-5' must be >= 0"),
        (["--size", "100000x100000"], "sides must be 8 to 2048"),
        (["--sizes", "60x80,30000x40000"], "sides must be 8 to 2048"),
        (["--lr", "0"], "--lr: '0' must be > 0"),
        (["--lr=-1e-3"], "--lr: '-1e-3' must be > 0"),
        (["--epochs", "0"], "--epochs: '0' must be >= 1"),
        (["--head", "big"], "is not one of auto, spatial, pooled"),
        (["--device", "gpu"], "is not auto, cpu, cuda, cuda:N or mps"),
        (["--mixup", "nan"], "is not a finite number"),
    ],
)
def test_bad_values_are_refused_in_one_line(
    flags: list[str], needle: str, capsys: pytest.CaptureFixture
) -> None:
    for command in ("train", "rank"):
        with pytest.raises(SystemExit) as e:
            main([command, "/no/such/dataset", *flags])
        out, err = capsys.readouterr()
        assert e.value.code == 2 and out == "" and err.count("\n") == 1 and "Traceback" not in err
        assert needle in err and err.startswith(f"imgreg {command}: error:"), err


def test_the_split_defaults_have_one_definition() -> None:
    import inspect

    from engine.data.split import split_indices
    from engine.learn.dls import split_groups
    from engine.learn.train import TrainConfig

    assert (VALID_PCT, SEED) == (0.2, 42) and BY_NAME["valid_pct"].default == VALID_PCT
    assert (
        BY_NAME["seed"].default == SEED
        and TrainConfig().valid_pct == VALID_PCT
        and TrainConfig().seed == SEED
    )
    for fn in (split_indices, split_groups):
        ps = inspect.signature(fn).parameters
        assert ps["valid_pct"].default == VALID_PCT and ps["seed"].default == SEED


def test_defaults_come_from_the_declarations() -> None:
    from engine.learn.train import TrainConfig

    cfg, d = TrainConfig(), defaults()
    assert cfg.bs is None and d["bs"] == "auto" and cfg.head == d["head"] == "auto"  # the engine's batch size
    assert TrainConfig.from_options(d) == cfg
    args = build_parser().parse_args(["train", "d"])
    assert train_config(args) == cfg  # the CLI adds nothing of its own


def test_bs_auto_fills_a_gpu_and_is_16_on_the_cpu() -> None:
    import torch

    from engine.learn.feed import fill_bs, gpu_bs
    from engine.learn.train import TrainConfig

    cfg = TrainConfig(size=(240, 320))
    assert fill_bs(cfg, torch.device("cpu")).bs == 16
    assert fill_bs(cfg, torch.device("cuda")).bs == gpu_bs((240, 320)) == 128  # no GPU needed to decide
    assert fill_bs(TrainConfig(bs=8), torch.device("cuda")).bs == 8  # one asked for stays


def test_config_files_json_and_yaml_under_the_flags(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "c.yaml").write_text(
        "bs: 32\nvalid-pct: 0.1\nsize: 96x128\nhead: pooled\nsizes: [[48, 64], [96, 128]]\n"
    )
    (tmp_path / "c.json").write_text(json.dumps({"bs": 32, "valid_pct": 0.1, "size": [96, 128], "head": "pooled",
                                                 "sizes": "48x64,96x128"}))  # fmt: skip
    p = build_parser()
    for name in ("c.yaml", "c.json"):
        v = option_values(p.parse_args(["train", "d", "--config", str(tmp_path / name), "--bs", "8"]))
        assert v["bs"] == 8 and v["valid_pct"] == 0.1 and v["size"] == [96, 128] and v["head"] == "pooled"
        assert v["sizes"] == [[48, 64], [96, 128]] and v["epochs"] == 5
    (tmp_path / "w.yaml").write_text("pretrained: false\n")
    v = option_values(
        p.parse_args(["train", "d", "--config", str(tmp_path / "w.yaml"), "--weights", "/w.pth"])
    )
    assert v["weights"] == "/w.pth" and v["pretrained"] is True  # the flag's start replaces the file's
    bad = {"u.yaml": ("learning_rate: 0.1\n", "unknown option 'learning_rate'"),
           "b.yaml": ("bs: 0\n", "--bs 0: must be >= 1"),
           "v.json": ('{"valid_pct": 1.5}', "--valid-pct 1.5: must be > 0 and < 1"),
           "l.yaml": ("- bs\n", "must hold a mapping"),
           "s.yaml": ("bs: [1\n", "is not valid YAML"),
           "t.json": ("{bs: 1}", "is not valid JSON"),
           "f.yaml": ("init_from: x\n", "imgreg train only"),
           "o.json": ('{"format": 2, "weights_file": "model.safetensors", "arch": "tiny"}', "records no options")}  # fmt: skip
    for name, (text, needle) in bad.items():
        (tmp_path / name).write_text(text)
        command = "rank" if name == "f.yaml" else "train"
        assert main([command, str(tmp_path), "--config", str(tmp_path / name)]) == 2, name
        out, err = capsys.readouterr()
        assert err.count("\n") == 1 and needle in err and "Traceback" not in err, (name, err)


def test_check_names_and_values() -> None:
    assert check({"freeze-epochs": "2", "augment": "false", "lr": "find"}) == {
        "freeze_epochs": 2, "augment": False, "lr": None}  # fmt: skip
    with pytest.raises(OptionError, match="--freeze-epochs -5: must be >= 0"):
        check({"freeze_epochs": -5})
    with pytest.raises(OptionError, match="is not a whole number"):
        check({"epochs": 2.5})
    assert all(o.help and o.label for o in OPTIONS)


@pytest.mark.usefixtures("one_torch_thread")
def test_a_runs_config_json_repeats_it(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    make_biwi(tmp_path / "ds", groups=2, frames=6, size=(64, 48))
    ds = str(tmp_path / "ds")
    flags = [*FAST, "--epochs", "1", "--valid-pct", "0.4", "--seed", "7", "--no-augment", "--lr-ratio", "10"]
    assert main(["train", ds, *flags, "--json"]) == 0
    run_dir = Path(json.loads(capsys.readouterr().out.splitlines()[-1])["run_dir"])
    p, data = build_parser(), open_dataset(Path(ds))
    first = train_config(p.parse_args(["train", ds, *flags]), ds=data)
    again = train_config(p.parse_args(["train", ds, "--config", str(run_dir / "config.json")]), ds=data)
    assert again == first and again.seed == 7 and again.augment is False and again.valid_pct == 0.4
    assert json.loads((run_dir / "config.json").read_text())["options"]["bs"] == 4
    more = train_config(
        p.parse_args(["train", ds, "--config", str(run_dir / "config.json"), "--epochs", "3"])
    )
    assert more.epochs == 3 and more.seed == 7  # a flag overrides the run's option


@pytest.mark.usefixtures("one_torch_thread")
def test_train_from_a_run_warm_starts_it(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from engine.learn.models import load_run

    make_biwi(tmp_path / "ds", groups=2, frames=6, size=(64, 48))
    ds = str(tmp_path / "ds")
    assert main(["train", ds, *FAST, "--epochs", "2", "--json"]) == 0
    first = json.loads(capsys.readouterr().out.splitlines()[-1])
    # A warm start at a vanishing learning rate keeps the run's weights: they were loaded, not ImageNet's or random.
    assert main(["train", ds, "--from", first["run_id"], "--device", "cpu", "--bs", "4", "--lr", "1e-12",
                 "--epochs", "1", "--json"]) == 0  # fmt: skip
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    prepared = next(e for e in lines if e.get("type") == "prepared")
    assert prepared["arch"] == "tiny" and prepared["head"] == "pooled" and prepared["size"] == [48, 64]
    warm = lines[-1]
    a, b = load_run(first["run_dir"]), load_run(warm["run_dir"])
    weights = [k for k, v in a.model.state_dict().items() if v.is_floating_point() and "running" not in k]
    for k in weights:
        assert (a.model.state_dict()[k] - b.model.state_dict()[k]).abs().max() < 1e-4, k
    assert (
        abs(warm["metrics"]["mean_px"] - first["metrics"]["mean_px"]) < 0.05 * first["metrics"]["mean_px"] + 1
    )
    summary = json.loads((Path(warm["run_dir"]) / "summary.json").read_text())
    assert summary["init_from"] == first["run_dir"] and summary["epochs"] == 1
    # The run's architecture is kept: one given that differs is refused; other datasets' runs too.
    make_utkface(tmp_path / "utk", n=6)
    make_points_csv(tmp_path / "two", n=4)  # the same images with two points each
    rows = (tmp_path / "two" / "labels.csv").read_text().splitlines()
    two = ["image,x1,y1,x2,y2", *(f"{r},{r.split(',', 1)[1]}" for r in rows[1:])]
    (tmp_path / "two" / "labels.csv").write_text("\n".join(two) + "\n")
    assert open_dataset(tmp_path / "two").n_points == 2
    cases = [([ds, "--from", first["run_id"], "--arch", "resnet18"], "contradicts --from"),
             ([ds, "--from", first["run_id"], "--folds", "2"], "--from with --folds"),
             ([ds, "--from", "no-such-run"], "--from no-such-run"),
             ([str(tmp_path / "utk"), "--from", first["run_dir"]], "the run predicts points and this dataset holds scalars"),
             ([str(tmp_path / "two"), "--from", first["run_dir"]], "the run predicts 1 points and this dataset has 2")]  # fmt: skip
    for argv, needle in cases:
        assert main(["train", *argv, "--device", "cpu"]) == 2, argv
        _, err = capsys.readouterr()
        assert err.count("\n") == 1 and needle in err, (argv, err)
