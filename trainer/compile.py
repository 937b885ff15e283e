"""The one builder of loss, metrics and optimizer, shared by `fit` and the GradientTape loop
so the two loops cannot disagree about what they optimize or report."""

from __future__ import annotations

import keras


def build_loss() -> keras.losses.Loss:
    # Models end in a float32 softmax (models/blocks.py), so the loss takes probabilities.
    return keras.losses.SparseCategoricalCrossentropy(from_logits=False)


def build_metrics() -> list[keras.metrics.Metric]:
    return [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]


def build_optimizer(*, name: str, learning_rate: float) -> keras.optimizers.Optimizer:
    if name == "adam":
        return keras.optimizers.Adam(learning_rate=learning_rate)
    raise ValueError(f"optimizer.name must be one of adam. Received: optimizer.name={name}")
