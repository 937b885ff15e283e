"""`data=tfds data.name=...` (and digits, mnist, fashion_mnist, cifar10): any TFDS image
classification dataset, prepared once into the data dir and read with real `tfds` calls."""

from __future__ import annotations

import difflib
import hashlib
import json
import os

import tensorflow_datasets as tfds

from trainer.data import digits  # noqa: F401  (registers the offline `digits` builder)
from trainer.data import prepare, resize, splits
from trainer.data.source import SPLITS, Source
from trainer.errors import ConfigError


def known_names() -> list[str]:
    return sorted(set(tfds.list_builders(with_community_datasets=False)) | {"digits"})


def _check_known(name: str) -> None:
    base = name.split(":")[0].split("/")[0]
    known = known_names()
    if base in known:
        return
    close = difflib.get_close_matches(base, known, n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise ConfigError(f"data.name must be a TFDS dataset name ({hint}`python -c \"import tensorflow_datasets as"
                      f" tfds; print(tfds.list_builders())\"` lists all {len(known)}). Received: data.name={name}")


def _builder(name: str, data_dir):
    try:
        return tfds.builder(name, data_dir=data_dir)
    except (tfds.core.registered.DatasetNotFoundError, AssertionError, ValueError) as err:
        # An unknown config (imagenette/nope) or version (mnist:9.9.9): TFDS's first line names what exists.
        first = str(err).strip().splitlines()[0]
        raise ConfigError(f"data.name must name an existing TFDS dataset, config and version ({first})."
                          f" Received: data.name={name}") from err


def _features(builder, name: str):
    """The (image, label) features, or a one-line reason this is not image classification."""
    info = builder.info
    keys = info.supervised_keys
    if isinstance(keys, tuple) and len(keys) == 2 and all(isinstance(k, str) for k in keys):
        image, label = info.features[keys[0]], info.features[keys[1]]
        if isinstance(image, tfds.features.Image) and isinstance(label, tfds.features.ClassLabel):
            return image, label
    raise ConfigError(f"data.name must be an image classification dataset (supervised keys: an Image and a"
                      f" ClassLabel); {name} has supervised keys {keys}. Received: data.name={name}")


def _input_shape(image, image_size, name: str) -> tuple:
    height, width, channels = image.shape
    if channels is None:
        raise ConfigError(f"data.name must have images with a fixed channel count; {name} has {image.shape}."
                          f" Received: data.name={name}")
    if image_size is not None:
        return (*image_size, channels)
    if height is None or width is None:
        raise ConfigError(f"data.image_size must be set ([height, width]) because {name}'s images vary in size"
                          f" (shape {image.shape}). Received: data.image_size=null")
    return (height, width, channels)


def _digest(builder, specs: dict, sizes: dict) -> str:
    # dataset_info.json holds the version, the features and every split's shard lengths and
    # checksums as TFDS wrote them when it prepared the data: a fingerprint without reading examples.
    info_file = os.path.join(builder.data_dir, "dataset_info.json")
    if os.path.exists(info_file):
        with open(info_file, "rb") as f:
            metadata = f.read()
    else:
        metadata = json.dumps(builder.info.as_json).encode()
    digest = hashlib.sha256(metadata)
    digest.update(json.dumps([specs, sizes], sort_keys=True).encode())
    return digest.hexdigest()[:10]


def open_source(*, name: str, data_dir, download: bool, train_split: str, validation_split, test_split,
                validation_fraction: float, test_fraction: float, image_size) -> Source:
    _check_known(name)
    data_dir = os.path.expanduser(data_dir) if data_dir else None
    builder = _builder(name, data_dir)
    image, label = _features(builder, name)  # before preparing: the code's metadata says enough
    input_shape = _input_shape(image, image_size, name)
    builder = prepare.prepared_builder(lambda: _builder(name, data_dir), name=name, download=download)

    specs = splits.resolve(
        train_split=train_split, validation_split=validation_split, test_split=test_split,
        validation_fraction=validation_fraction, test_fraction=test_fraction,
        available=set(builder.info.splits.keys()),
    )
    datasets = builder.as_dataset(split=[specs[s] for s in SPLITS], as_supervised=True, shuffle_files=False)
    examples, sizes = {}, {}
    for split, ds in zip(SPLITS, datasets):
        sizes[split] = int(ds.cardinality())
        if sizes[split] < 0:  # cardinality unknown to tf.data: TFDS's split metadata knows it
            sizes[split] = int(builder.info.splits[specs[split]].num_examples)
        if sizes[split] == 0:
            raise ConfigError(f"data.{split}_split must select at least one example; {specs[split]} of {name}"
                              f" is empty. Received: data.{split}_split={specs[split]}")
        examples[split] = resize.to_shape(ds, input_shape, native=tuple(image.shape))

    return Source(
        name=name, kind="tfds", location=str(builder.data_dir_root), version=str(builder.info.version),
        examples=examples, split_specs=specs, split_sizes=sizes, input_shape=input_shape,
        num_classes=label.num_classes, class_names=list(label.names), digest=_digest(builder, specs, sizes),
    )

