"""`load(...)`: a dataset source (TFDS or an image folder) turned into train/validation/test
batches plus everything the model and the tracker need to know about them."""

from __future__ import annotations

import dataclasses
import importlib

import tensorflow as tf

from trainer.config.choices import SOURCES
from trainer.data import pipeline
from trainer.data.source import SPLITS, Source
from trainer.errors import ConfigError


@dataclasses.dataclass
class Dataset:
    """The three pipelines plus what the model and the tracker need to know about them."""

    name: str
    train: tf.data.Dataset
    validation: tf.data.Dataset
    test: tf.data.Dataset
    input_shape: tuple
    num_classes: int
    class_names: list
    split_sizes: dict         # {"train": n, "validation": n, "test": n}
    split_specs: dict         # how each split was chosen, e.g. {"train": "train[:90%]", ...}
    version: str
    data_dir: str             # the TFDS data dir the dataset is prepared in, or the image folder
    source: str               # "tfds" | "image_folder"
    digest: str
    source_data: Source = dataclasses.field(repr=False)
    pipeline_settings: dict = dataclasses.field(repr=False)

    def batched(self, split: str, batch_size: int, *, drop_remainder: bool = False) -> tf.data.Dataset:
        """The same pipeline at another batch size (e.g. a global batch for a distribution strategy)."""
        return pipeline.batches(
            self.source_data.examples[split], batch_size=batch_size, training=split == "train",
            size=self.split_sizes[split], drop_remainder=drop_remainder, **self.pipeline_settings,
        )

    def examples(self, split: str) -> tf.data.Dataset:
        """Unbatched, undecorated (uint8 image, int64 label) examples of one split."""
        return self.source_data.examples[split]


def _open(source: str, args: dict) -> Source:
    if source not in SOURCES:
        raise ConfigError(f"data.source must be one of {', '.join(SOURCES)}. Received: data.source={source}")
    # Imported by name: a run reads one source, and TFDS costs seconds to import.
    return importlib.import_module(SOURCES[source]).open_source(**args)


def load(*, source: str, batch_size: int, seed: int, cache, shuffle_buffer: int, augment: dict,
         **source_args) -> Dataset:
    """Keyword arguments are the `data` config section plus the run's batch size and seed."""
    opened = _open(source, source_args)
    settings = {
        "seed": seed,
        "cache": pipeline.should_cache(cache, examples=sum(opened.split_sizes.values()),
                                       input_shape=opened.input_shape),
        "shuffle_buffer": shuffle_buffer,
        "augment": dict(augment),
    }
    dataset = Dataset(
        name=opened.name, train=None, validation=None, test=None, input_shape=tuple(opened.input_shape),
        num_classes=opened.num_classes, class_names=list(opened.class_names), split_sizes=dict(opened.split_sizes),
        split_specs=dict(opened.split_specs), version=opened.version, data_dir=opened.location,
        source=opened.kind, digest=opened.digest, source_data=opened, pipeline_settings=settings,
    )
    for split in SPLITS:
        setattr(dataset, split, dataset.batched(split, batch_size))
    return dataset
