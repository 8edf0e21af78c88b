"""The label store: SQLite labels with history (the only writer of labels), where it lives, label export."""
