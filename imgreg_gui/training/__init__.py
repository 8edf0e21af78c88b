"""Training UI: the Train panel, live curves, the runs list and the review queue.

Importing this package loads nothing; ``controller.TrainingController`` builds the docks over the app state.
Only the window (the composition root) imports this package; child processes live in ``imgreg_gui.jobs``.
"""
