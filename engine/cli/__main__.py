"""``python -m engine.cli`` (torchrun's ranks of ``imgreg train --nproc`` get their arguments in IMGREG_DDP_ARGV)."""

import json
import os
import sys

from engine.cli import main

ranked = len(sys.argv) == 1 and "IMGREG_DDP_ARGV" in os.environ
sys.exit(main(json.loads(os.environ["IMGREG_DDP_ARGV"]) if ranked else None))
