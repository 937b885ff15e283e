"""The best epoch of a run with `callbacks.checkpoint.enabled=true` as the MLflow LoggedModel "best":
logged once, after training, from the checkpoint file, with that epoch's metrics linked to it, so
MLflow's Models tab lists it beside the final model ("model") and ranks runs' best epochs."""

from __future__ import annotations

import json
import os

from models import saving
from trainer.loops.callbacks import BEST_FILE, BEST_RECORD

NAME = "best"


def log_best(tracker, run_dir: str, input_example) -> str | None:
    """Log `<run_dir>/best.keras` as the LoggedModel "best", tagged with its epoch (the step of its
    metrics in the run) and the metric that chose it; returns its URI, or None when tracking is off
    or no epoch improved on the monitored metric (it was never in the logs)."""
    checkpoint, record_file = os.path.join(run_dir, BEST_FILE), os.path.join(run_dir, BEST_RECORD)
    if not tracker.enabled or not (os.path.isfile(checkpoint) and os.path.isfile(record_file)):
        return None
    with open(record_file) as f:
        record = json.load(f)
    model = saving.load(checkpoint, compile=False)  # the weights are what is served; no optimizer needed
    # At the epoch's step, MLflow links that epoch's metrics, as the run logged them, to the model.
    return tracker.log_model(model, input_example, name=NAME, step=record["epoch"],
                             tags={"epoch": str(record["epoch"]), "monitor": record["monitor"]})
