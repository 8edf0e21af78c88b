"""Child process of the hostile-input property test: runs ``imgreg`` commands in one interpreter, one JSON line each.

argv[1] is a JSON list of argument lists. Each line: ``{"rc", "out", "err", "traceback"}``; an exception that
escapes ``main`` is a traceback (the CLI must turn every failure into a listed problem or one line).
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.cli import main  # noqa: E402


def run(argv: list[str]) -> dict:
    """One command's exit code, output and escaped traceback (None when there was none)."""
    out, err = io.StringIO(), io.StringIO()
    tb = None
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(argv)
        except SystemExit as e:  # argparse's usage errors
            rc = e.code if isinstance(e.code, int) else 2
        except BaseException:  # noqa: BLE001
            rc, tb = -1, traceback.format_exc()
    return {"rc": rc, "out": out.getvalue(), "err": err.getvalue(), "traceback": tb}


if __name__ == "__main__":
    for argv in json.loads(sys.argv[1]):
        print(json.dumps(run(argv)), flush=True)
