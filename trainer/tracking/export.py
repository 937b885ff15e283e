"""Log a trained model to MLflow as a LoggedModel anyone can load with `mlflow.pyfunc.load_model`,
and render `model.summary()` for the run's artifacts.

The logged model holds the Keras `.keras` file (`artifacts/model.keras`), the code that serves
it (trainer/tracking/pyfunc_model.py, "models from code", so nothing is pickled and Keras keeps safe
mode), the modules that define any of its non-Keras classes (`code/`), a tensor signature, a
raw-pixel input example and pinned requirements. Its `predict` takes raw uint8 pixels;
`mlflow.keras.load_model` also works on it and returns the Keras model.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import sys
import tempfile
from pathlib import Path

import keras
import mlflow
import numpy as np

# The rescale the training pipeline (trainer/data/pipeline.py) applies (x / 255); the served model
# applies the same to raw pixels. tests/test_saving.py holds the two equal.
INPUT_SCALE = 1.0 / 255.0

# Pinned rather than inferred: MLflow's requirement inference would load and probe the model.
_REQUIREMENTS = ("tensorflow", "keras", "mlflow", "numpy")


def summary_text(model: keras.Model) -> str:
    lines: list[str] = []
    model.summary(print_fn=lambda line, *args, **kwargs: lines.append(line), line_length=100)
    return "\n".join(lines) + "\n"


def raw_pixels(batch) -> np.ndarray:
    """A batch as the model sees it (x / 255, float32) -> the uint8 pixels it was made from."""
    return np.clip(np.rint(np.asarray(batch) / INPUT_SCALE), 0, 255).astype(np.uint8)


def model_modules(model: keras.Model) -> list[str]:
    """Modules that define the model's non-Keras classes (a subclassed model, custom layers):
    the served model imports them so safe mode can rebuild those classes."""
    objects = [model, *model._flatten_layers(include_self=False)]
    found = {type(obj).__module__ for obj in objects}
    return sorted(m for m in found if m.split(".")[0] != "keras")


def _code_path(module: str) -> str:
    # The whole top-level package is shipped, so the module's own relative imports resolve.
    top = sys.modules[module.split(".")[0]]
    if getattr(top, "__file__", None) is None:  # a namespace package
        return os.path.abspath(list(top.__path__)[0])
    path = Path(top.__file__)
    return str(path.parent if path.name == "__init__.py" else path)


class _PyfuncAndKeras:
    """A flavor for `Model.log`: mlflow.pyfunc's model, plus a `keras` flavor that points at the
    same `.keras` file, so `mlflow.keras.load_model(uri)` returns the Keras model too (the
    layout mlflow.keras 3.17 reads: `data` is the file's path without `.keras`)."""

    __name__ = "mlflow.pyfunc"

    @staticmethod
    def save_model(path, mlflow_model, validate_serving_input=True, **kwargs):  # Model.log's option, not pyfunc's
        mlflow.pyfunc.save_model(path=path, mlflow_model=mlflow_model, **kwargs)
        mlflow_model.add_flavor("keras", data="artifacts/model", keras_version=keras.__version__,
                                keras_backend=keras.backend.backend(), save_exported_model=False)
        mlflow_model.save(os.path.join(path, "MLmodel"))


def log_model(run, model: keras.Model, example_batch, *, name: str = "model", tags: dict | None = None,
              step: int = 0) -> str:
    """Log `model` to `run` (an MLflow Run, as the tracker's client read it) as its LoggedModel
    `name` ("model": the trained model; "best": callbacks.checkpoint's best epoch) with `tags`;
    MLflow links the run's metrics at `step` to it. Returns the model URI. The LoggedModel takes
    the run's params, masked as logged.

    `example_batch` is a few inputs as the model sees them (rescaled); the input example and
    signature are the raw pixels they came from, because that is what `predict` takes.
    """
    raw = raw_pixels(example_batch)
    probabilities = keras.ops.convert_to_numpy(model(raw * np.float32(INPUT_SCALE), training=False))
    modules = model_modules(model)
    run_id = run.info.run_id
    # Created up front so the model lands in the run's experiment: without an active fluent run,
    # MLflow would file it under the Default experiment. (Entering `mlflow.start_run` instead
    # would mark the run FINISHED on leaving, before training has really ended.)
    logged = mlflow.initialize_logged_model(name=name, source_run_id=run_id, params=run.data.params, tags=tags,
                                            experiment_id=run.info.experiment_id)
    with tempfile.TemporaryDirectory() as tmp:
        keras_file = os.path.join(tmp, "model.keras")
        model.save(keras_file)
        serving_file = os.path.join(tmp, "serving.json")
        with open(serving_file, "w") as f:
            json.dump({"modules": modules, "input_scale": INPUT_SCALE}, f)
        mlflow.models.Model.log(
            artifact_path=None,
            name=name,
            flavor=_PyfuncAndKeras,
            run_id=run_id,
            model_id=logged.model_id,
            step=step,
            python_model=str(Path(__file__).with_name("pyfunc_model.py")),
            artifacts={"keras_model": keras_file, "serving": serving_file},
            code_paths=sorted({_code_path(m) for m in modules}) or None,
            signature=mlflow.models.infer_signature(raw, probabilities),
            input_example=raw,
            pip_requirements=[f"{p}=={importlib.metadata.version(p)}" for p in _REQUIREMENTS],
            # MLflow would load the model it just saved and predict the input example, only to log a
            # warning if that failed: the probabilities above came from this very model, and
            # tests/test_saving.py serves logged models through mlflow.pyfunc.
            validate_serving_input=False,
        )
    return f"models:/{logged.model_id}"
