"""The trained model `run=` names, found in the MLflow store and loaded as Keras: the one loader of
`python -m trainer.predict`, `trainer.evaluate` and `trainer.export`.

Interface (stable; predict, evaluate and export use nothing else of this module):

    reference.parse(run) -> Reference          trainer/use/reference.py; no MLflow, no TensorFlow:
                                               for the config checks (a missing file is refused here)
    locate(run, tracking_uri) -> Located       MLflow only, no TensorFlow: the run / LoggedModel /
                                               registered version / file, its class names and a
                                               local path to its .keras file. Unknown run id or
                                               URI, a run without a model, a store that does not
                                               exist: ConfigError (one line, exit 2)
    load(located, *, class_names=None, compile=False) -> Trained      imports Keras (TensorFlow)
    open_trained(run, tracking_uri, **load_options) -> Trained        locate, then load

`run` is one of: a run id (the run's LoggedModel named "model", which every tracked training run
logs: trainer/tracking/export.py), `models:/<model id>`, `models:/<name>/<version>`,
`models:/<name>@<alias>` (a registered model version), or a path to a `.keras` file.

Class names come from the training run's tag `dataset.class_names` (written by
trainer/data/inputs.py `run_tags`); a bare `.keras` file has none, so its classes are named by
their indices ("0", "1", ...) unless `class_names=` is given. `compile=False` is enough to
predict; `compile=True` restores the loss and metrics the model was trained with (evaluate).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import mlflow
import numpy as np
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from trainer.config.checks import shorten
from trainer.errors import ConfigError
from trainer.tracking.store import prepare_store, with_lock_retries
from trainer.use.reference import Reference, parse

# The LoggedModel every tracked training run logs (trainer/tracking/export.py `log_model`), and
# where its Keras file sits inside it.
MODEL_NAME = "model"
KERAS_PATH = "artifacts/model.keras"
# The training run's tag naming its classes in index order (trainer/data/inputs.py `run_tags`).
CLASS_NAMES_TAG = "dataset.class_names"


@dataclass(frozen=True)
class Located:
    """A trained model found, not yet loaded (no TensorFlow so far)."""
    reference: Reference
    keras_file: str                    # a local path to the .keras file
    class_names: tuple | None          # None: unknown (a bare .keras file)
    tracking_uri: str | None           # the store it was found in; None for a bare file
    run_id: str | None = None          # the training run (the LoggedModel's source run)
    model_id: str | None = None        # the LoggedModel's id (m-...)
    model_uri: str | None = None       # models:/<model id>, or the file's absolute path
    experiment_id: str | None = None   # the training run's experiment (the LoggedModel's)


@dataclass(frozen=True)
class Trained:
    """A trained model loaded as Keras, with what the commands need to know about it."""
    model: object                      # keras.Model
    class_names: tuple                 # one name per output, in index order
    input_shape: tuple                 # (height, width, channels) the model takes
    located: Located

    @property
    def run_id(self):
        return self.located.run_id

    @property
    def model_id(self):
        return self.located.model_id

    @property
    def model_uri(self):
        return self.located.model_uri

    @property
    def tracking_uri(self):
        return self.located.tracking_uri

    @property
    def experiment_id(self):
        return self.located.experiment_id


def open_trained(run, tracking_uri: str | None, **load_options) -> Trained:
    """`locate` then `load`: what `run=` names, as a Keras model."""
    return load(locate(run, tracking_uri), **load_options)


def locate(run, tracking_uri: str | None) -> Located:
    """Find what `run` names (a string or a parsed Reference) without importing TensorFlow."""
    ref = run if isinstance(run, Reference) else parse(run)
    if ref.file is not None:
        return Located(ref, keras_file=ref.file, class_names=None, tracking_uri=None, model_uri=ref.file)
    client = _client(tracking_uri, ref)
    if ref.run_id is not None:
        logged = _run_model(client, ref)
    elif ref.model_id is not None:
        logged = _logged_model(client, ref.model_id, ref)
    else:
        logged = _logged_model(client, _registered_model_id(client, ref), ref)
    run_id = logged.source_run_id
    return Located(ref, keras_file=_keras_file(logged, tracking_uri, ref), class_names=_class_names(client, run_id),
                   tracking_uri=tracking_uri, run_id=run_id, model_id=logged.model_id,
                   model_uri=f"models:/{logged.model_id}", experiment_id=logged.experiment_id)


def load(located: Located, *, class_names=None, compile: bool = False) -> Trained:
    """Load the located model as Keras (every registry model registered first, so a subclassed
    model and the smoothed loss of its compile config load in safe mode)."""
    # The TensorFlow boundary of the "use" commands: locating stays free of it.
    from models import saving

    try:
        model = saving.load(located.keras_file, compile=compile)
    except ConfigError:
        raise
    except Exception as err:  # noqa: BLE001 (Keras raises many types for a file it cannot read)
        raise ConfigError(f"run must name a Keras model this process can load; {shorten(located.keras_file)} could not"
                          f" be loaded ({type(err).__name__}: {shorten(str(err).splitlines()[0] if str(err) else '')})."
                          f" Received: run={shorten(located.reference.text)}") from None
    input_shape = tuple(int(d) for d in _input_shape(model))
    outputs = _outputs(model, input_shape)
    names = _chosen_class_names(class_names, located, outputs)
    return Trained(model=model, class_names=names, input_shape=input_shape, located=located)


# --- finding it in the store ----------------------------------------------------------------------

def _client(tracking_uri: str | None, ref: Reference) -> MlflowClient:
    if not tracking_uri:
        raise ConfigError(f"tracking.uri must name the MLflow store that holds {shorten(ref.text)}."
                          f" Received: tracking.uri={tracking_uri}")
    if tracking_uri.startswith("sqlite:///"):
        path = tracking_uri[len("sqlite:///"):]
        # Opening a missing SQLite store would create an empty one: a typo would leave a file behind.
        if not os.path.isfile(path):
            raise ConfigError(f"run={shorten(ref.text)} cannot be found: tracking.uri names no MLflow store ({path}"
                              " does not exist; train a run first, or set tracking.uri to the store that holds it)."
                              f" Received: tracking.uri={tracking_uri}")
    prepare_store(tracking_uri)  # a server that is down or refuses the credentials: one line
    return MlflowClient(tracking_uri)


def _missing(err: MlflowException) -> bool:
    return err.error_code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND", "INVALID_PARAMETER_VALUE")


def _run_model(client: MlflowClient, ref: Reference):
    try:
        run = with_lock_retries(client.get_run, ref.run_id)
    except MlflowException as err:
        if not _missing(err):
            raise
        raise ConfigError(f"run must be a run of the tracking store {client.tracking_uri}; it has no run {ref.run_id}"
                          f" (`mlflow ui` lists them, or use models:/<model id>). Received: run={ref.text}") from None
    found = with_lock_retries(client.search_logged_models, experiment_ids=[run.info.experiment_id],
                              filter_string=f"source_run_id='{ref.run_id}' AND name='{MODEL_NAME}'")
    if not found:
        raise ConfigError(f"run {ref.run_id} has no logged model '{MODEL_NAME}' (the run is {run.info.status}; a run logs"
                          " it when training ends with tracking enabled). Received: run=" + ref.text)
    # A resumed run logs its model once; if a run ever held two, the newest is the trained one.
    return max(found, key=lambda m: m.creation_timestamp)


def _logged_model(client: MlflowClient, model_id: str, ref: Reference):
    try:
        return with_lock_retries(client.get_logged_model, model_id)
    except MlflowException as err:
        if not _missing(err):
            raise
        raise ConfigError(f"run must name a model of the tracking store {client.tracking_uri}; it has no model"
                          f" {model_id}. Received: run={ref.text}") from None


def _registered_model_id(client: MlflowClient, ref: Reference) -> str:
    try:
        if ref.version is not None:
            version = with_lock_retries(client.get_model_version, ref.name, ref.version)
        else:
            version = with_lock_retries(client.get_model_version_by_alias, ref.name, ref.alias)
    except MlflowException as err:
        if not _missing(err):
            raise
        which = f"version {ref.version}" if ref.version is not None else f"alias {ref.alias}"
        raise ConfigError(f"run must name a registered model version of the tracking store {client.tracking_uri};"
                          f" it has no {ref.name} {which}. Received: run={ref.text}") from None
    if version.model_id:
        return version.model_id
    # Registered from `models:/<model id>` (trainer/tracking/tracker.py): the store keeps that URI
    # as the version's source, and not always its model_id.
    source_id = parse(version.source).model_id if str(version.source).startswith("models:/m-") else None
    if source_id is None:
        raise ConfigError(f"run names {ref.name} version {version.version}, which is not linked to a logged model"
                          f" (registered from {shorten(version.source)}); use its models:/<model id> or .keras file."
                          f" Received: run={ref.text}")
    return source_id


def _keras_file(logged, tracking_uri: str, ref: Reference) -> str:
    """A local path to the LoggedModel's .keras file (the file itself on a local store)."""
    uri = f"{logged.artifact_location.rstrip('/')}/{KERAS_PATH}"
    try:
        return mlflow.artifacts.download_artifacts(artifact_uri=uri, tracking_uri=tracking_uri)
    except (MlflowException, OSError) as err:
        raise ConfigError(f"run must name a model trained by trainer (a LoggedModel holding {KERAS_PATH}); model"
                          f" {logged.model_id} has none ({type(err).__name__}: {shorten(str(err).splitlines()[0])})."
                          f" Received: run={ref.text}") from None


