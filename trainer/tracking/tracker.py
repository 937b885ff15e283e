"""The MLflow run of a training run: `Tracker` owns it from creation to its final status, and the
`EpochLogger` and `StepLogger` callbacks log both loops' metrics the same way."""

from __future__ import annotations

import concurrent.futures
import hashlib
import logging
import math
import os
import time
import traceback

# MLflow draws a progress bar for every artifact download (the model's own input-example check
# downloads two); in a training log they are noise. A user's explicit setting still wins.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

import keras  # noqa: E402
import mlflow  # noqa: E402
from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.tracking import MlflowClient

from trainer.tracking import secrets, stale
from trainer.tracking.review import how_to_review, ui_command
from trainer.tracking.store import experiment_id, with_lock_retries
from trainer.tracking.system_metrics import PREFIX as SYSTEM_PREFIX, SystemMetrics

# MLflow 3 limits: param values 6000 characters, tag values 8000, keys 250. Longer values are
# cut predictably (the full config is always in the `config.yaml` artifact); long keys keep
# their start and get a hash of the whole key, so two long keys never collide.
PARAM_VALUE_LIMIT = 6000
TAG_VALUE_LIMIT = 8000
KEY_LIMIT = 250
_BATCH = 100  # MLflow's limit on params per log_batch call
_METRICS_PER_BATCH = 1000  # and on metrics
# A store write is one SQLite transaction: once per epoch of a tiny model it is a visible share
# of training (benchmarks/, "tracking"). Metrics therefore leave at most every 2 s, in one
# batch; an epoch longer than that is still sent the moment it ends.
SEND_INTERVAL_S = 2.0
_TRUNCATED = "...(truncated; see config.yaml)"


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


def _text(value) -> str:
    # Written the way the command line writes them (`enabled=false`, `data_dir=null`), so a
    # param can be pasted back as an override; numbers stay plain numbers (0.001, 64).
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_text(v) for v in value) + "]"
    return str(value)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - len(_TRUNCATED)] + _TRUNCATED


def _key(key: str) -> str:
    if len(key) <= KEY_LIMIT:
        return key
    digest = hashlib.sha1(key.encode()).hexdigest()[:10]
    return key[: KEY_LIMIT - 11] + "~" + digest


def _param_value(value) -> str:
    return _cut(_text(value), PARAM_VALUE_LIMIT)


def param_items(params: dict) -> dict[str, str]:
    """The flattened config as MLflow params: dotted keys, plain values, within MLflow's limits."""
    return {_key(k): _param_value(v) for k, v in flatten(params).items()}


class EpochLogger(keras.callbacks.Callback):
    """Logs every epoch's train and validation metrics, its duration and its examples/second
    (buffered and sent in the background: Tracker.log_metrics)."""

    def __init__(self, tracker: "Tracker", *, examples_per_epoch: int | None = None):
        super().__init__()
        self.tracker = tracker
        self.examples_per_epoch = examples_per_epoch
        self._started = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self._started
        metrics = {k: float(v) for k, v in (logs or {}).items()}
        metrics["epoch_time_s"] = seconds
        if self.examples_per_epoch:
            metrics["examples_per_second"] = self.examples_per_epoch / seconds
        self.tracker.log_metrics(metrics, step=epoch)
        to_log_file(f"epoch {epoch + 1}: " + "  ".join(f"{k}={v:.4g}" for k, v in metrics.items()))


