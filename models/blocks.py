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


def batch_norm(name: str | None = None):
    return keras.layers.BatchNormalization(name=name)


def activation(name_of_fn: str, name: str | None = None):
    return keras.layers.Activation(name_of_fn, name=name)


def max_pool(name: str | None = None):
    # "same" padding halves 8x8 -> 4x4 -> 2x2 -> 1x1 and then stays at 1x1, so any depth is valid.
    return keras.layers.MaxPooling2D(pool_size=2, padding="same", name=name)


def global_pool(name: str = "global_pool"):
    return keras.layers.GlobalAveragePooling2D(name=name)


def conv_stage(filters: int, activation_: str, l2: float, name: str) -> list:
    """Two 3x3 convolutions and a 2x2 max-pool: one resolution stage of a plain CNN."""
    return [
        conv(filters, activation_, l2, name=f"{name}_conv_a"),
        conv(filters, activation_, l2, name=f"{name}_conv_b"),
        max_pool(name=f"{name}_pool"),
    ]


def residual_block(filters: int, *, strides: int, project: bool, activation_: str, l2: float, name: str) -> dict:
    """The layers of a basic residual block (two 3x3 conv-BN, a shortcut, an add).

    `project` adds a 1x1 conv-BN on the shortcut, needed when the block changes resolution
    (strides 2) or width. models/resnet.py applies it.
    """
    block = {
        "conv_a": conv(filters, None, l2, strides=strides, name=f"{name}_conv_a"),
        "bn_a": batch_norm(name=f"{name}_bn_a"),
        "act_a": activation(activation_, name=f"{name}_act_a"),
        "conv_b": conv(filters, None, l2, name=f"{name}_conv_b"),
        "bn_b": batch_norm(name=f"{name}_bn_b"),
        "add": keras.layers.Add(name=f"{name}_add"),
        "act_out": activation(activation_, name=f"{name}_act_out"),
    }
    if project:
        block["shortcut_conv"] = conv(filters, None, l2, strides=strides, kernel_size=1, name=f"{name}_shortcut_conv")
        block["shortcut_bn"] = batch_norm(name=f"{name}_shortcut_bn")
    return block

