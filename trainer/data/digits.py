"""A TFDS builder for scikit-learn's digits: 1,797 real 8x8 handwritten digits, no network needed.

Importing this module registers it, after which `tfds.load("digits")` prepares it once into the
TFDS data dir like any other dataset.
"""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

# Fixed split: a seeded permutation, stratified so both splits hold every class in proportion.
_SPLIT_SEED = 0
_TEST_FRACTION = 0.2


def _split_indices(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(_SPLIT_SEED)
    train, test = [], []
    for label in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == label))
        n_test = int(round(len(idx) * _TEST_FRACTION))
        test.extend(idx[:n_test])
        train.extend(idx[n_test:])
    return np.sort(np.array(train)), np.sort(np.array(test))


class Digits(tfds.core.GeneratorBasedBuilder):
    """scikit-learn's copy of the UCI optical recognition of handwritten digits test set."""

    VERSION = tfds.core.Version("1.0.0")
    OFFLINE = True  # generated from scikit-learn's bundled copy: preparing it needs no network
    RELEASE_NOTES = {"1.0.0": "Stratified 80/20 train/test split with a fixed seed."}

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description="8x8 grayscale handwritten digits (0-16 ink levels rescaled to 0-255).",
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(8, 8, 1)),
                    "label": tfds.features.ClassLabel(names=[str(i) for i in range(10)]),
                }
            ),
            supervised_keys=("image", "label"),
            homepage="https://scikit-learn.org/stable/datasets/toy_dataset.html#digits-dataset",
        )

    def _split_generators(self, dl_manager):
        from sklearn.datasets import load_digits  # the images ship inside scikit-learn

        digits = load_digits()
        # 0..16 ink levels -> 0..255 so the image feature stores ordinary uint8 pixels.
        images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
        labels = digits.target.astype(np.int64)
        train, test = _split_indices(labels)
        return {
            "train": self._generate_examples(images, labels, train),
            "test": self._generate_examples(images, labels, test),
        }

    def _generate_examples(self, images, labels, indices):
        for i in indices:
            yield int(i), {"image": images[i], "label": int(labels[i])}
