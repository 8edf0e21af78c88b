"""Training UI: the Train panel, live curves, the child-process supervisor, the runs list and the review queue.

Importing this package loads nothing (the child launcher lives here too); ``install(window)`` builds the docks.
"""

from __future__ import annotations

from typing import Any


def install(window: Any) -> Any:
    """Add the training docks and menus to the main window; returns the controller that owns them."""
    from imgreg_gui.training.controller import TrainingController

    return TrainingController(window)
