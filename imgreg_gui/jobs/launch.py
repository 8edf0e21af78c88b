"""Child-process launcher: ``python -m imgreg_gui.jobs.launch MODULE ARGS...`` runs MODULE at lower priority.

The GUI starts training and prediction through this so the window keeps its share of the CPU; it imports nothing
from Qt (the package ``__init__`` is kept import-free for this reason).
"""

from __future__ import annotations

import contextlib
import os
import runpy
import sys

NICE = 5


def main(argv: list[str]) -> None:
    """Lower this process's priority a little, then run ``argv[0]`` as ``__main__`` with the rest as its args."""
    if not argv:
        raise SystemExit("usage: python -m imgreg_gui.jobs.launch MODULE [ARGS...]")
    if hasattr(os, "nice"):
        with contextlib.suppress(OSError):
            os.nice(NICE)
    module, args = argv[0], argv[1:]
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
