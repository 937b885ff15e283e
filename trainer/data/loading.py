"""Load a TFDS image-classification dataset into train/validation/test tf.data pipelines."""

from __future__ import annotations

import dataclasses

import tensorflow as tf
import tensorflow_datasets as tfds


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
    split_sizes: dict
    version: str
    data_dir: str


def _splits(train_split: str, test_split: str, validation_fraction: float) -> list[str]:
    # Validation is carved off the end of the training split by TFDS slicing, so the
    # examples it holds are fixed by the split names alone.
    keep = round((1.0 - validation_fraction) * 100)
    return [f"{train_split}[:{keep}%]", f"{train_split}[{keep}%:]", test_split]


def _normalize(images, labels):
    return tf.cast(images, tf.float32) / 255.0, labels


def _pipeline(ds: tf.data.Dataset, batch_size: int, *, shuffle: bool, seed: int) -> tf.data.Dataset:
    # Raw uint8 examples are small, so cache them before shuffling; normalize after batching
    # (one vectorized op per batch instead of one per example), then prefetch.
    ds = ds.cache()
    if shuffle:
        ds = ds.shuffle(4096, seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size).map(_normalize, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def load(*, name: str, data_dir, train_split: str, test_split: str, validation_fraction: float,
         batch_size: int, seed: int) -> Dataset:
    builder = tfds.builder(name, data_dir=data_dir)
    builder.download_and_prepare()
    splits = _splits(train_split, test_split, validation_fraction)
    train, validation, test = builder.as_dataset(split=splits, as_supervised=True, shuffle_files=False)
    info = builder.info
    image = info.features["image"]
    label = info.features["label"]
    return Dataset(
        name=name,
        train=_pipeline(train, batch_size, shuffle=True, seed=seed),
        validation=_pipeline(validation, batch_size, shuffle=False, seed=seed),
        test=_pipeline(test, batch_size, shuffle=False, seed=seed),
        input_shape=tuple(image.shape),
        num_classes=label.num_classes,
        class_names=list(label.names),
        split_sizes={s: int(info.splits[s].num_examples) for s in splits},
        version=str(info.version),
        data_dir=str(builder.data_dir),
    )
