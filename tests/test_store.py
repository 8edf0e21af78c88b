"""Tests of the label store: round trips, sync, fallback folder, crash safety and concurrent writers."""

from __future__ import annotations

import contextlib
import math
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.core import Dataset, Item
from engine.labels.store import (
    DB_NAME,
    LabelStore,
    PredictionRow,
    StoreError,
    user_data_dir_for,
)

CHILD = Path(__file__).with_name("store_child.py")


def make_ds(root: Path, labels: dict[str, tuple | None], kind: str = "point") -> Dataset:
    """A Dataset over ``root`` with the given items (no image files needed by the store)."""
    root.mkdir(parents=True, exist_ok=True)
    items = [Item(n, str(Path(n).parent.as_posix()), root / n, lbl) for n, lbl in labels.items()]
    return Dataset(root, "points-csv", kind, items)


@pytest.fixture
def data_dir(tmp_path, monkeypatch) -> Path:
    """A private per-user data folder, so tests never touch the real one."""
    d = tmp_path / "userdata"
    monkeypatch.setenv("IMGREG_DATA_DIR", str(d))
    monkeypatch.delenv("IMGREG_FORCE_USER_DATA", raising=False)
    return d


@pytest.fixture
def ds(tmp_path, data_dir) -> Dataset:
    return make_ds(tmp_path / "ds", {"a.jpg": (1.0, 2.0), "b.jpg": (3.5, 4.25), "sub/c.jpg": None})


@pytest.fixture
def store(ds):
    with LabelStore.open(ds) as s:
        yield s


def integrity(db: Path) -> str:
    with sqlite3.connect(db) as conn:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]


