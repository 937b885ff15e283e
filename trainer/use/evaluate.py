"""`evaluate(cfg) -> metrics`: a trained model on the test split of any dataset the framework reads,
printed (metrics table, per-class report) and recorded in MLflow as an evaluation of that model.

The record is a new run (tag `evaluation=true`, in tracking.experiment) whose inputs are the
dataset (context "evaluation") and the LoggedModel, and whose metrics are linked to both, so the
model's page and MLflow's Models tab show them per dataset. Its artifacts: the confusion matrix
and per-class report (trainer/tracking/plots.py, as a training run has them) and the command's
folder. The run it evaluates is named by tags (evaluated.run_id, evaluated.model_id,
evaluated.model_uri), and the training run is left as it was.
"""

from __future__ import annotations

import os
import tempfile
import time

import numpy as np
import tensorflow as tf
from mlflow.entities import DatasetInput, InputTag, LoggedModelInput, Metric
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT
from omegaconf import OmegaConf

from trainer import data as data_lib
from trainer.data import inputs
from trainer.errors import ConfigError
from trainer.tracking import artifacts, plots, provenance
from trainer.tracking import tracker as tracking
from trainer.tracking.store import prepare_store, with_lock_retries
from trainer.use import checks, cli, source

CONTEXT = "evaluation"
PREFIX = "test_"   # the metrics are the test split's, named as a training run names its own


def evaluate(cfg) -> dict:
    """Load the model and the dataset, evaluate, print, record; returns the metrics."""
    trained = source.open_trained(cfg.run, cfg.tracking.uri, class_names=checks.class_names(cfg.class_names),
                                  compile=True)
    data_cfg = OmegaConf.to_container(cfg.data, resolve=True)
    data = data_lib.load(**data_cfg, batch_size=cfg.batch_size, seed=cfg.seed)
    _check_fits(trained, data, data_cfg)
    labels, probs = _predictions(trained.model, data.test)
    metrics = _metrics(trained.model, data.test)
    counts = plots.confusion_counts(labels, probs.argmax(axis=-1), data.num_classes)
    names = list(trained.class_names)
    metrics.update(_macro(counts))
    report = plots.per_class_report(counts, names)
    print(_table(trained, data, metrics, report), flush=True)
    if cfg.tracking.enabled:
        run_id = _record(cfg, trained, data, metrics, counts, names, report)
        print(f"recorded: evaluation run {run_id} in {cfg.tracking.experiment}"
              + (f"; metrics linked to {trained.model_uri} and dataset {inputs.describe(data).name}"
                 if trained.model_id else ""), flush=True)
    return metrics


def _check_fits(trained, data, data_cfg: dict) -> None:
    if tuple(data.input_shape) != tuple(trained.input_shape):
        height, width, channels = trained.input_shape
        hint = f"data.image_size=[{height}, {width}]" if data.input_shape[2] == channels else (
            f"a dataset of {channels}-channel images (data=image_folder data.channels={channels})")
        raise ConfigError(f"data must give images the model takes, {tuple(trained.input_shape)}; {data.name} gives"
                          f" {tuple(data.input_shape)} (set {hint}). Received: data.name={data.name},"
                          f" data.image_size={data_cfg.get('image_size')}")
    if data.num_classes != len(trained.class_names):
        raise ConfigError(f"data must have as many classes as the model ({len(trained.class_names)}); {data.name} has"
                          f" {data.num_classes}. Received: data.name={data.name}")


def _predictions(model, batches) -> tuple[np.ndarray, np.ndarray]:
    forward = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
    labels, outputs = [], []
    for x, y in batches:
        outputs.append(np.asarray(forward(x), dtype=np.float32))
        labels.append(np.asarray(y))
    return np.concatenate(labels).astype(np.int64), np.concatenate(outputs)