def _class_names(client: MlflowClient, run_id: str | None) -> tuple | None:
    if not run_id:
        return None
    try:
        tag = with_lock_retries(client.get_run, run_id).data.tags.get(CLASS_NAMES_TAG)
    except MlflowException as err:
        if not _missing(err):
            raise
        return None  # the training run was deleted: the model still predicts, by class index
    return tuple(json.loads(tag)) if tag else None


# --- what the loaded model says about itself --------------------------------------------------------

def _input_shape(model) -> tuple:
    if getattr(model, "inputs", None):  # functional
        return tuple(model.input_shape)[1:]
    # A subclassed registry model keeps the shape it was built on in its config (models/net.py).
    shape = model.get_config().get("input_shape") or (model.get_build_config() or {}).get("input_shape")
    if shape is None:
        raise ConfigError(f"run must name a model whose input shape is known; {type(model).__name__} does not say"
                          " it (a subclassed model built by calling it). Received: model class=" + type(model).__name__)
    return tuple(shape)[1:] if len(shape) == 4 else tuple(shape)


def _outputs(model, input_shape) -> int:
    """How many classes: one prediction of a blank image (a subclassed model has no output_shape)."""
    return int(np.shape(model(np.zeros((1, *input_shape), "float32"), training=False))[-1])


def _chosen_class_names(class_names, located: Located, outputs: int) -> tuple:
    if class_names is not None:
        names = tuple(str(n) for n in class_names)
        if len(names) != outputs:
            raise ConfigError(f"class_names must list one name per class of the model ({outputs}); it lists"
                              f" {len(names)}. Received: class_names=[{shorten(', '.join(names))}]")
        return names
    if located.class_names is not None and len(located.class_names) == outputs:
        return tuple(located.class_names)
    return tuple(str(i) for i in range(outputs))
