"""Hostile and clumsy input (issue 24), one test per defect: hangs, silent loss, writes outside the named output,
unopenable datasets, trusted journal lines, late failures, tracebacks, absurd labels, source files overwritten."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.cli import main
from engine.data import open_dataset
from engine.data.synth import make_biwi, make_points_csv, make_scalar_csv, make_utkface, write_image
from engine.labels.destination import MANIFEST
from engine.labels.interop import ExportError, write_yolo_pose
from engine.labels.limits import check_label
from engine.labels.store import LabelStore
from engine.runs.schema import SchemaError, check_config, check_onnx_meta

ROOT = Path(__file__).resolve().parents[1]
FIRST = "img/000.png"


def cli(
    *args: str, timeout: float = 60, stdin: int | None = subprocess.DEVNULL
) -> subprocess.CompletedProcess:
    """``imgreg ARGS`` in a child process (a hang fails the test instead of stopping it)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "engine.cli", *args], capture_output=True, text=True, timeout=timeout,
        env=env, stdin=stdin,
    )  # fmt: skip


def _append(csv: Path, line: str) -> None:
    with open(csv, "a", encoding="utf-8", newline="") as f:
        f.write(line + "\n")


def _coco(root: Path, images: list, anns: list, cats: list | None = None, name: str = "k.json") -> Path:
    """A small COCO keypoints file (one point) with ``images`` / ``annotations`` as given."""
    data = {"images": images, "annotations": anns, "categories": cats or [{"id": 1, "keypoints": ["p"]}]}
    (root / name).write_text(json.dumps(data))
    return root / name


def _one_image(root: Path, name: str = "a.png") -> None:
    write_image(root / name, np.zeros((20, 30, 3), np.uint8))


# -- hangs -------------------------------------------------------------------------------------------------


def test_fifo_listed_in_csv_or_coco_or_dev_stdin_does_not_hang(tmp_path: Path) -> None:
    make_points_csv(tmp_path / "d", n=3)
    os.mkfifo(tmp_path / "d" / "pipe.png")
    _append(tmp_path / "d" / "labels.csv", "pipe.png,1,2")
    _append(tmp_path / "d" / "labels.csv", "/dev/stdin,1,2")
    r = cli("info", str(tmp_path / "d"), stdin=subprocess.PIPE)
    assert r.returncode == 0, r.stderr
    assert "pipe.png: not a regular file" in r.stdout and "/dev/stdin: not a regular file" in r.stdout
    c = tmp_path / "c"
    c.mkdir()
    os.mkfifo(c / "f.png")
    _coco(c, [{"id": 1, "file_name": "f.png"}], [])
    r = cli("info", str(c))
    assert r.returncode == 0 and "f.png: not a regular file" in r.stdout


def test_fifo_named_like_a_label_file_does_not_hang(tmp_path: Path) -> None:
    make_biwi(tmp_path / "b", groups=1, frames=2)
    os.mkfifo(tmp_path / "b" / "01" / "frame_00099_pose.txt")
    write_image(tmp_path / "b" / "01" / "frame_00099_rgb.png", np.zeros((8, 8, 3), np.uint8))
    r = cli("info", str(tmp_path / "b"))
    assert r.returncode == 0 and "Traceback" not in r.stderr


# -- silent loss ---------------------------------------------------------------------------------------------


def test_correction_made_while_imgreg_read_only_is_read_back(tmp_path: Path, monkeypatch) -> None:
    make_points_csv(tmp_path / "d", n=3)
    ds = open_dataset(tmp_path / "d")
    LabelStore.open(ds).close()  # the dataset's own store exists
    monkeypatch.setenv("IMGREG_FORCE_USER_DATA", "1")  # as when .imgreg/ is read-only (root ignores chmod)
    with LabelStore.open(ds) as s:
        assert s.dir != tmp_path / "d" / ".imgreg"
        s.correct(FIRST, (5.0, 6.0))
    monkeypatch.delenv("IMGREG_FORCE_USER_DATA")  # writable again
    with LabelStore.open(open_dataset(tmp_path / "d")) as s:
        assert s.effective(FIRST) == (5.0, 6.0)


# -- writes and deletes outside the named output ---------------------------------------------------------------


