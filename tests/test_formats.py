"""Dataset detection and indexing: every format, batching, order, and every kind of bad input."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from engine.core import Cancelled, CancelToken, Dataset
from engine.data import DatasetError, detect, open_dataset, synth
from engine.data.biwi import DEFAULT_CAL

SZ = (64, 48)


def png(w: int = 32, h: int = 24) -> bytes:
    """Bytes of a small valid PNG."""
    return cv2.imencode(".png", np.full((h, w, 3), 120, np.uint8))[1].tobytes()


def jpg(w: int = 32, h: int = 24) -> bytes:
    """Bytes of a small valid JPEG."""
    return cv2.imencode(".jpg", np.full((h, w, 3), 120, np.uint8))[1].tobytes()


def close(ds: Dataset, truth: dict[str, tuple[float, ...]], tol: float = 1e-3) -> bool:
    """Whether the dataset's labels equal ``truth`` within ``tol``."""
    got = {it.name: it.label for it in ds.items}
    return got.keys() == truth.keys() and all(np.allclose(got[k], truth[k], atol=tol) for k in truth)


def reasons(ds: Dataset) -> dict[str, str]:
    """Problems by item name."""
    return {p.item: p.reason for p in ds.problems}


def biwi(tmp_path: Path, **kw) -> synth.Synth:
    """A tiny synthetic Biwi dataset."""
    kw = {"groups": 2, "frames": 3, "size": SZ, **kw}
    return synth.make_biwi(tmp_path / "biwi", **kw)


def pose(path: Path, x: float, y: float, z: float) -> None:
    """Write a pose file with an identity rotation."""
    path.write_text(synth.pose_text((x, y, z)))


# ---------------------------------------------------------------- formats


@pytest.mark.parametrize("ext", ["png", "jpg"])
def test_biwi_labels_match_truth_with_per_folder_calibration(tmp_path: Path, ext: str) -> None:
    s = biwi(tmp_path, ext=ext)
    ds = open_dataset(s.root)
    assert (ds.format, ds.kind, ds.n_points) == ("biwi", "point", 1)
    assert [it.name for it in ds.items] == sorted(s.truth)
    assert ds.groups == ["01", "02"] and not ds.problems and not ds.notes
    for it in ds.items:
        assert it.group == it.name.split("/")[0] and it.path == s.root / it.name
        assert it.label == pytest.approx(s.truth[it.name], abs=1e-3)


def test_on_batch_gets_every_item_in_order_first_folder_first(tmp_path: Path) -> None:
    s = biwi(tmp_path, groups=3, frames=2)
    batches: list[list] = []
    ds = open_dataset(s.root, on_batch=batches.append)
    assert [it for b in batches for it in b] == ds.items
    assert [it.group for it in batches[0]] == ["01", "01"]


def test_on_batch_chunks_big_folders(tmp_path: Path) -> None:
    root = tmp_path / "big"
    (root / "01").mkdir(parents=True)
    data = png()
    for i in range(600):
        (root / "01" / f"frame_{i:05d}_rgb.png").write_bytes(data)
        pose(root / "01" / f"frame_{i:05d}_pose.txt", 0, 0, 1000)
    batches: list[int] = []
    ds = open_dataset(root, on_batch=lambda b: batches.append(len(b)))
    assert batches[0] <= 256 and sum(batches) == len(ds.items) == 600
    assert any("no rgb.cal" in n for n in ds.notes)
    assert ds.items[0].label == pytest.approx((DEFAULT_CAL.cx, DEFAULT_CAL.cy))


def test_natural_order_of_groups_and_frames(tmp_path: Path) -> None:
    root = tmp_path / "nat"
    for g in ("10", "2"):
        for f in (10, 9):
            (root / g).mkdir(parents=True, exist_ok=True)
            (root / g / f"frame_{f}_rgb.png").write_bytes(png())
            pose(root / g / f"frame_{f}_pose.txt", 0, 0, 1000)
    ds = open_dataset(root)
    assert [it.name for it in ds.items] == [
        "2/frame_9_rgb.png",
        "2/frame_10_rgb.png",
        "10/frame_9_rgb.png",
        "10/frame_10_rgb.png",
    ]


def test_single_person_folder(tmp_path: Path) -> None:
    s = biwi(tmp_path, groups=1)
    ds = open_dataset(s.root / "01")
    assert ds.format == "biwi" and ds.groups == ["01"]
    assert ds.items[0].name == "frame_00003_rgb.png"
    assert ds.items[0].label == pytest.approx(s.truth["01/frame_00003_rgb.png"], abs=1e-3)


