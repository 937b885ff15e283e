"""MLflow tracking with our own code (MLflow's autolog only patches `fit`, and not Keras 3.15).

A `Tracker` owns one MLflow run from creation to its final status; `EpochLogger` is a Keras
callback, so both loops log the same metrics the same way.
"""

from __future__ import annotations

import contextlib
import os
import traceback

import keras
import mlflow
from mlflow.entities import Metric, Param, RunStatus
from mlflow.tracking import MlflowClient

# MLflow 3 stores param values up to 6000 characters; longer values are cut predictably and
# the full config is always in the `config.yaml` artifact.
PARAM_VALUE_LIMIT = 6000
_BATCH = 100  # MLflow's limit on params per log_batch call


def flatten(tree: dict, prefix: str = "") -> dict[str, object]:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists stay whole values."""
    out: dict[str, object] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out


def _param_value(value) -> str:
    text = str(value)
    if len(text) > PARAM_VALUE_LIMIT:
        marker = "...(truncated; see config.yaml)"
        text = text[: PARAM_VALUE_LIMIT - len(marker)] + marker
    return text


@contextlib.contextmanager
def _model_dir_exists_before_example():
    # mlflow.keras.save_model writes the input example before it creates the model folder
    # (mlflow 3.17), so logging a model with an input example fails with FileNotFoundError.
    # Create the folder first; remove this once mlflow.keras creates it itself.
    import mlflow.keras.save as keras_save

    original = keras_save._save_example

    def save_example(mlflow_model, input_example, path, *args, **kwargs):
        os.makedirs(path, exist_ok=True)
        return original(mlflow_model, input_example, path, *args, **kwargs)

    keras_save._save_example = save_example
    try:
        yield
    finally:
        keras_save._save_example = original


class EpochLogger(keras.callbacks.Callback):
    """Logs every epoch's train and validation metrics in one batched call."""

    def __init__(self, tracker: "Tracker"):
        super().__init__()
        self.tracker = tracker

    def on_epoch_end(self, epoch, logs=None):
        self.tracker.log_metrics({k: float(v) for k, v in (logs or {}).items()}, step=epoch)


class Tracker:
    def __init__(self, *, uri: str, artifact_location: str | None, experiment: str):
        self.uri = uri
        self.artifact_location = artifact_location
        self.experiment = experiment
        self.client = MlflowClient(tracking_uri=uri)
        self.run_id: str | None = None

    def _experiment_id(self) -> str:
        found = self.client.get_experiment_by_name(self.experiment)
        if found is not None:
            return found.experiment_id
        location = None
        if self.artifact_location:
            os.makedirs(self.artifact_location, exist_ok=True)
            location = "file://" + os.path.abspath(self.artifact_location)
        try:
            return self.client.create_experiment(self.experiment, artifact_location=location)
        except mlflow.exceptions.MlflowException:
            # Another job of the same sweep created it first.
            return self.client.get_experiment_by_name(self.experiment).experiment_id

    def start(self, *, params: dict, tags: dict, run_name: str | None = None) -> str:
        mlflow.set_tracking_uri(self.uri)
        run = self.client.create_run(self._experiment_id(), tags=tags, run_name=run_name)
        self.run_id = run.info.run_id
        items = [Param(k, _param_value(v)) for k, v in flatten(params).items()]
        for i in range(0, len(items), _BATCH):
            self.client.log_batch(self.run_id, params=items[i : i + _BATCH])
        return self.run_id

    def log_metrics(self, metrics: dict, step: int = 0) -> None:
        import time

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, v, now, step) for k, v in metrics.items()])

    def log_text(self, text: str, artifact_file: str) -> None:
        self.client.log_text(self.run_id, text, artifact_file)

    def log_model(self, model, input_example) -> None:
        # Pinned requirements: MLflow's own inference would import and probe the model (slow).
        import importlib.metadata as md

        reqs = [f"{p}=={md.version(p)}" for p in ("tensorflow", "keras", "mlflow")]
        probabilities = model(input_example, training=False)
        signature = mlflow.models.infer_signature(input_example, keras.ops.convert_to_numpy(probabilities))
        with mlflow.start_run(run_id=self.run_id), _model_dir_exists_before_example():
            mlflow.keras.log_model(
                model, name="model", input_example=input_example, signature=signature, pip_requirements=reqs
            )

    def end(self, status: str, error: BaseException | None = None) -> None:
        if self.run_id is None:
            return
        if error is not None:
            tb = "".join(traceback.format_exception(type(error), error, error.__traceback__))
            try:
                self.log_text(tb, "traceback.txt")
            except Exception:  # the status matters more than the traceback artifact
                pass
        self.client.set_terminated(self.run_id, status=status)
        if mlflow.active_run() is not None:
            mlflow.end_run(status=status)

    def ui_command(self) -> str:
        return f"mlflow ui --backend-store-uri {self.uri} --host 127.0.0.1 --port 5000"


FINISHED = RunStatus.to_string(RunStatus.FINISHED)
FAILED = RunStatus.to_string(RunStatus.FAILED)
KILLED = RunStatus.to_string(RunStatus.KILLED)
