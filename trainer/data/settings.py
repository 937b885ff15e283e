"""Checks of the `data` config section that need no TensorFlow (run by trainer.config.validate
before TensorFlow loads): value ranges, and an image folder's layout."""

from __future__ import annotations

import os

from omegaconf import ListConfig

from trainer.config import checks
from trainer.config.choices import SOURCES
from trainer.data import folders


def _optional_text(key: str, value) -> None:
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise checks.fail(key, "a non-empty string or null", value)


def _image_size(value) -> None:
    size = list(value) if isinstance(value, (ListConfig, list, tuple)) else value
    if size is not None and not (isinstance(size, list) and len(size) == 2
                                 and all(checks.is_int(v) and v >= 1 for v in size)):
        raise checks.fail("data.image_size", "null or [height, width] with integers >= 1", value)


def _pipeline(data) -> None:
    _image_size(data.image_size)
    if not (data.cache == "auto" or isinstance(data.cache, bool)):
        raise checks.fail("data.cache", "one of auto, true, false", data.cache)
    checks.int_at_least("data.shuffle_buffer", data.shuffle_buffer, 1)
    checks.boolean("data.augment.flip", data.augment.flip)
    checks.int_at_least("data.augment.crop", data.augment.crop, 0)
    checks.number_in("data.augment.translate", data.augment.translate, 0.0, 1.0)


def check(data) -> None:
    checks.one_of("data.source", data.source, SOURCES)
    checks.number_in("data.validation_fraction", data.validation_fraction, 0.0, 1.0, low_open=True)
    checks.number_in("data.test_fraction", data.test_fraction, 0.0, 1.0, low_open=True)
    _pipeline(data)
    if data.source == "tfds":
        if not isinstance(data.name, str) or not data.name.strip():
            raise checks.fail("data.name", "a TFDS dataset name (data=tfds data.name=mnist)", data.name)
        checks.boolean("data.download", data.download)
        _optional_text("data.data_dir", data.data_dir)
        # TFDS prepares a dataset into data_dir; one already prepared there is only read.
        problem = data.data_dir and checks.folder_problem(os.path.expanduser(data.data_dir), write=False)
        if problem:
            raise checks.fail("data.data_dir", f"null or a folder ({problem})", data.data_dir)
        if not isinstance(data.train_split, str) or not data.train_split.strip():
            raise checks.fail("data.train_split", "a split name such as train", data.train_split)
        _optional_text("data.validation_split", data.validation_split)
        _optional_text("data.test_split", data.test_split)
        return
    _optional_text("data.name", data.name)
    if data.validation_fraction + data.test_fraction >= 1.0:
        raise checks.fail("data.validation_fraction + data.test_fraction", "< 1 so training images remain",
                          data.validation_fraction + data.test_fraction)
    checks.int_at_least("data.split_seed", data.split_seed, 0)
    if data.channels is not None and not (checks.is_int(data.channels) and data.channels in (1, 3)):
        raise checks.fail("data.channels", "1, 3 or null", data.channels)
    if not isinstance(data.path, (str, type(None))):
        raise checks.fail("data.path", "a folder with one sub-folder of images per class", data.path)
    try:
        folders.class_files(data.path)
    except OSError as err:  # a folder this user may not list
        raise checks.fail("data.path", f"a folder this user can read ({err.filename}: {err.strerror})",
                          data.path) from None
