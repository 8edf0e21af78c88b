"""Dataset formats, detected automatically."""
