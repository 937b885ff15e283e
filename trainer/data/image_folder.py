"""`data=image_folder data.path=DIR`: your own images, one sub-folder per class, split per class
into train/validation/test by fractions with a fixed seed."""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import tensorflow as tf
from PIL import Image

from trainer.data import folders, resize
from trainer.data.source import SPLITS, Source
from trainer.errors import ConfigError

_GRAY_MODES = {"1", "L", "LA", "I", "I;16", "F"}


def _inspect(file: str, path) -> tuple[tuple[int, int], str]:
    """(height, width) and PIL mode of one file; a file that does not decode is named."""
    try:
        with Image.open(file) as img:
            size, mode = (img.height, img.width), img.mode
            img.verify()  # reads the whole file and checks its structure (e.g. PNG chunk CRCs)
        return size, mode
    except Exception as err:  # PIL raises many types (UnidentifiedImageError, SyntaxError, OSError...)
        raise ConfigError(f"data.path must hold readable images; {file} is corrupt or not an image"
                          f" ({type(err).__name__}: {err}). Received: data.path={path}") from err


def _shape(inspected: dict, image_size, channels, path) -> tuple:
    sizes = {size for size, _ in inspected.values()}
    if image_size is None:
        if len(sizes) > 1:
            examples = {}
            for file, (size, _) in inspected.items():
                examples.setdefault(size, file)
            shown = ", ".join(f"{os.path.basename(f)} {h}x{w}" for (h, w), f in list(examples.items())[:2])
            raise ConfigError(f"data.image_size must be set ([height, width]) because the images in {path} differ"
                              f" in size ({shown}). Received: data.image_size=null")
        image_size = next(iter(sizes))
    if channels is None:
        channels = 1 if all(mode in _GRAY_MODES for _, mode in inspected.values()) else 3
    return (int(image_size[0]), int(image_size[1]), int(channels))


def _split(files_by_class: dict, *, validation_fraction, test_fraction, split_seed) -> dict:
    """{split: [(path, label)]}: every class is split in the same proportions (stratified)."""
    rng = np.random.default_rng(split_seed)
    chosen = {split: [] for split in SPLITS}
    for label, files in enumerate(files_by_class.values()):
        order = rng.permutation(len(files))
        n_test = int(round(len(files) * test_fraction))
        n_validation = int(round(len(files) * validation_fraction))
        parts = {"test": order[:n_test], "validation": order[n_test:n_test + n_validation],
                 "train": order[n_test + n_validation:]}
        for split, idx in parts.items():
            chosen[split].extend((files[i], label) for i in sorted(idx))
    for split, key in (("train", "data.validation_fraction"), ("validation", "data.validation_fraction"),
                       ("test", "data.test_fraction")):
        if not chosen[split]:
            raise ConfigError(f"{key} leaves the {split} split empty for {sum(map(len, files_by_class.values()))}"
                              f" images; add images or change the fractions. Received: data.validation_fraction="
                              f"{validation_fraction}, data.test_fraction={test_fraction}")
    return chosen


def _decoder(input_shape: tuple, needs_resize: bool):
    def decode(file, label):
        pixels = tf.io.decode_image(tf.io.read_file(file), channels=input_shape[2], expand_animations=False)
        if needs_resize:
            pixels = resize.image(pixels, input_shape)
        return tf.ensure_shape(pixels, input_shape), label

    return decode


def _digest(path: str, files_by_class: dict, settings: dict) -> str:
    # Names, sizes and modification times of every file: changes when any image does, without
    # reading pixels again.
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for files in files_by_class.values():
        for file in files:
            stat = os.stat(file)
            digest.update(f"{os.path.relpath(file, path)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:10]


def open_source(*, path, name, validation_fraction: float, test_fraction: float, split_seed: int,
                image_size, channels) -> Source:
    files_by_class = folders.class_files(path)
    root = os.path.abspath(os.path.expanduser(str(path)))
    inspected = {f: _inspect(f, path) for files in files_by_class.values() for f in files}
    input_shape = _shape(inspected, image_size, channels, root)
    needs_resize = any(size != input_shape[:2] for size, _ in inspected.values())
    chosen = _split(files_by_class, validation_fraction=validation_fraction, test_fraction=test_fraction,
                    split_seed=split_seed)

    examples = {}
    for split in SPLITS:
        paths, labels = zip(*chosen[split])
        ds = tf.data.Dataset.from_tensor_slices((list(paths), np.array(labels, dtype=np.int64)))
        examples[split] = ds.map(_decoder(input_shape, needs_resize), num_parallel_calls=tf.data.AUTOTUNE)
    settings = {"validation_fraction": validation_fraction, "test_fraction": test_fraction,
                "split_seed": split_seed, "input_shape": list(input_shape)}
    return Source(
        name=name or os.path.basename(root.rstrip(os.sep)), kind="image_folder", location=root, version="",
        examples=examples,
        split_specs={s: f"{len(chosen[s])} images, stratified by class, split_seed={split_seed}" for s in SPLITS},
        split_sizes={s: len(chosen[s]) for s in SPLITS}, input_shape=input_shape,
        num_classes=len(files_by_class), class_names=list(files_by_class),
        digest=_digest(root, files_by_class, settings),
    )
