"""Training UI: the Train panel, live curves, the child-process supervisor, the runs list and the review queue.

Importing this package loads nothing (the child launcher lives here too); ``controller.TrainingController``
builds the docks over the app state.
"""
