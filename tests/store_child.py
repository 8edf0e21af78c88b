"""Child process for the label store tests: makes edits, reports each one on stdout, then waits or exits."""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.labels.store import LabelStore  # noqa: E402


def burst(root: str, db_dir: str) -> None:
    """Correct items one after another forever, printing each edit's index once the call returned."""
    store = LabelStore(root, db_dir)
    i = 0
    while True:
        store.correct(f"img{i % 50:03d}.jpg", (float(i), i + 0.5))
        print(i, flush=True)
        i += 1


def edit_and_wait(root: str, db_dir: str) -> None:
    """Make a correction and a verify, report that they returned, then sleep until killed."""
    store = LabelStore(root, db_dir)
    store.correct("a.jpg", (1.25, 2.5))
    store.set_verified("b.jpg")
    print("done", flush=True)
    time.sleep(60)


def writer(root: str, db_dir: str, tag: str, n: str, go: str) -> None:
    """Wait for the ``go`` file, then make ``n`` edits on 10 shared items (label ``(tag, i)``)."""
    store = LabelStore(root, db_dir)
    while not Path(go).exists():
        time.sleep(0.005)
    for i in range(int(n)):
        name = f"img{i % 10:03d}.jpg"
        store.correct(name, (float(tag), float(i)))
        if i % 7 == 0:
            store.set_verified(name, i % 2 == 0)
        if i % 2:
            time.sleep(random.uniform(0, 0.002))  # pauses like a person's let the other writer in often
    store.close()
    print("ok", flush=True)


if __name__ == "__main__":
    {"burst": burst, "edit_and_wait": edit_and_wait, "writer": writer}[sys.argv[1]](*sys.argv[2:])