def _metrics(model, batches) -> dict:
    """The loss and metrics the model was compiled with when it was trained (its saved compile
    config), as `model.evaluate` reports them: the same numbers as the training run's test_*."""
    if not model.compiled:  # a .keras file saved without them
        model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    found = model.evaluate(batches, return_dict=True, verbose=0)
    return {f"{PREFIX}{name}": float(value) for name, value in found.items()}


def _macro(counts: np.ndarray) -> dict:
    true_positives = np.diag(counts).astype(float)
    predicted, support = counts.sum(axis=0), counts.sum(axis=1)
    precision = np.divide(true_positives, predicted, out=np.zeros_like(true_positives), where=predicted > 0)
    recall = np.divide(true_positives, support, out=np.zeros_like(true_positives), where=support > 0)
    total = precision + recall
    f1 = np.divide(2 * precision * recall, total, out=np.zeros_like(total), where=total > 0)
    return {f"{PREFIX}macro_precision": float(precision.mean()), f"{PREFIX}macro_recall": float(recall.mean()),
            f"{PREFIX}macro_f1": float(f1.mean())}


def _table(trained, data, metrics: dict, report: str) -> str:
    located = trained.located
    what = located.model_uri + (f" (run {located.run_id})" if located.run_id else "")
    lines = [f"evaluated {what}", f"  on {data.name} split {data.split_specs['test']} ({data.split_sizes['test']} examples)",
             "", f"  {'metric':<22} value"]
    lines += [f"  {name:<22} {value:.4f}" for name, value in metrics.items()]
    lines += ["", "per-class report:", *(f"  {line}".rstrip() for line in report.rstrip("\n").splitlines())]
    return "\n".join(lines)


def _record(cfg, trained, data, metrics: dict, counts, names: list, report: str) -> str:
    """The evaluation run: inputs (dataset, model), linked metrics, plots, the command's folder."""
    settings = OmegaConf.to_container(cfg.tracking, resolve=True)
    prepare_store(settings["uri"])
    tracker = tracking.Tracker(uri=settings["uri"], artifact_location=settings["artifact_location"],
                               experiment=settings["experiment"], system_metrics=False)
    located = trained.located
    dataset = inputs.describe(data)._to_mlflow_entity()
    tags = {"evaluation": "true", "dataset": data.name, "dataset.split": data.split_specs["test"],
            "evaluated.model_uri": located.model_uri, **inputs.run_tags(data), **provenance.source_tags()}
    tags.update({f"evaluated.{key}": value for key, value in
                 (("run_id", located.run_id), ("model_id", located.model_id)) if value})
    name = f"evaluate {located.model_id or os.path.basename(located.keras_file)} on {data.name}"
    run_id = tracker.start(params={"run": located.reference.text, "data": OmegaConf.to_container(cfg.data, resolve=True),
                                   "batch_size": cfg.batch_size}, tags=tags, run_name=name)
    status, error = tracking.FINISHED, None
    try:
        models = [LoggedModelInput(located.model_id)] if located.model_id else None
        with_lock_retries(tracker.client.log_inputs, run_id, datasets=[
            DatasetInput(dataset=dataset, tags=[InputTag(key=MLFLOW_DATASET_CONTEXT, value=CONTEXT)])], models=models)
        now = int(time.time() * 1000)
        batch = [Metric(key, value, now, 0, model_id=located.model_id, dataset_name=dataset.name,
                        dataset_digest=dataset.digest) for key, value in metrics.items()]
        with_lock_retries(tracker.client.log_batch, run_id, metrics=batch)
        with tempfile.TemporaryDirectory() as tmp:
            plots.confusion_matrix(counts, names, os.path.join(tmp, "confusion_matrix.png"))
            tracker.log_artifacts(tmp, "plots")
        tracker.log_text(report, "per_class_report.txt")
        artifacts.log_run_folder(tracker, cli.run_dir())
    except BaseException as err:
        status, error = tracking.FAILED, err
        raise
    finally:
        tracker.end(status, error)
    return run_id
