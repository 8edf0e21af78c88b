"""Property test: generated hostile datasets and arguments fed to the torch-free commands (issue 24).

Every command returns (run in a child with a timeout: a hang check, not a timing assertion), prints no traceback,
exits 0 (problems listed) or 2 with one error line, every acknowledged correction is read back, and nothing
changes outside the dataset's ``.imgreg/`` and the named output. Training, prediction and embedding import
torch and are left to tests/test_hostile.py's targeted checks.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.data import open_dataset
from engine.data.synth import make_points_csv, make_scalar_csv, write_image
from engine.labels.store import LabelStore

CHILD = Path(__file__).with_name("hostile_child.py")
ROOT = Path(__file__).resolve().parents[1]
BIG = "9" * 400

names = st.one_of(
    st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=24),
    st.sampled_from(
        ["../out.png", "/etc/hostname", "/dev/stdin", "pipe.png", "a\x00b.png", "\x1b[2J.png", "img/000.png",
         "img\\001.png", "C:/x.png", "." * 300, "img/../img/000.png", "img/000.png/x"]
    ),
)  # fmt: skip
numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-(10**6), 10**6).map(str),
    st.sampled_from([BIG, "1e308", "-1e308", "nan", "inf", "", "1e999", "-0", "0x10", "1,5"]),
)
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=8)),
    lambda kids: st.one_of(
        st.lists(kids, max_size=3), st.dictionaries(st.text(max_size=5), kids, max_size=3)
    ),
    max_leaves=6,
)
mutations = st.lists(
    st.one_of(
        st.tuples(st.just("row"), names, st.lists(numbers, min_size=1, max_size=3)),
        st.tuples(st.just("fifo")),
        st.tuples(st.just("deep")),
        st.tuples(st.just("journal"), st.lists(numbers, min_size=0, max_size=5)),
        st.tuples(st.just("limits"), json_values),
        st.tuples(st.just("folder-file"), st.sampled_from(["runs", "embeddings", "cache", "backups"])),
        st.tuples(st.just("coco"), names, json_values, st.lists(numbers, min_size=1, max_size=4)),
    ),
    max_size=4,
)
outs = st.sampled_from(["new", "source", "root", "under-file", "image", "imgreg"])
commands = st.lists(
    st.one_of(
        st.tuples(st.just("info"), st.booleans()),
        st.tuples(st.just("labels"), st.sampled_from(["csv", "json", "coco", "yolo-pose"]), outs),
        st.tuples(st.just("correct"), st.one_of(st.sampled_from(["img/000.png", "img/001.png"]), names),
                  st.lists(numbers.filter(bool), min_size=1, max_size=3)),
        st.tuples(st.just("revert"), st.sampled_from(["img/000.png", "img/001.png"])),
        st.tuples(st.just("verify"), st.sampled_from(["img/000.png", "img/001.png"])),
        st.tuples(st.just("check")),
        st.tuples(st.just("orphans")),
    ),
    min_size=1,
    max_size=5,
)  # fmt: skip


def _csv_line(cells: list[str]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(cells)
    return buf.getvalue()


def build(tmp: Path, base: str, muts: list) -> tuple[Path, Path | None]:
    """The hostile dataset ``tmp/d`` and its label file (None for COCO files that do not parse)."""
    d = tmp / "d"
    if base == "points":
        make_points_csv(d, n=3)
        src = d / "labels.csv"
    elif base == "scalar":
        make_scalar_csv(d, n=3)
        src = d / "values.csv"
    else:
        for i in range(2):
            write_image(d / "img" / f"{i:03d}.png", np.full((20, 30, 3), 40 * i, np.uint8))
        src = d / "k.json"
    coco = {
        "images": [{"id": 1, "file_name": "img/000.png"}, {"id": 2, "file_name": "img/001.png"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "keypoints": [5, 6, 2]}],
        "categories": [{"id": 1, "keypoints": ["p"]}],
    }
    store_muts = []
    for m in muts:
        kind = m[0]
        if kind == "row" and base != "coco":
            with open(src, "a", encoding="utf-8", newline="") as f:
                f.write(_csv_line([m[1], *m[2]]))
        elif kind == "fifo":
            os.mkfifo(d / "pipe.png") if not (d / "pipe.png").exists() else None
            if base == "coco":
                coco["images"].append({"id": 3, "file_name": "pipe.png"})
            else:
                with open(src, "a", encoding="utf-8") as f:
                    f.write("pipe.png,1\n" if base == "scalar" else "pipe.png,1,2\n")
        elif kind == "deep":
            (d / "deep.json").write_text('{"images": ' + "[" * 50_000 + "]" * 50_000 + "}")
        elif kind == "coco" and base == "coco":
            n = len(coco["images"]) + 10
            coco["images"].append({"id": n, "file_name": m[1]})
            kps = "[" + ", ".join(v if v and v[0] in "-0123456789" else "1" for v in m[3]) + "]"
            coco["annotations"].append({"id": n, "image_id": n, "category_id": m[2], "keypoints": f"@{kps}@"})
        else:
            store_muts.append(m)
    if base == "coco":
        text = json.dumps(coco)
        text = text.replace('"@', "").replace('@"', "")
        src.write_text(text)
    try:
        ds = open_dataset(d)
    except Exception:  # noqa: BLE001 (a dataset that does not open: the commands must say so in one line)
        return d, src
    with LabelStore.open(ds) as store:
        if ds.items:
            store.correct(ds.items[0], ds.items[0].label or ((1.0, 2.0) if ds.kind == "point" else (1.0,)))
        journal = store.journal.path
    for m in store_muts:
        kind = m[0]
        if kind == "journal":
            line = {"id": 10_000, "time": 1.0, "item": ds.items[0].name if ds.items else "x", "kind": "correct",
                    "old": None, "old_source": "original", "new": "@NEW@", "source": "corrected",
                    "verified": False, "original": None}  # fmt: skip
            vals = "[" + ", ".join(v if v and v[0] in "-0123456789n" else "1" for v in m[1]) + "]"
            with open(journal, "a") as f:
                f.write(json.dumps(line).replace('"@NEW@"', vals.replace("nan", "NaN")) + "\n")
        elif kind == "limits":
            (d / ".imgreg" / "limits.json").write_text(json.dumps(m[1]))
        elif kind == "folder-file":
            p = d / ".imgreg" / m[1]
            if not p.exists():
                p.write_text("a file where a folder goes")
    return d, src


def snapshot(tmp: Path, skip: list[Path]) -> dict[str, tuple]:
    """Every entry under ``tmp`` (not following links) but the skipped trees: type, size, mtime, link target."""
    out = {}
    for top, dirs, files in os.walk(tmp, followlinks=False):
        for n in dirs + files:
            p = Path(top) / n
            if any(p == s or s in p.parents for s in skip):
                continue
            st_ = p.lstat()
            link = os.readlink(p) if p.is_symlink() else None
            out[str(p.relative_to(tmp))] = (
                st_.st_mode,
                st_.st_size if not p.is_dir() else 0,
                st_.st_mtime_ns,
                link,
            )
    return out


def argv_of(cmd: tuple, d: Path, src: Path | None, tmp: Path, k: int) -> tuple[list[str], Path | None]:
    """The command line of a generated command and the output it names (None when it names none)."""
    name = cmd[0]
    if name == "info":
        return ["info", str(d), *(["--json"] if cmd[1] else [])], None
    if name == "labels":
        where = {
            "new": tmp / "out" / f"e{k}",
            "source": src or d / "x.csv",
            "root": d,
            "under-file": tmp / "afile" / "x",
            "image": d / "img" / "000.png",
            "imgreg": d / ".imgreg" / f"e{k}",
        }[cmd[2]]
        return ["labels", str(d), "--format", cmd[1], "--out", str(where)], where
    if name == "correct":
        return ["correct", str(d), "--", cmd[1], *cmd[2]], None
    if name in ("revert", "verify"):
        return [name, str(d), "--", cmd[1]], None
    return [name, str(d)], None


@settings(max_examples=14, deadline=None, suppress_health_check=list(HealthCheck))
@given(base=st.sampled_from(["points", "scalar", "coco"]), muts=mutations, cmds=commands)
def test_hostile_files_and_arguments(tmp_path_factory, base: str, muts: list, cmds: list) -> None:
    tmp = tmp_path_factory.mktemp("hostile")
    (tmp / "afile").write_text("a file, not a folder")
    (tmp / "out").mkdir()
    d, src = build(tmp, base, muts)
    argvs, named = [], []
    for k, c in enumerate(cmds):
        argv, where = argv_of(c, d, src, tmp, k)
        argvs.append(argv)
        named.append(where)
    argvs.append(["labels", str(d), "--format", "json"])
    userdata = Path(os.environ["IMGREG_DATA_DIR"])
    skip = [d / ".imgreg", tmp / "out", userdata]
    before = snapshot(tmp, skip)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    try:
        proc = subprocess.run(
            [sys.executable, str(CHILD), json.dumps(argvs)], capture_output=True, text=True, timeout=120, env=env,
            stdin=subprocess.PIPE,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise AssertionError(f"a command hung: {argvs}") from None
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(results) == len(argvs)
    expected: dict[str, tuple[float, ...]] = {}
    for argv, res in zip(argvs, results, strict=True):
        assert res["traceback"] is None, f"{argv}: {res['traceback']}"
        assert "Traceback" not in res["err"], f"{argv}: {res['err']}"
        ok = (0, 1, 2) if argv[0] == "check" else (0, 2)  # check: 1 when the store disagrees with its journal
        assert res["rc"] in ok, f"{argv}: rc {res['rc']}: {res['err']}"
        # "imgreg: error: ..." from a command, "imgreg COMMAND: error: ..." from argument checks
        errors = [ln for ln in res["err"].splitlines() if re.match(r"imgreg( [\w-]+)?: error:", ln)]
        if res["rc"] == 2 and not res["err"].startswith("usage:"):
            assert len(errors) == 1 and res["err"].rstrip("\n").splitlines()[-1] == errors[0], res["err"]
        if argv[0] == "correct" and res["rc"] == 0:
            expected[argv[3]] = tuple(float(v) for v in argv[4:])
        if argv[0] == "revert" and res["rc"] == 0:
            expected.pop(argv[3], None)
    final = results[-1]
    if expected:
        assert final["rc"] == 0, final["err"]
        rows = {r["item"]: r for r in json.loads(final["out"])}
        for item, vals in expected.items():
            r = rows[item]
            got = (r["value"],) if "value" in r else tuple(r[k] for k in r if k.startswith(("x", "y")))
            assert got == vals, (item, got, vals)
    assert snapshot(tmp, skip) == before, "something changed outside .imgreg/ and the named output"
    assert not list(tmp.rglob(".*.partial-*")) and not list(tmp.rglob(".*.old-*"))