def test_open_syncs_originals(ds, store):
    assert store.dir == ds.root / ".imgreg" and store.db_path == ds.root / ".imgreg" / DB_NAME
    assert store.db_path.exists() and store.schema_version() == 1
    recs = store.records()
    assert list(recs) == ["a.jpg", "b.jpg", "sub/c.jpg"]
    assert recs["a.jpg"].original == (1.0, 2.0) and recs["a.jpg"].source == "original"
    assert recs["a.jpg"].current is None and recs["a.jpg"].verified is False
    assert recs["sub/c.jpg"].effective is None
    assert store.effective_labels() == {"a.jpg": (1.0, 2.0), "b.jpg": (3.5, 4.25)}
    assert store.counts() == {"items": 3, "labelled": 2, "corrected": 0, "verified": 0}
    with sqlite3.connect(store.db_path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == "1"
    assert store.history("a.jpg") == []


def test_correct_revert_verify_history(ds, store):
    a = ds.item("a.jpg")
    rec = store.correct(a, (10.0, 20.0))
    assert rec == store.record(a) and rec.effective == (10.0, 20.0) and rec.original == (1.0, 2.0)
    assert store.effective(a) == (10.0, 20.0) and store.effective("a.jpg") == (10.0, 20.0)
    store.set_verified(a)
    assert store.record(a).verified
    store.revert(a)
    rec = store.record(a)
    assert rec.source == "original" and rec.effective == (1.0, 2.0) and rec.current is None
    store.correct(a, (5, 6), source="prediction")
    assert store.record(a).source == "prediction" and store.effective(a) == (5.0, 6.0)
    store.set_verified(a, False)
    hist = store.history(a)
    assert [h.kind for h in hist] == ["correct", "verify", "revert", "correct", "verify"]
    assert (hist[0].old, hist[0].new, hist[0].old_source, hist[0].new_source) == (
        (1.0, 2.0),
        (10.0, 20.0),
        "original",
        "corrected",
    )
    assert hist[1].verified and not hist[0].verified
    assert (hist[2].old, hist[2].new, hist[2].new_source) == ((10.0, 20.0), (1.0, 2.0), "original")
    assert hist[3].new_source == "prediction" and hist[4].verified is False
    assert all(h.item == "a.jpg" for h in hist) and hist[0].time <= hist[-1].time
    assert store.counts() == {"items": 3, "labelled": 2, "corrected": 1, "verified": 0}
    assert store.history("b.jpg") == []


def test_set_state_restores_exact_state(store):
    before = store.record("b.jpg")
    store.correct("b.jpg", (7.0, 8.0))
    store.set_verified("b.jpg")
    after = store.record("b.jpg")
    store.set_state("b.jpg", before.current, before.source, before.verified)  # undo
    assert store.record("b.jpg") == before
    store.set_state("b.jpg", after.current, after.source, after.verified)  # redo
    assert store.record("b.jpg") == after
    assert [h.kind for h in store.history("b.jpg")][-2:] == ["set_state", "set_state"]


def test_corrections_for_items_without_originals(tmp_path, data_dir):
    ds = make_ds(tmp_path / "folder", {"x.png": None, "y/z.png": None}, kind="scalar")
    with LabelStore.open(ds) as store:
        assert store.effective_labels() == {}
        store.correct("x.png", (42,))
        store.correct("not/in/dataset.png", (3.0,))
        store.correct(Item("new.png", ".", ds.root / "new.png", (9.0,)), (10.0,))
        assert store.effective_labels() == {
            "x.png": (42.0,),
            "not/in/dataset.png": (3.0,),
            "new.png": (10.0,),
        }
        assert store.record("new.png").original == (9.0,)
        store.revert("x.png")
        assert store.effective("x.png") is None
        assert store.record("unknown.png").effective is None
        assert store.counts() == {"items": 4, "labelled": 2, "corrected": 2, "verified": 0}


def test_floats_round_trip_exactly(store):
    vals = [0.1, 1 / 3, 1e-300, 5e-324, 123456789.123456789, -0.0, 2.0**60 + 1, math.pi * 1e10]
    for i, v in enumerate(vals):
        store.correct(f"f{i}.jpg", (v, -v))
    store.close()
    with LabelStore(store.root) as again:
        for i, v in enumerate(vals):
            got = again.effective(f"f{i}.jpg")
            assert got == (v, -v) and all(isinstance(g, float) for g in got)
            assert math.copysign(1, got[0]) == math.copysign(1, v)


def test_bad_edits_are_rejected(store):
    for bad in [(), (1.0, math.nan), (math.inf,)]:
        with pytest.raises(ValueError):
            store.correct("a.jpg", bad)
    with pytest.raises(ValueError):
        store.correct("a.jpg", (1.0, 2.0), source="original")
    with pytest.raises(ValueError):
        store.set_state("a.jpg", (1.0, 2.0), "guess", False)
    assert store.history("a.jpg") == [] and store.effective("a.jpg") == (1.0, 2.0)


def test_a_changed_label_is_no_longer_verified(ds, store):
    store.set_verified("a.jpg")
    store.correct("a.jpg", store.effective("a.jpg"))  # the same label again: still vouched for
    assert store.record("a.jpg").verified
    store.correct("a.jpg", (10.0, 20.0))
    assert not store.record("a.jpg").verified
    store.set_verified("a.jpg")
    store.revert("a.jpg")
    assert not store.record("a.jpg").verified
    store.set_verified("a.jpg")
    store.correct("a.jpg", (5.0, 6.0), source="prediction")
    assert not store.record("a.jpg").verified


def test_sync_keeps_corrections(ds, store):
    store.correct("a.jpg", (10.0, 20.0))
    store.set_verified("a.jpg")
    seen = []
    store.subscribe(seen.append)
    ds.item("a.jpg").label = (1.5, 2.5)  # the source file changed
    ds.item("b.jpg").label = (30.0, 40.0)
    ds.items = [it for it in ds.items if it.name != "sub/c.jpg"] + [
        Item("d.jpg", ".", ds.root / "d.jpg", (0.0,))
    ]
    assert sorted(store.sync(ds.items)) == ["a.jpg", "b.jpg", "d.jpg"]
    assert [sorted(names) for names in seen] == [["a.jpg", "b.jpg", "d.jpg"]]
    a = store.record("a.jpg")
    assert a.original == (1.5, 2.5) and a.effective == (10.0, 20.0) and a.verified
    assert store.effective("b.jpg") == (30.0, 40.0) and store.effective("d.jpg") == (0.0,)
    assert "sub/c.jpg" in store.records()  # items that vanished keep their rows
    sync = store.history("b.jpg")[-1]
    assert (sync.kind, sync.old, sync.new) == ("sync", (3.5, 4.25), (30.0, 40.0))
    assert store.sync(ds.items) == []  # unchanged: nothing written
    store.close()
    with LabelStore.open(ds) as again:
        assert again.effective("a.jpg") == (10.0, 20.0) and again.record("a.jpg").original == (1.5, 2.5)


def test_predictions_per_run_never_touch_labels(store):
    before = store.records()
    store.put_predictions(
        "run1", [PredictionRow("a.jpg", (1.1, 2.2), 0.5, 0.1), PredictionRow("b.jpg", (3, 4))]
    )
    store.put_predictions("run2", [PredictionRow("a.jpg", (9.0, 9.0), None, 2.0)])
    assert store.records() == before and store.history("a.jpg") == []
    p1, p2 = store.predictions("run1"), store.predictions("run2")
    assert p1["a.jpg"] == PredictionRow("a.jpg", (1.1, 2.2), 0.5, 0.1)
    assert p1["b.jpg"] == PredictionRow("b.jpg", (3.0, 4.0), None, None)
    assert p2 == {"a.jpg": PredictionRow("a.jpg", (9.0, 9.0), None, 2.0)}
    store.put_predictions("run1", [PredictionRow("a.jpg", (1.0, 1.0), 0.0, None)])  # re-predict one item
    assert store.predictions("run1")["a.jpg"].pred == (1.0, 1.0) and len(store.predictions("run1")) == 2
    assert store.prediction_runs() == ["run1", "run2"]
    store.delete_predictions("run1")
    assert store.prediction_runs() == ["run2"] and store.predictions("run1") == {}
    store.correct("a.jpg", store.predictions("run2")["a.jpg"].pred, source="prediction")
    assert store.predictions("run2")["a.jpg"].pred == (9.0, 9.0)
    with pytest.raises(ValueError):
        store.put_predictions("run3", [PredictionRow("a.jpg", (math.nan, 1.0))])
    assert "run3" not in store.prediction_runs()


def test_subscribe_and_unsubscribe(store):
    seen: list[list[str]] = []

    def broken(names):
        raise RuntimeError("listener bug")

    store.subscribe(broken)  # a failing listener must not undo or block the edit
    store.subscribe(seen.append)
    store.correct("a.jpg", (0.0, 0.0))
    store.set_verified("b.jpg")
    store.revert("a.jpg")
    store.set_state("b.jpg", None, "original", False)
    assert seen == [["a.jpg"], ["b.jpg"], ["a.jpg"], ["b.jpg"]]
    store.unsubscribe(seen.append)
    store.unsubscribe(seen.append)  # twice is harmless
    store.correct("a.jpg", (1.0, 1.0))
    assert len(seen) == 4 and store.effective("a.jpg") == (1.0, 1.0)


def test_closed_store_and_newer_schema(ds, store):
    store.close()
    with pytest.raises(StoreError):
        store.records()
    with sqlite3.connect(store.db_path) as conn:
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(StoreError):
        LabelStore.open(ds)
    with pytest.raises(StoreError):
        LabelStore(ds.root / "missing")


def files_under(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")}


@pytest.mark.parametrize("how", ["param", "env"])
def test_forced_user_data_fallback(ds, data_dir, monkeypatch, how):
    before = files_under(ds.root)
    if how == "env":
        monkeypatch.setenv("IMGREG_FORCE_USER_DATA", "1")
        store = LabelStore.open(ds)
    else:
        store = LabelStore.open(ds, force_user_data=True)
    with store:
        assert store.dir == user_data_dir_for(ds.root) and store.dir.parent == data_dir / "datasets"
        assert store.dir.name.endswith("-ds") and store.db_path.exists()
        store.correct("a.jpg", (5.0, 5.0))
    assert files_under(ds.root) == before  # nothing written next to the dataset
    assert user_data_dir_for(ds.root) == user_data_dir_for(ds.root / ".." / "ds")  # stable per resolved root
    with LabelStore.open(ds, force_user_data=True) as again:
        assert again.effective("a.jpg") == (5.0, 5.0)


@contextlib.contextmanager
def read_only(*folders: Path):
    """Make folders unwritable: chmod 0o555, or for root (whom modes do not stop) ``chattr +i``."""
    modes = [f.stat().st_mode for f in folders]
    for f in folders:
        f.chmod(0o555)
    immutable = False
    try:
        try:
            (folders[0] / "probe").touch()
            (folders[0] / "probe").unlink()
            immutable = (
                subprocess.run(["chattr", "+i", *map(str, folders)], capture_output=True).returncode == 0
            )
            if not immutable:
                pytest.skip("running as root without chattr: cannot make a folder read-only")
        except PermissionError:
            pass
        yield
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", *map(str, folders)], check=True)
        for f, mode in zip(folders, modes):
            f.chmod(stat.S_IMODE(mode))


def test_read_only_folder_falls_back(tmp_path, data_dir):
    ds = make_ds(tmp_path / "ro", {"a.jpg": (1.0, 2.0)})
    with read_only(ds.root):
        with LabelStore.open(ds) as store:
            assert store.dir == user_data_dir_for(ds.root)
            store.correct("a.jpg", (3.0, 4.0))
        assert not (ds.root / ".imgreg").exists()
        with LabelStore.open(ds) as again:
            assert again.effective("a.jpg") == (3.0, 4.0)
    with LabelStore.open(ds) as writable_again:  # the labels stay where they are
        assert writable_again.dir == user_data_dir_for(ds.root) and writable_again.effective("a.jpg") == (
            3.0,
            4.0,
        )


def test_read_only_folder_with_existing_store(tmp_path, data_dir):
    ds = make_ds(tmp_path / "ro", {"a.jpg": (1.0, 2.0)})
    with LabelStore.open(ds) as store:
        store.correct("a.jpg", (7.0, 7.0))
    before = files_under(ds.root)
    with read_only(ds.root, ds.root / ".imgreg"):  # e.g. a shared dataset someone else labelled
        with LabelStore.open(ds) as fallback:
            assert fallback.dir == user_data_dir_for(ds.root) and fallback.effective("a.jpg") == (7.0, 7.0)
            fallback.correct("a.jpg", (8.0, 8.0))
    assert files_under(ds.root) == before


def test_fallback_copies_existing_read_only_store(ds, data_dir):
    with LabelStore.open(ds) as store:
        store.correct("a.jpg", (7.0, 7.0))
    with LabelStore.open(ds, force_user_data=True) as fallback:  # e.g. the folder became read-only
        assert fallback.dir != ds.root / ".imgreg" and fallback.effective("a.jpg") == (7.0, 7.0)
        assert [h.kind for h in fallback.history("a.jpg")] == ["correct"]


def test_explicit_db_dir(tmp_path, ds):
    with LabelStore.open(ds, db_dir=tmp_path / "elsewhere") as store:
        assert store.dir == tmp_path / "elsewhere" and store.db_path.parent == store.dir
    assert not (ds.root / ".imgreg").exists()


def test_threads_read_and_write(store):
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        try:
            for i in range(30):
                store.put_predictions(f"run{k}", [PredictionRow(f"img{i}.jpg", (float(i), float(k)))])
                store.correct(f"t{k}.jpg", (float(i), 0.0))
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        store.effective_labels()
        store.counts()
    for t in threads:
        t.join()
    assert errors == []
    assert all(len(store.predictions(f"run{k}")) == 30 for k in range(3))
    assert all(
        len(store.history(f"t{k}.jpg")) == 30 and store.effective(f"t{k}.jpg") == (29.0, 0.0)
        for k in range(3)
    )
    assert integrity(store.db_path) == "ok"


def child(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(CHILD), *args], stdout=subprocess.PIPE, text=True, **kw)


def test_sigkill_right_after_edit_loses_nothing(ds, store):
    proc = child("edit_and_wait", str(ds.root), str(store.dir))
    try:
        assert proc.stdout.readline().strip() == "done"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    store.close()
    with LabelStore.open(ds) as again:
        assert again.effective("a.jpg") == (1.25, 2.5) and again.record("b.jpg").verified
        assert [h.kind for h in again.history("a.jpg")] == ["correct"]
    assert integrity(store.db_path) == "ok"


def test_sigkill_during_burst_of_edits(ds, store):
    proc = child("burst", str(ds.root), str(store.dir))
    last = -1
    try:
        for _ in range(120):
            last = int(proc.stdout.readline())
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    assert last == 119
    store.close()
    with LabelStore(ds.root) as again:
        for i in range(last - 49, last + 1):  # the newest edit of each of the 50 items survived
            assert again.effective(f"img{i % 50:03d}.jpg") >= (float(i), i + 0.5)
        total = sum(len(again.history(f"img{k:03d}.jpg")) for k in range(50))
        assert total >= last + 1
    assert integrity(store.db_path) == "ok"


def test_two_writer_processes(ds, tmp_path):
    go, db_dir = tmp_path / "go", tmp_path / "fresh"
    n = 200
    # Both create the store at once (the WAL switch races too), then edit 10 shared items.
    procs = [child("writer", str(ds.root), str(db_dir), tag, str(n), str(go)) for tag in ("1", "2")]
    go.touch()
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0] and [o.strip() for o in outs] == ["ok", "ok"]
    store = LabelStore.open(ds, db_dir=db_dir)
    assert integrity(store.db_path) == "ok"
    corrections = set()
    verifies = 0
    for k in range(10):
        hist = store.history(f"img{k:03d}.jpg")
        corrections |= {h.new for h in hist if h.kind == "correct"}
        verifies += sum(h.kind == "verify" for h in hist)
        assert store.effective(f"img{k:03d}.jpg") == next(
            h.new for h in reversed(hist) if h.kind == "correct"
        )
    assert corrections == {(float(tag), float(i)) for tag in (1, 2) for i in range(n)}
    assert verifies == 2 * len(range(0, n, 7))
    store.close()


