"""Datasets through tensorflow-datasets or image folders: sources, splits, metadata, the tf.data
pipeline, one-time preparation and the MLflow dataset input.

Loaded lazily so `trainer.config.validate` can use the TensorFlow-free folder checks in
`trainer.data.folders` without paying for a TensorFlow import.
"""

from __future__ import annotations

__all__ = ["Dataset", "load", "log_input", "run_tags"]


def __getattr__(name: str):
    if name in ("Dataset", "load"):
        from trainer.data import loading

        return getattr(loading, name)
    if name in ("log_input", "run_tags"):
        from trainer.data import inputs

        return getattr(inputs, name)
    raise AttributeError(f"module 'trainer.data' has no attribute '{name}'")
