"""The app model: state, label editing, undo commands and the item model (no QtWidgets)."""