def test_yolo_export_never_follows_a_folder_link_or_deletes_a_users_file(tmp_path: Path) -> None:
    make_biwi(tmp_path / "b", groups=2, frames=2)
    out = tmp_path / "y"
    assert main(["labels", str(tmp_path / "b"), "--format", "yolo-pose", "--out", str(out)]) == 0
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.png").write_bytes(b"mine")
    os.symlink(other, out / "images" / "01")
    assert main(["labels", str(tmp_path / "b"), "--format", "yolo-pose", "--out", str(out)]) == 2
    assert [p.name for p in other.iterdir()] == ["keep.png"] and (other / "keep.png").read_bytes() == b"mine"
    (out / "images" / "01").unlink()
    mine = out / "images" / "train" / "mine.png"
    mine.write_bytes(b"user file")
    assert main(["labels", str(tmp_path / "b"), "--format", "yolo-pose", "--out", str(out)]) == 2
    assert mine.read_bytes() == b"user file"


def test_killed_yolo_export_leaves_the_old_one_and_reexport_drops_unlabelled(
    tmp_path: Path, monkeypatch
) -> None:
    from engine.labels import interop

    make_points_csv(tmp_path / "d", n=4)
    ds = open_dataset(tmp_path / "d")
    out = tmp_path / "y"
    with LabelStore.open(ds) as store:
        write_yolo_pose(ds, store, out)
        before = sorted(p.relative_to(out).as_posix() for p in out.rglob("*"))
        calls = {"n": 0}
        real = interop._link

        def dies(src: Path, dst: Path) -> bool:
            calls["n"] += 1
            if calls["n"] == 2:
                raise KeyboardInterrupt  # killed mid-export
            return real(src, dst)

        monkeypatch.setattr(interop, "_link", dies)
        with pytest.raises(KeyboardInterrupt):
            write_yolo_pose(ds, store, out)
        monkeypatch.setattr(interop, "_link", real)
        assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == before
        assert (out / "data.yaml").is_file() and not list(tmp_path.glob(".y.partial-*"))
        gone = ds.items[0]  # the source file drops this item's label: it is no longer labelled
        (tmp_path / "d" / "labels.csv").write_text(
            "image,x,y\n" + "".join(f"{it.name},,\n" if it is gone else f"{it.name},3,4\n" for it in ds.items)
        )
        ds2 = open_dataset(tmp_path / "d")
        store.sync(ds2.items)
        write_yolo_pose(ds2, store, out)
    txts = [p.stem for p in out.rglob("*.txt")]
    assert "img__000" not in txts and len(txts) == 3
    assert json.loads((out / MANIFEST).read_text())["writer"] == "imgreg"


def test_a_sigkilled_exports_leftovers_go_with_the_next_export(tmp_path: Path) -> None:
    make_points_csv(tmp_path / "d", n=3)
    ds = open_dataset(tmp_path / "d")
    out = tmp_path / "y"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = [tmp_path / f".y.partial-{dead.pid}-0123abcd", tmp_path / f".y.old-{dead.pid}-89abcdef"]
    alive = tmp_path / f".y.partial-{os.getpid()}-fedcba98"  # a running export's folder stays
    other = tmp_path / f".z.partial-{dead.pid}-0123abcd"  # another export's stays
    users = tmp_path / f".y.partial-{dead.pid}-notours"  # not our pattern: stays
    for d in [*stale, alive, other, users]:
        (d / "images").mkdir(parents=True)
        (d / "images" / "a.png").write_bytes(b"x")
    with LabelStore.open(ds) as store:
        write_yolo_pose(ds, store, out)
    assert not any(d.exists() for d in stale)
    assert alive.exists() and other.exists() and users.exists()
    assert (out / "data.yaml").is_file()


def test_yolo_export_refuses_a_folder_inside_the_dataset(tmp_path: Path) -> None:
    make_points_csv(tmp_path / "d", n=2)
    ds = open_dataset(tmp_path / "d")
    with LabelStore.open(ds) as store, pytest.raises(ExportError, match="inside the dataset"):
        write_yolo_pose(ds, store, tmp_path / "d" / "img")


# -- unopenable datasets -------------------------------------------------------------------------------------


def test_nul_in_a_csv_image_cell_is_a_problem(tmp_path: Path) -> None:
    make_points_csv(tmp_path / "d", n=2)
    _append(tmp_path / "d" / "labels.csv", "a\x00b.png,1,2")
    ds = open_dataset(tmp_path / "d")
    assert len(ds.items) == 2 and any("NUL" in p.reason for p in ds.problems)


IMG = '"images": [{"id": 1, "file_name": "a.png"}], "categories": [{"id": 1, "keypoints": ["p"]}]'


