"""Training loops. Each module's `run(model, data, ...)` takes a built model, the data, the
optimizer and the callbacks, and returns (history, test metrics): `fit` (Keras Model.fit) and
`custom` (a tf.GradientTape step), interchangeable through `loop.name`."""

from __future__ import annotations

import importlib


def get(name: str):
    """The loop module for `loop.name` (validated in trainer/config/training.py)."""
    return importlib.import_module(f"trainer.loops.{name}")
