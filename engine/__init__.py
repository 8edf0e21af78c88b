"""imgreg engine: the Qt-free core (datasets, label store, images, training, prediction, ranking, CLI)."""
