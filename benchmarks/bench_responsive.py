"""GUI responsiveness while a model trains: a 10 ms heartbeat timer's gaps from Start to the end of the run.

Opens the real main window (offscreen) on a generated Biwi-layout dataset, starts a small real training from the
Train panel (a child process), browses to the next item every 250 ms like a user would, and records how late the
heartbeat fires. Prints one JSON object as the last line: max_gap_ms, p99_gap_ms, p50_gap_ms, n_beats, run_s, ...

    python benchmarks/bench_responsive.py [--epochs 2] [--arch resnet18] [--size 96] [--fake]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from PySide6.QtCore import QElapsedTimer, QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from engine.data.synth import make_biwi  # noqa: E402
from imgreg_gui.training.options import TrainOptions  # noqa: E402

BEAT_MS = 10


def wait(app: QApplication, cond, timeout: float) -> bool:
    """Process events until ``cond()`` or the timeout."""
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout:
            return False
        app.processEvents()
        time.sleep(0.002)
    return True


def main() -> None:
    """Run the benchmark and print its JSON line."""
    p = argparse.ArgumentParser()
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--arch", default="resnet18")
    p.add_argument("--size", default="96x128")
    p.add_argument("--bs", type=int, default=8)
    p.add_argument("--frames", type=int, default=24)
    p.add_argument("--fake", action="store_true", help="a scripted child instead of real training")
    p.add_argument("--no-browse", action="store_true")
    p.add_argument(
        "--baseline-s", type=float, default=5.0, help="seconds of heartbeat before training starts"
    )
    p.add_argument(
        "--trace", action="store_true", help="print the largest gaps with the events just before them"
    )
    a = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-responsive-"))
    os.environ.setdefault("IMGREG_SETTINGS_DIR", str(tmp / "settings"))
    os.environ.setdefault("IMGREG_DATA_DIR", str(tmp / "data"))
    make_biwi(tmp / "biwi", groups=3, frames=a.frames, size=(160, 120))

    app = QApplication.instance() or QApplication(sys.argv)
    from imgreg_gui.main_window import MainWindow

    win = MainWindow()
    win.resize(1400, 900)
    win.show()
    win.open_dataset(tmp / "biwi")
    if not wait(app, lambda: win.dataset is not None and win.training.train.dataset_path, 60):
        raise SystemExit("the dataset did not open")
    ctl = win.training
    ctl.predict_after.setChecked(False)
    panel = ctl.train
    panel.form.set_options(
        TrainOptions(
            arch=a.arch,
            epochs=a.epochs,
            lr=2e-3,
            size=a.size,
            bs=a.bs,
            head="pooled",
            weights="scratch",
            device="cpu",
            valid_groups=["03"],
        )
    )
    if a.fake:
        fake = str(ROOT / "tests" / "fake_child.py")
        panel.make_command = lambda ds, opts, kind="point", lr_find=False: [
            sys.executable,
            fake,
            "train",
            "--epochs",
            "3",
            "--batches",
            "20",
            "--sleep",
            "0.05",
        ]
    wait(app, lambda: False, 0.5)

    gaps: list[float] = []
    clock = QElapsedTimer()
    last = [0.0]

    beat_times: list[float] = []

    busy: list[float] = []
    last_cpu = [time.thread_time()]

    def beat() -> None:
        now = clock.nsecsElapsed() / 1e6
        gaps.append(now - last[0])
        beat_times.append(now)
        last[0] = now
        # CPU time the GUI thread itself used within the gap: the rest of a long gap is the OS not running us.
        cpu = time.thread_time()
        busy.append((cpu - last_cpu[0]) * 1000)
        last_cpu[0] = cpu

    names = [it.name for it in win.dataset.items]
    pos = [0]

    def browse() -> None:
        pos[0] = (pos[0] + 1) % len(names)
        win.go_to_item(names[pos[0]])

    heart = QTimer()
    heart.setInterval(BEAT_MS)
    heart.timeout.connect(beat)
    browser = QTimer()
    browser.setInterval(250)
    browser.timeout.connect(browse)
    events: list[str] = []
    event_times: list[tuple[float, str]] = []

    def on_event(ev: dict) -> None:
        events.append(ev.get("type", ""))
        event_times.append((clock.nsecsElapsed() / 1e6, ev.get("type", "")))

    panel.child.event.connect(on_event)

    baseline: list[float] = []

    def begin() -> None:
        # The same heartbeat and browsing with nothing training: the machine's own noise, side by side.
        clock.start()
        heart.start()
        if not a.no_browse:
            browser.start()
        QTimer.singleShot(int(a.baseline_s * 1000), start_training)

    def start_training() -> None:
        nonlocal t0
        baseline.extend(gaps[1:])
        gaps.clear()
        beat_times.clear()
        busy.clear()
        last[0] = clock.nsecsElapsed() / 1e6
        t0 = time.perf_counter()
        if not panel.start():
            raise SystemExit("training did not start")

    # The real event loop (app.exec), as in the app; it quits when the child has ended (or after 30 min).
    panel.child.ended.connect(lambda _res: QTimer.singleShot(0, app.quit))
    QTimer.singleShot(1_800_000, app.quit)
    t0 = time.perf_counter()
    QTimer.singleShot(0, begin)
    app.exec()
    ok = panel.last_result is not None
    run_s = time.perf_counter() - t0
    heart.stop()
    browser.stop()
    res = panel.last_result
    # A gap is the time between beats; what exceeds the 10 ms interval is the GUI thread being busy or starved.
    g = np.asarray(gaps or [0.0])
    b = np.asarray(baseline or [0.0])
    out = {
        "benchmark": "responsive",
        "status": res.status if res else "timeout",
        "fake_child": a.fake,
        "arch": a.arch,
        "epochs": a.epochs,
        "size": a.size,
        "n_items": len(names),
        "browsing": not a.no_browse,
        "batch_events": events.count("batch"),
        "beat_ms": BEAT_MS,
        "n_beats": int(g.size),
        "max_gap_ms": round(float(g.max()), 2),
        "p99_gap_ms": round(float(np.percentile(g, 99)), 2),
        "p50_gap_ms": round(float(np.percentile(g, 50)), 2),
        "gaps_over_100ms": int((g > 100).sum()),
        "max_busy_ms": round(max(busy or [0.0]), 2),
        "p99_busy_ms": round(float(np.percentile(busy or [0.0], 99)), 2),
        "run_s": round(run_s, 2),
        "baseline_s": a.baseline_s,
        "baseline_max_gap_ms": round(float(b.max()), 2),
        "baseline_p99_gap_ms": round(float(np.percentile(b, 99)), 2),
        "p99_ratio_vs_baseline": round(float(np.percentile(g, 99) / max(np.percentile(b, 99), 1e-9)), 2),
        "ok": bool(ok and res is not None and res.ok),
    }
    if a.trace:
        top_busy = list(np.argsort(np.asarray(busy))[::-1][:4])
        for i in list(np.argsort(g)[::-1][:6]) + top_busy:
            end = beat_times[i]
            near = [f"{t - end:+.0f}:{k}" for t, k in event_times if end - g[i] - 30 <= t <= end]
            print(
                f"gap {g[i]:.1f} ms (GUI busy {busy[i]:.1f} ms) ending at {end:.0f} ms; events {near}",
                file=sys.stderr,
            )
    if res is not None and not res.ok:
        out["message"] = res.message[-300:]
    ctl.shutdown()
    win.close()
    win.deleteLater()
    wait(app, lambda: False, 0.2)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