@pytest.mark.parametrize(
    "text",
    [
        "{" + IMG + ', "annotations": [{"image_id": 1, "category_id": [1], "keypoints": [1, 2, 2]}]}',
        "{"
        + IMG
        + ', "annotations": [{"image_id": 1, "category_id": 1, "keypoints": ['
        + "9" * 400
        + ", 2, 2]}]}",
        '{"images": [{"id": ' + "7" * 5000 + ', "file_name": "a.png"}], "annotations": [], '
        '"categories": [{"id": 1, "keypoints": ["p"]}]}',
    ],
    ids=["category-list", "400-digit-keypoint", "5000-digit-id"],
)
def test_odd_coco_values_are_problems_not_failures(tmp_path: Path, text: str) -> None:
    _one_image(tmp_path)
    path = tmp_path / "k.json"
    path.write_text(text)
    ds = open_dataset(path)
    assert ds.problems and all(it.label is None for it in ds.items)
    r = cli("info", str(path))
    assert r.returncode == 0 and "Traceback" not in r.stderr


def test_deeply_nested_json_anywhere_is_no_failure(tmp_path: Path) -> None:
    make_folder = make_utkface(tmp_path / "u", n=3)
    (tmp_path / "u" / "deep.json").write_text('{"images": ' + "[" * 100_000 + "]" * 100_000 + "}")
    ds = open_dataset(make_folder.root)
    assert ds.format == "utkface" and len(ds.items) == 3
    path = tmp_path / "u" / "deep.json"
    r = cli("info", str(path))
    assert r.returncode == 2 and "nested too deeply" in r.stderr and "Traceback" not in r.stderr


# -- journal replay --------------------------------------------------------------------------------------------


def test_journal_lines_with_nan_or_wrong_length_are_not_replayed(tmp_path: Path) -> None:
    make_points_csv(tmp_path / "d", n=3)
    ds = open_dataset(tmp_path / "d")
    with LabelStore.open(ds) as s:
        s.correct(FIRST, (5.0, 6.0))
        last = json.loads(s.journal.path.read_text().splitlines()[-1])
        journal = s.journal.path
    bad = [
        {**last, "id": last["id"] + 1, "new": [1, 2, 3, 4, 5]},
        {**last, "id": last["id"] + 2, "new": [1, 2]},
    ]
    with open(journal, "a") as f:
        f.write(json.dumps(bad[0]) + "\n")
        f.write(json.dumps(bad[1]).replace("[1, 2]", "[NaN, 2]") + "\n")
    with LabelStore.open(open_dataset(tmp_path / "d")) as s:
        assert s.effective(FIRST) == (5.0, 6.0)
    out = tmp_path / "o.json"
    assert main(["labels", str(tmp_path / "d"), "--format", "coco", "--out", str(out)]) == 0
    json.loads(out.read_text(), parse_constant=lambda c: pytest.fail(f"{c} in the export"))


# -- work thrown away late ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("folder, argv", [("runs", ["train"]), ("embeddings", ["embed"])])
def test_runs_or_embeddings_being_a_file_fails_before_work(tmp_path: Path, capsys, folder, argv) -> None:
    make_points_csv(tmp_path / "d", n=3)
    assert main(["info", str(tmp_path / "d")]) == 0
    (tmp_path / "d" / ".imgreg" / folder).write_text("not a folder")
    assert main([*argv, str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "it is a file" in err[0]


# -- tracebacks ------------------------------------------------------------------------------------------------


def test_labels_out_a_folder_or_under_a_file_is_one_line(tmp_path: Path, capsys) -> None:
    make_points_csv(tmp_path / "d", n=2)
    (tmp_path / "f").write_text("x")
    for out in (tmp_path, tmp_path / "f" / "x.csv"):
        assert main(["labels", str(tmp_path / "d"), "--out", str(out)]) == 2
        assert capsys.readouterr().err.count("\n") == 1


@pytest.mark.parametrize(
    "conf",
    [
        [1, 2],
        {"size": 5},
        {"y_range": 5},
        {"weights_file": 5},
        {"size": "64x64"},
        {"normalize": [[0, 0, 0], [1, 0, 1]]},
    ],
)
def test_bad_run_config_is_a_schema_error(conf) -> None:
    with pytest.raises(SchemaError):
        check_config(conf)


def test_bad_run_config_is_one_line_from_the_cli(tmp_path: Path, capsys) -> None:
    pytest.importorskip("torch")
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"size": "64x64", "kind": "point"}))
    (run / "model.safetensors").write_bytes(b"")
    make_points_csv(tmp_path / "d", n=2)
    assert main(["predict", str(run), str(tmp_path / "d")]) == 2
    assert "size must be [height, width]" in capsys.readouterr().err


@pytest.mark.parametrize(
    "meta",
    [
        {},
        {"input": {"size": [64]}},
        {"input": {"size": [64, 64], "mean": "x", "std": [1, 1, 1]}, "kind": "point"},
    ],
)
def test_bad_onnx_metadata_is_a_schema_error(meta) -> None:
    with pytest.raises(SchemaError):
        check_onnx_meta(meta)


# -- absurd labels -------------------------------------------------------------------------------------------------


