"""The ``imgreg`` CLI for datasets and labels: info, labels, correct, revert, verify, and its errors."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine.cli import main
from engine.data.synth import make_biwi, make_utkface

ROOT = Path(__file__).resolve().parents[1]


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_info_json_counts_a_biwi_set(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_biwi(tmp_path / "b", groups=2, frames=3)
    code, out, _ = run(capsys, "info", tmp_path / "b", "--json")
    info = json.loads(out)
    assert code == 0
    assert info["format"] == "biwi" and info["kind"] == "point"
    assert info["counts"]["items"] == 6 and info["counts"]["groups"] == 2 and info["counts"]["labelled"] == 6
    assert info["counts"]["problems"] == 0 and info["problems"] == []
    assert set(info["label_stats"]) == {"x", "y"}


def test_labels_give_the_projected_centres(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    synth = make_biwi(tmp_path / "b", groups=2, frames=3)
    code, out, _ = run(capsys, "labels", tmp_path / "b")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and len(rows) == 6
    for row in rows:
        x, y = synth.truth[row["item"]]
        assert float(row["x"]) == pytest.approx(x, abs=1e-3)
        assert float(row["y"]) == pytest.approx(y, abs=1e-3)
        assert row["source"] == "original" and row["group"] == row["item"][:2]


def test_correct_revert_verify_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    synth = make_biwi(tmp_path / "b", groups=1, frames=2)
    item = sorted(synth.truth)[0]
    pose = (tmp_path / "b" / item.replace("_rgb.png", "_pose.txt")).read_bytes()
    assert run(capsys, "correct", tmp_path / "b", item, "12.5", "40.25")[0] == 0
    assert run(capsys, "verify", tmp_path / "b", item)[0] == 0
    rows = {r["item"]: r for r in csv.DictReader(io.StringIO(run(capsys, "labels", tmp_path / "b")[1]))}
    assert (float(rows[item]["x"]), float(rows[item]["y"])) == (12.5, 40.25)
    assert rows[item]["source"] == "corrected" and rows[item]["verified"] == "True"
    info = json.loads(run(capsys, "info", tmp_path / "b", "--json")[1])
    assert info["counts"]["corrected"] == 1 and info["counts"]["verified"] == 1
    assert run(capsys, "revert", tmp_path / "b", item)[0] == 0
    out = run(capsys, "labels", tmp_path / "b", "--format", "json")[1]
    row = {r["item"]: r for r in json.loads(out)}[item]
    assert (row["x"], row["y"]) == pytest.approx(synth.truth[item], abs=1e-3)
    assert row["source"] == "original"
    assert (tmp_path / "b" / item.replace("_rgb.png", "_pose.txt")).read_bytes() == pose


def test_scalar_labels_and_value_correction(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    synth = make_utkface(tmp_path / "u", n=5)
    item = sorted(synth.truth)[0]
    assert run(capsys, "correct", tmp_path / "u", item, "--value", "33")[0] == 0
    out_file = tmp_path / "labels.json"
    assert run(capsys, "labels", tmp_path / "u", "--out", out_file)[0] == 0
    rows = {r["item"]: r for r in json.loads(out_file.read_text())}
    assert rows[item]["value"] == 33.0 and rows[item]["source"] == "corrected"
    other = sorted(synth.truth)[1]
    assert rows[other]["value"] == synth.truth[other][0]


def test_bad_requests_exit_nonzero_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "info", tmp_path / "missing")
    assert code == 2 and err.startswith("imgreg: error:") and err.count("\n") == 1
    (tmp_path / "empty").mkdir()
    code, _, err = run(capsys, "labels", tmp_path / "empty")
    assert code == 2 and err.count("\n") == 1
    make_biwi(tmp_path / "b", groups=1, frames=1)
    code, _, err = run(capsys, "correct", tmp_path / "b", "01/nope.png", "1", "2")
    assert code == 2 and "no item" in err
    code, _, err = run(capsys, "correct", tmp_path / "b", "01/frame_00003_rgb.png", "--value", "2")
    assert code == 2


def test_broken_dataset_lists_problems_and_exits_zero(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_biwi(tmp_path / "b", groups=2, frames=3)
    (tmp_path / "b" / "01" / "frame_00003_rgb.png").write_bytes(b"")
    (tmp_path / "b" / "02" / "frame_00004_pose.txt").write_text("garbage\n")
    (tmp_path / "b" / "02" / "frame_00099_pose.txt").write_text(
        (tmp_path / "b/02/frame_00003_pose.txt").read_text()
    )
    code, out, _ = run(capsys, "info", tmp_path / "b", "--json")
    info = json.loads(out)
    assert code == 0
    bad = {p["item"] for p in info["problems"]}
    assert "01/frame_00003_rgb.png" in bad and "02/frame_00004_rgb.png" in bad
    assert any("00099" in b for b in bad)
    assert all(p["reason"] for p in info["problems"])


def test_console_entry_point_runs_in_a_fresh_process(tmp_path: Path) -> None:
    make_biwi(tmp_path / "b", groups=1, frames=2)
    out = subprocess.run(
        [sys.executable, "-m", "engine.cli", "info", str(tmp_path / "b")],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert out.returncode == 0 and "biwi" in out.stdout
    out = subprocess.run(
        [sys.executable, "-m", "engine.cli", "info", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert out.returncode == 2 and "Traceback" not in out.stderr


def test_stdin_control_reads_cancel_lines_and_survives_an_unreadable_stdin(monkeypatch) -> None:
    import threading

    from engine.cli.reporter import stdin_control

    class Unreadable(io.StringIO):
        def __iter__(self):
            raise OSError("stdin is closed")

    raised: list[object] = []
    monkeypatch.setattr(threading, "excepthook", raised.append)
    for stream, want in ((io.StringIO("epoch\ncancel\n"), "now"), (Unreadable(), None)):
        with stdin_control(True, stream) as token:
            for t in [t for t in threading.enumerate() if t.name == "imgreg-stdin-control"]:
                t.join(10)
        assert (token.mode if token.requested else None) == want
    assert raised == []