def test_edit_waits_for_another_writer(store):
    other = sqlite3.connect(store.db_path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock for a moment
    timer = threading.Timer(0.3, other.execute, args=("COMMIT",))
    timer.start()
    try:
        store.correct("a.jpg", (2.0, 2.0))
    finally:
        timer.join()
        other.close()
    assert store.effective("a.jpg") == (2.0, 2.0)


def test_corrupt_database_is_moved_aside_not_an_error(ds, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / DB_NAME).write_bytes(b"this is not a database" * 100)
    with LabelStore.open(
        ds, db_dir=bad
    ) as store:  # recovery is in engine/labels/recovery.py (test_recovery.py)
        assert "damaged" in store.recovery_message and store.effective("a.jpg") == (1.0, 2.0)
    (aside,) = bad.glob(f"{DB_NAME}.damaged-*")
    assert aside.read_bytes() == b"this is not a database" * 100  # never deleted


finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
ops = st.lists(
    st.tuples(
        st.sampled_from(["correct", "accept", "revert", "verify", "unverify", "set_state", "sync"]),
        st.sampled_from(["a.jpg", "b.jpg", "new.jpg"]),
        st.tuples(finite, finite),
    ),
    max_size=25,
)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=ops)
def test_matches_a_simple_model(tmp_path, ops):
    """Random edit sequences leave the store in the state a plain dict model predicts."""
    with tempfile.TemporaryDirectory(dir=tmp_path) as tmp:
        ds = make_ds(Path(tmp), {"a.jpg": (1.0, 2.0), "b.jpg": None})
        # name -> [original, current, source, verified]
        model = {it.name: [it.label, None, "original", False] for it in ds.items}
        n_hist = 0
        with LabelStore.open(ds, db_dir=Path(tmp) / "db") as store:
            for op, name, lbl in ops:
                if op == "sync":  # the source file's original changed
                    if name in {it.name for it in ds.items}:
                        ds.item(name).label = lbl
                        n_hist += model[name][0] != lbl
                        model[name][0] = lbl
                        store.sync(ds.items)
                    continue
                m = model.setdefault(name, [None, None, "original", False])
                before = m[0] if m[2] == "original" else m[1]
                if op == "correct" or op == "accept":
                    store.correct(name, lbl, source="corrected" if op == "correct" else "prediction")
                    m[1], m[2] = lbl, "corrected" if op == "correct" else "prediction"
                    m[3] = m[3] and lbl == before  # a changed label is no longer verified
                elif op == "revert":
                    store.revert(name)
                    m[1], m[2] = None, "original"
                    m[3] = m[3] and m[0] == before
                elif op in ("verify", "unverify"):
                    store.set_verified(name, op == "verify")
                    m[3] = op == "verify"
                else:
                    store.set_state(name, lbl, "corrected", True)
                    m[1:] = [lbl, "corrected", True]
                n_hist += 1
            recs = store.records()
            assert {n: [r.original, r.current, r.source, r.verified] for n, r in recs.items()} == model
            eff = {n: (m[0] if m[2] == "original" else m[1]) for n, m in model.items()}
            assert store.effective_labels() == {n: e for n, e in eff.items() if e is not None}
            assert len(store.history()) == n_hist


