"""The built-in demo dataset: a small synthetic Biwi-layout set, created once in the per-user data folder."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from engine.labels.store import user_data_root

DONE_MARK = ".imgreg-demo-complete"


def demo_root() -> Path:
    """Where the demo lives: ``<user data>/demo`` (``$IMGREG_DATA_DIR/demo`` when that is set)."""
    return user_data_root() / "demo"


def ensure_demo(root: Path | None = None) -> Path:
    """Create the demo dataset unless it already exists; returns its folder.

    Four people x ten 320x240 frames with faces, two of them with planted wrong centres (to find and fix).
    It is written to a temporary folder first and renamed, so an interrupted run never leaves half a demo.
    """
    from engine.data.synth import make_biwi

    root = Path(root) if root is not None else demo_root()
    if (root / DONE_MARK).is_file():
        return root
    tmp = root.with_name(f"{root.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    synth = make_biwi(tmp, groups=4, frames=10, size=(320, 240), ext="png", seed=7, corrupt=2, distractors=4)
    (tmp / DONE_MARK).write_text(
        "imgreg demo dataset (synthetic). Items with planted wrong labels:\n"
        + "\n".join(sorted(synth.corrupted))
        + "\n",
        encoding="utf-8",
    )
    if root.exists():  # an old, incomplete demo
        shutil.rmtree(root, ignore_errors=True)
    root.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, root)
    return root
