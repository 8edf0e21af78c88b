"""The torch side: models, the fastai data pipeline, training, prediction and out-of-fold ranking."""