def to_log_file(message: str) -> None:
    """Write a line to the run's log file (Hydra's `trainer.log`) but not the console, which
    already shows Keras's own progress line for the epoch."""
    record = logging.LogRecord("trainer", logging.INFO, __file__, 0, message, None, None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


class StepLogger(keras.callbacks.Callback):
    """`tracking.log_every_n_steps=N`: the running train metrics every N optimizer steps, as
    `step/<name>` at the global step (per-epoch metrics keep the epoch as their step).

    The global step is counted from the epoch and the batch index Keras passes (the last step of
    a `steps_per_execution` block), not from calls: a resumed run starts at a later epoch, and a
    block of k steps is one call."""

    def __init__(self, tracker: "Tracker", every: int):
        super().__init__()
        self.tracker = tracker
        self.every = every
        self._epoch = 0
        self._logged = 0  # the global step of the last call, so a block that crosses a multiple logs

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._logged = epoch * self.params["steps"]

    def on_train_batch_end(self, batch, logs=None):
        step = self._epoch * self.params["steps"] + batch + 1
        if step // self.every > self._logged // self.every and logs:
            self.tracker.log_metrics({f"step/{k}": float(v) for k, v in logs.items()}, step=step)
        self._logged = step


class Tracker:
    """One MLflow run, logged by our own code: MLflow's autolog patches only `fit` (and not Keras 3.15)."""

    enabled = True

    def __init__(self, *, uri: str, artifact_location: str | None, experiment: str, system_metrics: bool):
        self._uri = uri
        self.uri = secrets.redact_text(uri)  # as printed: the password of a user:password@ URI masked
        self.artifact_location = artifact_location
        self.experiment = experiment
        self.system_metrics = system_metrics
        self._system: SystemMetrics | None = None  # sampling the machine from start to end
        self.client = MlflowClient(tracking_uri=uri)
        self.run_id: str | None = None
        self.experiment_id: str | None = None  # set by start
        # Metrics leave on one background thread, in order, so training never waits for the store
        # (a SQLite write or a server round trip); lock retries happen there too.
        self._sender = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="mlflow-metrics")
        self._in_flight: list[tuple[concurrent.futures.Future, list[Metric]]] = []
        self._buffer: list[Metric] = []  # not sent yet
        self._logged_through: dict[str, int] = {}  # a resumed run's last step per key in the store
        self._sent_at = -math.inf  # the first epoch is sent at once, so the UI shows the run moving

    def start(self, *, params: dict, tags: dict, run_name: str | None = None, resume_run_id: str | None = None) -> str:
        mlflow.set_tracking_uri(self._uri)
        experiment = experiment_id(self.client, self.experiment, self.artifact_location)
        self.experiment_id = experiment
        try:  # runs a SIGKILL left RUNNING end FAILED (trainer/tracking/stale.py); never a reason to fail this one
            with_lock_retries(stale.close_stale_runs, self.client, experiment, keep=resume_run_id)
        except Exception:
            pass
        if resume_run_id is not None:
            # A rerun of a killed command (trainer/run/resume.py): continue that run, params and all.
            with_lock_retries(self.client.update_run, resume_run_id, status="RUNNING")
            self.run_id = resume_run_id
            self._logged_through = with_lock_retries(self._last_steps)
            self.set_tags(stale.owner_tags())
            self._watch_system(first_step=1 + max((step for key, step in self._logged_through.items()
                                                   if key.startswith(SYSTEM_PREFIX)), default=-1))
            return self.run_id
        tags = {**tags, **stale.owner_tags()}
        tag_values = {_key(k): _cut(str(v), TAG_VALUE_LIMIT) for k, v in secrets.redact_mapping(tags).items()}
        run_name = None if run_name is None else secrets.redact_text(run_name)
        run = with_lock_retries(self.client.create_run, experiment, tags=tag_values, run_name=run_name)
        self.run_id = run.info.run_id
        items = [Param(k, v) for k, v in secrets.redact_mapping(param_items(params)).items()]
        for i in range(0, len(items), _BATCH):
            with_lock_retries(self.client.log_batch, self.run_id, params=items[i : i + _BATCH])
        self._watch_system(first_step=0)
        return self.run_id

    def _watch_system(self, first_step: int) -> None:
        if self.system_metrics:
            self._system = SystemMetrics(self.client, self.run_id, first_step=first_step)

    def set_tags(self, tags: dict) -> None:
        items = [RunTag(_key(k), _cut(str(v), TAG_VALUE_LIMIT)) for k, v in secrets.redact_mapping(tags).items()]
        with_lock_retries(self.client.log_batch, self.run_id, tags=items)

    def _last_steps(self) -> dict[str, int]:
        return {key: max(m.step for m in self.client.get_metric_history(self.run_id, key))
                for key in self.client.get_run(self.run_id).data.metrics}

    def log_metrics(self, metrics: dict, step: int = 0) -> None:
        """Buffer the metrics; at most every SEND_INTERVAL_S they leave in one batch, written on
        the sender thread while training goes on.

        A resumed run retrains the epochs after its snapshot, which the killed attempt may have
        logged already: a step the store has for a key keeps the killed attempt's value (the same
        value in a deterministic run), so every step has one value in the MLflow UI."""
        now = int(time.time() * 1000)
        items = [(_key(k), v) for k, v in metrics.items()]
        self._buffer += [Metric(k, float(v), now, step) for k, v in items if step > self._logged_through.get(k, -1)]
        if time.monotonic() - self._sent_at >= SEND_INTERVAL_S:
            self._send()

    def _send(self) -> None:
        if self._buffer:
            batch, self._buffer = self._buffer, []
            self._in_flight.append((self._sender.submit(self._write_metrics, batch), batch))
        self._sent_at = time.monotonic()

    def _write_metrics(self, batch: list[Metric]) -> None:
        for i in range(0, len(batch), _METRICS_PER_BATCH):
            with_lock_retries(self.client.log_batch, self.run_id, metrics=batch[i : i + _METRICS_PER_BATCH])

    def unconfirmed(self) -> list[tuple]:
        """(key, value, timestamp, step) of every metric not yet known to be in the store: what a
        resume snapshot keeps (trainer/run/snapshot.py), instead of waiting for the store."""
        self._in_flight = [(f, batch) for f, batch in self._in_flight if not (f.done() and f.exception() is None)]
        waiting = [m for _, batch in self._in_flight for m in batch] + self._buffer
        return [(m.key, m.value, m.timestamp, m.step) for m in waiting]

    def replay(self, metrics: list) -> None:
        """Log again what a killed attempt's snapshot says may not have reached the store (called by
        trainer/run/resume.py when it restores); the store keeps one copy of a metric logged twice
        with the same key, value, time and step."""
        if metrics:
            self._write_metrics([Metric(str(k), float(v), int(t), int(s)) for k, v, t, s in metrics])

    def flush(self) -> None:
        """Send what is buffered and wait until the store has every metric; raises the first error."""
        self._send()
        in_flight, self._in_flight = self._in_flight, []
        for future, _ in in_flight:
            future.result()

    # Every text that leaves for MLflow is masked by trainer.tracking.secrets first (docs/security.md).
    def log_text(self, text: str, artifact_file: str) -> None:
        self.client.log_text(self.run_id, secrets.redact_text(text), artifact_file)

    def log_artifact(self, path: str, artifact_path: str | None = None) -> None:
        with secrets.redacted_copy(path) as copy:
            self.client.log_artifact(self.run_id, copy, artifact_path)

    def log_artifacts(self, directory: str, artifact_path: str | None = None) -> None:
        with secrets.redacted_copy(directory) as copy:
            self.client.log_artifacts(self.run_id, copy, artifact_path)

    def log_model(self, model, input_example, *, name: str = "model", tags: dict | None = None, step: int = 0) -> str:
        """Log the trained model as this run's LoggedModel `name` (see trainer/tracking/export.py);
        `input_example` is a batch as the model sees it. MLflow links the run's metrics at `step` to
        the model, so the buffered ones are sent first. Returns the model URI."""
        from trainer.tracking import export

        self.flush()
        return export.log_model(self.client.get_run(self.run_id), model, input_example, name=name, tags=tags, step=step)

    def register_model(self, name: str, model_uri: str) -> str:
        """Register the logged model at `model_uri` in the Model Registry as `name`; returns the version."""
        version = with_lock_retries(mlflow.register_model, model_uri, name)
        return str(version.version)

    def end(self, status: str, error: BaseException | None = None) -> None:
        if self.run_id is None:
            return
        if self._system is not None:
            system, self._system = self._system, None
            try:
                system.stop()
            except Exception:  # the status matters more than the machine's last sample
                pass
        try:
            self.flush()
        except Exception:  # the status matters more than the last metrics
            if status == FINISHED:
                raise
        if error is not None:
            tb = "".join(traceback.format_exception(type(error), error, error.__traceback__))
            try:
                self.log_text(tb, "traceback.txt")
            except Exception:  # the status matters more than the traceback artifact
                pass
        self._sender.shutdown(wait=False)  # flushed above; nothing is left to send
        with_lock_retries(self.client.set_terminated, self.run_id, status=status)
        if mlflow.active_run() is not None:
            mlflow.end_run(status=status)

    def ui_command(self) -> str:
        return ui_command(self.uri)

    def review(self) -> str:
        """Where this run's experiment is reviewed (after `start`)."""
        return how_to_review(self.uri, self.experiment_id)


