"""imgreg engine: the Qt-free core (datasets, label store, images, training, prediction, ranking, CLI)."""

import warnings

# fastai's layers.py calls torch.jit.script at import; torch >= 2.10 warns about it on stderr, which the CLI must not show.
warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)
