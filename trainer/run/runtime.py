"""Process-wide settings a run makes before it builds anything: seeds, op determinism, dtype policy.

Set on every run (not only when asked for) because Hydra's basic launcher runs all jobs of a
sweep in one process, and a previous job's setting must not leak into the next.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from tensorflow.python.framework import config as tf_config  # disable_op_determinism has no public alias


def probe_devices() -> None:
    """Make TensorFlow look for its devices now (trainer/run/console.py keeps the start-up lines
    this prints, such as a failed CUDA probe on a machine without a GPU, off the console)."""
    tf.config.list_physical_devices()


def reseed(seed: int) -> None:
    """Seed Python, NumPy, TensorFlow and Keras together. `train` calls it again right before it
    builds the model: preparing a dataset the first time draws Python random numbers (TFDS), which
    would otherwise give the first run of a process other initial weights than the next run."""
    keras.utils.set_random_seed(seed)


def configure(*, seed: int, deterministic: bool, precision: str) -> None:
    reseed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()
    else:
        tf_config.disable_op_determinism()
    keras.mixed_precision.set_global_policy(precision)
