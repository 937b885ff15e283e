"""What a run leaves in MLflow besides params, metrics and the model: the Hydra folder and log,
training curves, and for classifiers a confusion matrix and a per-class report."""

from __future__ import annotations

import glob
import os
import tempfile

import numpy as np

from trainer.tracking import plots


def log_run_folder(tracker, run_dir: str) -> None:
    """Hydra's `.hydra/` (composed config, hydra config, overrides) and the run's log file."""
    hydra_dir = os.path.join(run_dir, ".hydra")
    if os.path.isdir(hydra_dir):
        tracker.log_artifacts(hydra_dir, ".hydra")
    for log_file in sorted(glob.glob(os.path.join(run_dir, "*.log"))):
        tracker.log_artifact(log_file)


def _predictions(model, data) -> tuple[np.ndarray, np.ndarray] | None:
    import tensorflow as tf

    # The model called directly, not `model.predict`: under a multi-worker strategy predict
    # gathers every worker's outputs (a collective op), and only the chief gets here, after the
    # other workers have finished; a direct call reads this process's copy of the weights.
    forward = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
    labels, outputs = [], []
    for x, y in data.test:
        outputs.append(np.asarray(forward(x)))
        labels.append(np.asarray(y))
    probabilities = np.concatenate(outputs)
    if probabilities.ndim != 2 or probabilities.shape[-1] != data.num_classes:
        return None  # not a classifier's per-class output
    return np.concatenate(labels).astype(np.int64), probabilities.argmax(axis=-1)


def log_evaluation(tracker, model, data, history: dict) -> None:
    """plots/training_curves.png and, for classifiers, plots/confusion_matrix.png and per_class_report.txt."""
    if not tracker.enabled:
        return
    with tempfile.TemporaryDirectory() as tmp:
        if any(history.values()):  # a run resumed after its last epoch trained none now
            plots.training_curves(history, os.path.join(tmp, "training_curves.png"))
        found = _predictions(model, data)
        if found is not None:
            names = [str(n) for n in data.class_names] or [str(i) for i in range(data.num_classes)]
            counts = plots.confusion_counts(*found, data.num_classes)
            plots.confusion_matrix(counts, names, os.path.join(tmp, "confusion_matrix.png"))
            tracker.log_text(plots.per_class_report(counts, names), "per_class_report.txt")
        tracker.log_artifacts(tmp, "plots")
