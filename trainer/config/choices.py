"""Every set of choices a config key offers, declared once. The validator (trainer/config/validate.py and
the checks it calls, before TensorFlow loads) accepts exactly these, and the builders build from
them, so a choice cannot exist in one and be missing from the other. Plain Python on purpose."""

from __future__ import annotations

LOOPS = ("fit", "custom")  # loop.name: the module trainer/loops/<name>.py
# optimizer.name -> the keras.optimizers class it builds (trainer/loops/compile.py)
OPTIMIZERS = {"adam": "Adam", "adamw": "AdamW", "sgd": "SGD", "rmsprop": "RMSprop"}
SCHEDULES = ("constant", "cosine", "exponential", "reduce_on_plateau")  # schedule.name (trainer/loops/compile.py)
STRATEGIES = ("default", "mirrored", "multi_worker")  # strategy.name (trainer/run/distribute.py)
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")  # precision: a Keras dtype policy
# callbacks.progress -> the `verbose` Keras's fit and its progress bar take
PROGRESS = {"bar": 1, "epoch": 2, "none": 0}
# data.source -> the module whose open_source(...) reads it (trainer/data/loading.py)
SOURCES = {"tfds": "trainer.data.tfds_source", "image_folder": "trainer.data.image_folder"}
VARIANTS = ("functional", "subclassed")  # model.variant (models/registry.py)
# export formats (`python -m trainer.export format=`, `export.formats=`) -> the format Keras's
# model.export writes (trainer/use/export.py), and the packages each needs beyond TensorFlow:
# the `export` extra of pyproject.toml (tests/test_export.py holds the two equal).
EXPORT_FORMATS = {"saved_model": "tf_saved_model", "onnx": "onnx", "litert": "litert"}
EXPORT_PACKAGES = {"saved_model": (), "onnx": ("tf2onnx", "onnx", "onnxruntime"), "litert": ()}
# activation knobs: names keras.activations.get accepts (tests/test_config.py keeps the list honest)
ACTIVATIONS = (
    "relu", "gelu", "silu", "swish", "tanh", "sigmoid", "elu", "selu", "leaky_relu", "relu6",
    "softplus", "softsign", "mish", "hard_sigmoid", "hard_silu", "linear",
)
