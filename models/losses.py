"""The loss a registry model trains with, and that a saved `.keras` file is compiled with.

Keras's `SparseCategoricalCrossentropy` takes integer labels but has no `label_smoothing`;
`CategoricalCrossentropy` has it but wants one-hot labels, which would change the data every
loop, metric and user-facing `evaluate(x, y)` sees. So smoothing gets its own small loss on
integer labels, registered with Keras as `trainer>SmoothedSparseCategoricalCrossentropy` so a
saved model's compile config loads again once `models.net` is imported (as every loader here
does). Without smoothing the plain Keras loss is used, and the file needs nothing of this project.
"""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="trainer")
class SmoothedSparseCategoricalCrossentropy(keras.losses.Loss):
    """Cross-entropy of probabilities against integer labels whose one-hot targets are smoothed:
    the true class gets `1 - label_smoothing + label_smoothing / classes`, every other class
    `label_smoothing / classes` (Szegedy et al., 2016), exactly as `CategoricalCrossentropy`
    smooths one-hot labels."""

    def __init__(self, label_smoothing: float, name="smoothed_sparse_categorical_crossentropy",
                 reduction="sum_over_batch_size", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.label_smoothing = float(label_smoothing)

    def call(self, y_true, y_pred):
        classes = keras.ops.shape(y_pred)[-1]
        labels = keras.ops.cast(keras.ops.reshape(y_true, keras.ops.shape(y_pred)[:-1]), "int32")
        one_hot = keras.ops.one_hot(labels, classes, dtype=y_pred.dtype)
        return keras.losses.categorical_crossentropy(one_hot, y_pred, label_smoothing=self.label_smoothing)

    def get_config(self):
        return {**super().get_config(), "label_smoothing": self.label_smoothing}


def build(label_smoothing: float = 0.0) -> keras.losses.Loss:
    # Models end in a float32 softmax (models/blocks.py), so the loss takes probabilities.
    if label_smoothing:
        return SmoothedSparseCategoricalCrossentropy(label_smoothing)
    return keras.losses.SparseCategoricalCrossentropy(from_logits=False)