class NoTracker:
    """`tracking.enabled=false` (or a worker other than a cluster's chief): the interface of
    `Tracker`, and nothing is written anywhere. Every public method of `Tracker` is a no-op here
    without being written out again, so the two cannot drift apart; the methods whose answer
    callers read are the ones below."""

    enabled = False
    uri = None
    run_id = None

    def unconfirmed(self) -> list[tuple]:
        return []

    def ui_command(self) -> str:
        return ""

    def __getattr__(self, name: str):
        if not name.startswith("_") and callable(getattr(Tracker, name, None)):
            return _nothing
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")


def _nothing(*args, **kwargs) -> None:
    return None


def create(settings: dict) -> Tracker | NoTracker:
    """The tracker the validated `tracking` section asks for (after `store.prepare_store`, which
    `train` calls before TensorFlow loads, so that a wrong server address costs no start-up)."""
    if not settings["enabled"]:
        return NoTracker()
    return Tracker(uri=settings["uri"], artifact_location=settings["artifact_location"],
                   experiment=settings["experiment"], system_metrics=settings["system_metrics"])


FINISHED = RunStatus.to_string(RunStatus.FINISHED)
FAILED = RunStatus.to_string(RunStatus.FAILED)
KILLED = RunStatus.to_string(RunStatus.KILLED)
