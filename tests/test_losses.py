"""The label-smoothing loss on integer labels is Keras's smoothed categorical cross-entropy of the
one-hot labels, and without smoothing the builder gives Keras's own sparse loss."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from models import losses


def _probabilities(rng, shape):
    logits = rng.normal(size=shape).astype("float32")
    return keras.ops.convert_to_numpy(keras.ops.softmax(logits))


@pytest.mark.parametrize("smoothing", [0.05, 0.1, 0.3])
def test_smoothed_sparse_loss_equals_keras_smoothing_of_one_hot_labels(smoothing):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, size=64)
    probabilities = _probabilities(rng, (64, 10))
    ours = losses.build(smoothing)(labels, probabilities)
    keras_one_hot = keras.losses.CategoricalCrossentropy(label_smoothing=smoothing)(
        keras.ops.one_hot(labels, 10), probabilities)
    assert float(ours) == pytest.approx(float(keras_one_hot), rel=1e-6)
    # Smoothing is a real change of the target: the same predictions score differently without it.
    plain = keras.losses.SparseCategoricalCrossentropy()(labels, probabilities)
    assert abs(float(ours) - float(plain)) > 1e-3


def test_labels_as_a_column_give_the_same_loss():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 10, size=16)
    probabilities = _probabilities(rng, (16, 10))
    loss = losses.build(0.1)
    assert float(loss(labels[:, None], probabilities)) == pytest.approx(float(loss(labels, probabilities)), rel=1e-6)


def test_no_smoothing_is_keras_own_sparse_loss():
    # A model trained without smoothing saves a compile config plain Keras loads.
    assert type(losses.build(0.0)) is keras.losses.SparseCategoricalCrossentropy
    assert type(losses.build(0.1)) is losses.SmoothedSparseCategoricalCrossentropy


def test_the_loss_round_trips_through_keras_serialization():
    loss = losses.build(0.2)
    back = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert type(back) is losses.SmoothedSparseCategoricalCrossentropy and back.label_smoothing == 0.2