def test_folder_without_write_bits_uses_user_data_even_as_root(tmp_path: Path) -> None:
    """A dataset folder marked read-only is never written to, even by a process that could (root)."""
    from engine.core import Dataset, Item

    root = tmp_path / "ro"
    root.mkdir()
    (root / "a.png").write_bytes(b"")
    ds = Dataset(root=root, format="folder", kind="point", items=[Item("a.png", ".", root / "a.png")])
    root.chmod(0o555)
    try:
        with LabelStore.open(ds) as store:
            store.correct("a.png", (1.0, 2.0))
            assert not (root / ".imgreg").exists()
            assert store.dir.is_relative_to(Path(os.environ["IMGREG_DATA_DIR"]))
    finally:
        root.chmod(0o755)


def test_a_reused_thread_ident_closes_the_dead_threads_connection(store) -> None:
    """Worker threads come and go and their idents are reused; the connection a dead thread left under the same
    ident is closed when the new one is made, so none stays open unseen (it would keep the WAL from being
    checkpointed at close)."""
    old = store._conn()
    store._local = threading.local()  # what a new thread with the same ident sees
    new = store._conn()
    assert new is not old
    with pytest.raises(sqlite3.ProgrammingError):
        old.execute("SELECT 1")
    assert new.execute("SELECT 1").fetchone() == (1,)