def test_points_csv(tmp_path: Path) -> None:
    s = synth.make_points_csv(tmp_path / "pts", n=5, size=SZ)
    ds = open_dataset(s.root)
    assert (ds.format, ds.kind, ds.n_points) == ("points-csv", "point", 1)
    assert close(ds, s.truth)
    assert ds.groups == ["img"] and not ds.problems
    assert open_dataset(s.root / "labels.csv").items == ds.items  # the CSV itself may be opened


def test_points_csv_several_points_and_unlabelled_rows(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(png())
    (tmp_path / "b.png").write_bytes(png())
    (tmp_path / "pts.csv").write_text("image,x1,y1,x2,y2\na.png,1,2,3,4\nb.png,,,,\n")
    ds = open_dataset(tmp_path)
    assert ds.n_points == 2 and ds.groups == ["."]
    assert [(it.name, it.label) for it in ds.items] == [("a.png", (1, 2, 3, 4)), ("b.png", None)]
    assert not ds.problems


def test_csv_paths_relative_to_csv_in_subfolder(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.png").write_bytes(png())
    (tmp_path / "sub" / "v.csv").write_text("image,value\na.png,3.5\n")
    ds = open_dataset(tmp_path / "sub" / "v.csv")
    assert ds.root == tmp_path / "sub" and ds.items[0].name == "a.png" and ds.items[0].label == (3.5,)


def test_scalar_csv(tmp_path: Path) -> None:
    s = synth.make_scalar_csv(tmp_path / "sc", n=4, size=32)
    ds = open_dataset(s.root)
    assert (ds.format, ds.kind) == ("scalar-csv", "scalar")
    assert close(ds, s.truth)


@pytest.mark.parametrize("chip", [True, False])
def test_utkface(tmp_path: Path, chip: bool) -> None:
    s = synth.make_utkface(tmp_path / "utk", n=6, size=32, chip=chip)
    ds = open_dataset(s.root)
    assert (ds.format, ds.kind) == ("utkface", "scalar")
    assert {it.name: it.label for it in ds.items} == s.truth and not ds.problems


def test_plain_folder_recursive(tmp_path: Path) -> None:
    s = synth.make_folder(tmp_path / "f", n=3, size=SZ)
    (s.root / "sub").mkdir()
    (s.root / "sub" / "x.jpg").write_bytes(jpg())
    (s.root / "notes.txt").write_text("hi")
    ds = open_dataset(s.root)
    assert (ds.format, ds.kind) == ("folder", "point")
    assert [it.name for it in ds.items] == [*sorted(s.truth), "sub/x.jpg"]
    assert all(it.label is None and it.problem is None for it in ds.items)
    assert ds.groups == [".", "sub"]


def test_detect_and_dataset_errors(tmp_path: Path) -> None:
    assert detect(synth.make_folder(tmp_path / "f", n=1, size=SZ).root) == "folder"
    with pytest.raises(DatasetError, match="no such"):
        open_dataset(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError):
        open_dataset(tmp_path / "empty")
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "a.txt").write_text("x")
    (tmp_path / "text" / "other.csv").write_text("name,age\n")
    with pytest.raises(DatasetError) as e:
        open_dataset(tmp_path / "text")
    assert "\n" not in str(e.value)
    with pytest.raises(DatasetError):
        open_dataset(tmp_path / "text" / "a.txt")


def test_cancel_now_stops_indexing(tmp_path: Path) -> None:
    s = biwi(tmp_path)
    token = CancelToken()
    token.cancel("now")
    with pytest.raises(Cancelled):
        open_dataset(s.root, cancel=token)


# ---------------------------------------------------------------- problems


def test_biwi_problem_kinds(tmp_path: Path) -> None:
    s = biwi(tmp_path, groups=1, frames=12)
    d = s.root / "01"
    f = [f"frame_{i + 3:05d}" for i in range(12)]
    (d / f"{f[0]}_rgb.png").write_bytes(png()[:-20])  # truncated
    (d / f"{f[1]}_rgb.png").write_bytes(b"")
    (d / f"{f[2]}_rgb.png").write_bytes(b"hello, not an image" * 10)
    (d / f"{f[3]}_pose.txt").unlink()
    (d / f"{f[4]}_pose.txt").write_text("")
    (d / f"{f[5]}_pose.txt").write_text("1 0 0\n0 1 0\n")
    pose(d / f"{f[6]}_pose.txt", float("nan"), 0, 1000)
    pose(d / f"{f[7]}_pose.txt", 10, 10, 0)
    pose(d / f"{f[8]}_pose.txt", 5000, 0, 100)
    (d / "frame_00099_pose.txt").write_text(synth.pose_text((0, 0, 1000)))
    (d / "frame_00098_rgb.png").mkdir()
    jpg_bytes = jpg()
    (d / f"{f[9]}_rgb.png").unlink()
    (d / f"{f[9]}_rgb.jpg").write_bytes(jpg_bytes[: len(jpg_bytes) // 2])
    ds = open_dataset(s.root)
    r = reasons(ds)
    assert "truncated PNG" in r[f"01/{f[0]}_rgb.png"]
    assert "zero-byte" in r[f"01/{f[1]}_rgb.png"]
    assert "not an image" in r[f"01/{f[2]}_rgb.png"]
    assert f"01/{f[3]}_rgb.png" not in r  # no pose file: an unlabelled item, not a problem
    assert "empty pose" in r[f"01/{f[4]}_rgb.png"]
    assert "malformed pose" in r[f"01/{f[5]}_rgb.png"]
    assert "NaN" in r[f"01/{f[6]}_rgb.png"]
    assert "z = 0" in r[f"01/{f[7]}_rgb.png"]
    assert "far outside" in r[f"01/{f[8]}_rgb.png"]
    assert "truncated JPEG" in r[f"01/{f[9]}_rgb.jpg"]
    assert "without image" in r["01/frame_00099_pose.txt"]
    assert "folder named like an image" in r["01/frame_00098_rgb.png"]
    bad = {f"01/{f[i]}_rgb.png" for i in range(9) if i != 3} | {f"01/{f[9]}_rgb.jpg"}
    by_name = {it.name: it for it in ds.items}
    assert by_name[f"01/{f[3]}_rgb.png"].label is None and by_name[f"01/{f[3]}_rgb.png"].problem is None
    assert any("1 frames without a pose file (unlabelled)" in n for n in ds.notes)
    assert bad <= set(by_name)  # problem items stay listed ...
    for name in bad:
        assert by_name[name].label is None and by_name[name].problem == r[name]
    good = [it for it in ds.items if it.name not in bad and it.label]
    assert len(good) == 2 and all(not it.problem for it in good)


@pytest.mark.parametrize("cal", [None, "garbage\n", "1 2\n3 4\n", "0 0 320\n0 0 240\n0 0 1\n\n640 480\n"])
def test_missing_or_malformed_rgb_cal_falls_back(tmp_path: Path, cal: str | None) -> None:
    s = biwi(tmp_path, groups=2, frames=1)
    if cal is None:
        (s.root / "02" / "rgb.cal").unlink()
    else:
        (s.root / "02" / "rgb.cal").write_text(cal)
    ds = open_dataset(s.root)
    assert len(ds.notes) == 1 and ds.notes[0].startswith("02:") and "default" in ds.notes[0]
    assert "02/rgb.cal" in reasons(ds)
    it = ds.item("01/frame_00003_rgb.png")
    assert it.label == pytest.approx(s.truth[it.name], abs=1e-3)
    it = ds.item("02/frame_00003_rgb.png")
    x, y, z = (float(t) for t in (s.root / "02/frame_00003_pose.txt").read_text().split()[9:])
    c = DEFAULT_CAL
    assert it.label == pytest.approx((x * c.fx / z + c.cx, y * c.fy / z + c.cy))


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symlinks")
def test_symlink_loops_and_broken_links(tmp_path: Path) -> None:
    s = synth.make_folder(tmp_path / "f", n=2, size=SZ)
    (s.root / "sub").mkdir()
    (s.root / "sub" / "a.png").write_bytes(png())
    os.symlink(s.root, s.root / "sub" / "loop")
    os.symlink(s.root / "nothing.png", s.root / "dangling.png")
    os.symlink("self.png", s.root / "self.png")
    ds = open_dataset(s.root)
    r = reasons(ds)
    assert "symlink loop" in r["sub/loop"]
    assert "broken" in r["dangling.png"] and "broken" in r["self.png"]
    assert [it.name for it in ds.items] == [*sorted(s.truth), "sub/a.png"]

    b = biwi(tmp_path, groups=1, frames=1)
    os.symlink(b.root / "01", b.root / "02")
    os.symlink(b.root, b.root / "01" / "up")
    ds = open_dataset(b.root)
    assert len(ds.items) == 1 and "symlink loop" in reasons(ds)["02"]


def test_non_ascii_names(tmp_path: Path) -> None:
    s = synth.make_biwi(tmp_path / "bïwi", groups=1, frames=1, size=SZ)
    (s.root / "01").rename(s.root / "Jürgen")
    ds = open_dataset(s.root)
    assert ds.items[0].name == "Jürgen/frame_00003_rgb.png" and ds.items[0].label

    root = tmp_path / "csv"
    root.mkdir()
    (root / "été 日本.png").write_bytes(png())
    (root / "labels.csv").write_text("image,x,y\nété 日本.png,1.5,2\n", encoding="utf-8")
    ds = open_dataset(root)
    assert ds.items[0].name == "été 日本.png" and ds.items[0].label == (1.5, 2.0) and not ds.problems


def test_undecodable_file_name_is_a_problem(tmp_path: Path) -> None:
    s = synth.make_folder(tmp_path / "f", n=1, size=SZ)
    try:
        fd = os.open(os.fsencode(s.root) + b"/bad\xff.png", os.O_CREAT | os.O_WRONLY)
    except (OSError, UnicodeError):
        pytest.skip("file system refuses undecodable names")
    os.write(fd, png())
    os.close(fd)
    ds = open_dataset(s.root)
    assert len(ds.items) == 1 and any("UTF-8" in p.reason for p in ds.problems)


def test_csv_not_utf8_is_read_as_cp1252(tmp_path: Path) -> None:
    (tmp_path / "café.png").write_bytes(png())
    (tmp_path / "v.csv").write_bytes("image,value\ncafé.png,2\n".encode("cp1252"))
    ds = open_dataset(tmp_path)
    assert (
        ds.items[0].name == "café.png"
        and ds.items[0].label == (2.0,)
        and any("Windows-1252" in n for n in ds.notes)
    )


def test_detection_priority(tmp_path: Path) -> None:
    s = biwi(tmp_path, groups=1, frames=1)
    (s.root / "unrelated.csv").write_text("a,b\n1,2\n")
    (s.root / "misc").mkdir()
    (s.root / "frame_1_rgb.png").mkdir()
    ds = open_dataset(s.root)
    assert ds.format == "biwi" and len(ds.items) == 1
    assert "misc: no Biwi frames, skipped" in ds.notes and "frame_1_rgb.png" in reasons(ds)
    (s.root / "labels.csv").write_text("image,x,y\n01/frame_00003_rgb.png,1,2\n")
    assert detect(s.root) == "points-csv"


def test_utkface_malformed_names(tmp_path: Path) -> None:
    s = synth.make_utkface(tmp_path / "utk", n=4, size=32)
    data = jpg()
    for name in ("61_1_20170109142408075.jpg.chip.jpg", "x_1_2_2017.jpg", "999_1_2_2017.jpg"):
        (s.root / name).write_bytes(data)
    ds = open_dataset(s.root)
    r = reasons(ds)
    assert (
        "3 fields" in r["61_1_20170109142408075.jpg.chip.jpg"]
        and "61" in r["61_1_20170109142408075.jpg.chip.jpg"]
    )
    assert "not a whole number" in r["x_1_2_2017.jpg"]
    assert "implausible" in r["999_1_2_2017.jpg"]
    assert ds.item("x_1_2_2017.jpg").label is None and len(ds.items) == 7


def test_csv_row_problems(tmp_path: Path) -> None:
    for n in "abcdef":
        (tmp_path / f"{n}.png").write_bytes(png())
    (tmp_path / "e.png").write_bytes(png()[:30])
    (tmp_path / "labels.csv").write_text(
        "image,x,y\na.png,1,2\nb.png,one,2\nc.png,nan,2\nd.png,1\ne.png,1,2\nmissing.png,1,2\n"
        "a.png,5,5\nf.png,1,\n,3,4\n"
    )
    ds = open_dataset(tmp_path)
    r = reasons(ds)
    assert "not a number" in r["b.png"] and "finite" in r["c.png"] and "columns" in r["d.png"]
    assert "truncated" in r["e.png"] and "missing" in r["missing.png"] and "empty" in r["f.png"]
    assert "listed again" in r["labels.csv:8"] and "empty image path" in r["labels.csv:10"]
    assert [it.name for it in ds.items] == [
        "a.png",
        "b.png",
        "c.png",
        "d.png",
        "e.png",
        "missing.png",
        "f.png",
    ]
    assert ds.item("a.png").label == (1.0, 2.0)
    assert all(it.label is None for it in ds.items[1:])


# ---------------------------------------------------------------- real data


def test_biwi_sample_matches_book_genfromtxt(shared_data: Path) -> None:
    root = shared_data / "biwi-sample"
    ds = open_dataset(root)
    assert len(ds.items) == 14 and not ds.problems and not ds.notes
    for it in ds.items:
        cal = np.genfromtxt(root / it.group / "rgb.cal", skip_footer=6)
        ctr = np.genfromtxt(str(it.path).replace("_rgb.png", "_pose.txt"), skip_header=3)
        u = ctr[0] * cal[0][0] / ctr[2] + cal[0][2]
        v = ctr[1] * cal[1][1] / ctr[2] + cal[1][2]
        assert it.label == pytest.approx((u, v), rel=1e-12)
        assert 0 < u < 640 and 0 < v < 480


def test_utkface_sample(shared_data: Path) -> None:
    ds = open_dataset(shared_data / "utkface-sample")
    assert ds.format == "utkface" and len(ds.items) == 927
    assert sorted(p.item for p in ds.problems) == [
        "61_1_20170109142408075.jpg.chip.jpg",
        "61_3_20170109150557335.jpg.chip.jpg",
    ]
