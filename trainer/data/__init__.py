"""Datasets through tensorflow-datasets: loading, splits, metadata and the tf.data pipeline."""

from trainer.data import digits  # noqa: F401  (registers the offline `digits` TFDS builder)
from trainer.data.loading import Dataset, load

__all__ = ["Dataset", "load"]