def test_absurd_point_labels_are_refused_with_a_reason(tmp_path: Path, capsys) -> None:
    make_points_csv(tmp_path / "d", n=2)
    for vals in (["100000", "-5000"], ["1e308", "1e308"]):
        assert main(["correct", str(tmp_path / "d"), FIRST, *vals]) == 2
        assert "far outside the 96x64 image" in capsys.readouterr().err
    assert main(["correct", str(tmp_path / "d"), FIRST, "--", "-20", "90"]) == 0  # within the margin
    ds = open_dataset(tmp_path / "d")
    assert check_label(ds, FIRST, (1.0, 2.0, 3.0)) is not None
    assert check_label(ds, FIRST, (1.0, float("nan"))) is not None


def test_scalar_ranges_utkface_scalar_csv_and_limits_json(tmp_path: Path) -> None:
    u = make_utkface(tmp_path / "u", n=3).root
    ds = open_dataset(u)
    it = ds.items[0]
    assert (
        check_label(ds, it, (121.0,))
        and check_label(ds, it, (-1.0,))
        and check_label(ds, it, (40.0,)) is None
    )
    s = make_scalar_csv(tmp_path / "s", n=6).root
    ds = open_dataset(s)
    vals = [x.label[0] for x in ds.items]
    span = max(vals) - min(vals)
    assert check_label(ds, ds.items[0], (max(vals) + 0.4 * span,)) is None
    assert "outside" in check_label(ds, ds.items[0], (max(vals) + 0.6 * span,))
    (s / ".imgreg").mkdir(exist_ok=True)
    (s / ".imgreg" / "limits.json").write_text(json.dumps({"min": 0, "max": 1000}))
    assert check_label(ds, ds.items[0], (999.0,)) is None and "limits.json" in check_label(
        ds, ds.items[0], (1001.0,)
    )
    (s / ".imgreg" / "limits.json").write_text("[")
    assert "cannot check labels" in check_label(ds, ds.items[0], (1.0,))


def test_store_edits_use_the_rule(tmp_path: Path) -> None:
    make_points_csv(tmp_path / "d", n=2)
    with LabelStore.open(open_dataset(tmp_path / "d")) as s:
        with pytest.raises(ValueError, match="far outside"):
            s.correct(FIRST, (1e6, 1e6))
        with pytest.raises(ValueError, match="2 values"):
            s.set_state(FIRST, (1.0, 2.0, 3.0), "corrected", False)


# -- other -------------------------------------------------------------------------------------------------------


def test_export_onto_the_dataset_label_file_is_refused(tmp_path: Path, capsys) -> None:
    make_points_csv(tmp_path / "d", n=2)
    src = tmp_path / "d" / "labels.csv"
    before = src.read_bytes()
    for fmt in ("csv", "json", "coco"):
        assert main(["labels", str(tmp_path / "d"), "--format", fmt, "--out", str(src)]) == 2
    assert main(["labels", str(tmp_path / "d"), "--out", str(tmp_path / "d" / FIRST)]) == 2
    assert src.read_bytes() == before
    assert (
        main(["labels", str(tmp_path / "d"), "--out", str(tmp_path / "d" / "a.csv")]) == 2
    )  # would take over
    assert "source files are never overwritten" in capsys.readouterr().err


def test_exports_respect_the_umask(tmp_path: Path) -> None:
    make_points_csv(tmp_path / "d", n=2)
    old = os.umask(0o022)
    try:
        assert main(["labels", str(tmp_path / "d"), "--out", str(tmp_path / "o.csv")]) == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "o.csv").stat().st_mode) == 0o644


def test_control_characters_in_names_are_escaped_and_outside_paths_noted(tmp_path: Path) -> None:
    _one_image(tmp_path / "c")
    _one_image(tmp_path, "out.png")
    _coco(
        tmp_path / "c", [{"id": 1, "file_name": "\x1b[31mred.png"}, {"id": 2, "file_name": "../out.png"}], []
    )
    r = cli("info", str(tmp_path / "c"))
    assert r.returncode == 0 and "\x1b" not in r.stdout and "\\x1b[31mred.png" in r.stdout
    assert "1 listed images lie outside the dataset folder" in r.stdout


def test_predict_out_onto_a_source_file_is_refused_before_work(tmp_path: Path, capsys) -> None:
    make_points_csv(tmp_path / "d", n=2)
    src = tmp_path / "d" / "labels.csv"
    before = src.read_bytes()
    assert main(["predict", str(tmp_path / "m.onnx"), str(tmp_path / "d"), "--out", str(src)]) == 2
    assert "never overwritten" in capsys.readouterr().err and src.read_bytes() == before
