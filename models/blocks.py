"""Small layer factories shared by every registry model, so both variants use identical layers."""

from __future__ import annotations

import keras


def _regularizer(l2: float):
    # None rather than L2(0.0): a zero regularizer would still add a term to model.losses.
    return keras.regularizers.L2(l2) if l2 else None


def dense(units: int, activation: str, l2: float = 0.0, name: str | None = None):
    return keras.layers.Dense(units, activation=activation, kernel_regularizer=_regularizer(l2), name=name)


def classifier(num_classes: int, l2: float = 0.0):
    # float32 output keeps softmax numerically safe under a mixed-precision policy.
    return keras.layers.Dense(
        num_classes,
        activation="softmax",
        kernel_regularizer=_regularizer(l2),
        dtype="float32",
        name="classifier",
    )


def flatten():
    return keras.layers.Flatten(name="flatten")


def dropout(rate: float, name: str | None = None):
    return keras.layers.Dropout(rate, name=name)


def conv(filters: int, activation: str | None, l2: float = 0.0, strides: int = 1, kernel_size: int = 3, name=None):
    return keras.layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding="same",
        activation=activation,
        use_bias=activation is not None,
        kernel_regularizer=_regularizer(l2),
        name=name,
    )
