"""Entry point of ``imgreg-gui [DATASET] [--demo] [--item NAME] [--screenshot FILE] [--size WxH] [--heatmap] [--explore]``."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from imgreg_gui import settings
from imgreg_gui.platform_check import missing_xcb, xcb_message
from imgreg_gui.settings import icon, stylesheet


def build_parser() -> argparse.ArgumentParser:
    """The command-line options."""
    p = argparse.ArgumentParser(
        prog="imgreg-gui", description="Review, correct and train image-regression labels."
    )
    p.add_argument("dataset", nargs="?", help="dataset folder (or label CSV) to open")
    p.add_argument(
        "--demo", action="store_true", help="open the built-in demo dataset (created on first use)"
    )
    p.add_argument("--item", help="item to show first (its path relative to the dataset root)")
    p.add_argument("--screenshot", metavar="FILE", help="render the window to a PNG once loaded, then exit")
    p.add_argument("--size", metavar="WxH", help="window size, e.g. 1280x800")
    p.add_argument(
        "--heatmap", action="store_true", help="show the active run's heatmap (View ▸ Show heatmap) at start"
    )
    p.add_argument(
        "--explore",
        action="store_true",
        help="once loaded, find items similar to the current one and show the embedding map (screenshots)",
    )
    p.add_argument("--timeout", type=float, default=60.0, help="seconds --screenshot waits for loading")
    return p


def parse_size(text: str) -> tuple[int, int]:
    """``'1280x800'`` -> (1280, 800)."""
    w, _, h = text.lower().partition("x")
    try:
        size = int(w), int(h)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--size wants WxH like 1280x800, not {text!r}") from None
    if min(size) < 200:
        raise argparse.ArgumentTypeError("--size: width and height must be at least 200")
    return size


def make_app(argv: list[str] | None = None) -> QApplication:
    """The QApplication with the app's names, icon and style (reused when one exists)."""
    inst = QApplication.instance()
    app = inst if isinstance(inst, QApplication) else QApplication(argv or [sys.argv[0]])
    app.setOrganizationName(settings.ORG)
    app.setApplicationName(settings.APP)
    app.setApplicationDisplayName("imgreg")
    app.setWindowIcon(icon("app"))
    app.setStyle("Fusion")
    app.setStyleSheet(stylesheet())
    return app


def is_loaded(win) -> bool:
    """Whether the dataset is open and the current item's image (or its placeholder) is on screen."""
    if win._worker is not None:
        return False
    if win.dataset is None:
        if win.root is None:  # nothing was asked for: the empty window is what there is to see
            return True
        return win.canvas.problem is not None and win.canvas.problem[0].startswith("Cannot")
    name = win.current_item_name()
    audit = getattr(win, "audit", None)
    if audit is not None and audit.running:  # the review queue fills when the audit is done
        return False
    explore = getattr(win, "explore", None)
    if explore is not None and explore.wait_in_screenshots and not explore.idle():
        return False
    return name is None or (win.canvas.name == name and not win.canvas.pending)


def take_screenshot(win, path: str | Path, timeout: float) -> int:
    """Wait (up to ``timeout`` s) until loaded, let layouts settle, save ``win.grab()`` as PNG; 0 when ready."""
    app = QApplication.instance()
    if app is None:
        raise RuntimeError("take_screenshot needs a running QApplication")
    deadline = time.monotonic() + timeout
    while not is_loaded(win) and time.monotonic() < deadline:
        app.processEvents()
        time.sleep(0.01)
    ready = is_loaded(win)
    end = time.monotonic() + 0.3
    while time.monotonic() < end:
        app.processEvents()
        time.sleep(0.01)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    ok = win.grab().save(str(path), "PNG")
    if not ok:
        print(f"imgreg-gui: could not write {path}", file=sys.stderr)
        return 1
    if not ready:
        print(
            f"imgreg-gui: not loaded after {timeout:.0f} s; saved what was shown to {path}", file=sys.stderr
        )
        return 2
    print(f"imgreg-gui: screenshot saved to {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the GUI (or take a screenshot with ``--screenshot``); returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        size = parse_size(args.size) if args.size else None
    except argparse.ArgumentTypeError as e:
        print(f"imgreg-gui: {e}", file=sys.stderr)
        return 2
    missing = missing_xcb()
    if missing:
        print(xcb_message(missing), file=sys.stderr)
        return 2
    app = make_app([sys.argv[0]])
    from imgreg_gui.main_window import MainWindow

    win = MainWindow()
    if args.screenshot:
        win.persist = False  # a scripted run must not overwrite the user's window layout or recent list
        win.training.heat.persist = False
    if size:
        win.resize(*size)
    heat = win.acts.all.get("show_heatmap")
    if args.heatmap and heat is not None:
        heat.setChecked(True)
    dataset = args.dataset
    if args.demo:
        from imgreg_gui.demo import ensure_demo

        dataset = str(ensure_demo())
    win.show()
    if args.explore:
        win.explore.wait_in_screenshots = True

        def explore() -> None:
            win.explore.show_map()
            win.explore.find_similar()

        win.dataset_opened.connect(explore)
    if dataset:
        win.open_dataset(dataset, item=args.item)
    if args.screenshot:
        code = take_screenshot(win, args.screenshot, args.timeout)
        win.close()
        return code
    QTimer.singleShot(0, win.canvas.setFocus)
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
