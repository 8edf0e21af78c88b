"""A stand-in for ``imgreg export RUN --out FILE --json``: writes FILE and prints the summary line, or fails."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main() -> int:
    """``fake_export.py RUN --out FILE [--fail]``."""
    run, out = sys.argv[1], Path(sys.argv[sys.argv.index("--out") + 1])
    if "--fail" in sys.argv:
        print(
            json.dumps({"type": "failed", "message": "this run's head cannot be exported as ONNX"}),
            flush=True,
        )
        return 2
    out.write_bytes(b"onnx")
    print(json.dumps({"type": "summary", "run_id": Path(run).name, "onnx": str(out)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
