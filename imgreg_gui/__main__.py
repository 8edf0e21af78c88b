"""``python -m imgreg_gui``: same as the ``imgreg-gui`` command."""

import sys

from imgreg_gui.app import main

sys.exit(main())
