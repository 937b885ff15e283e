"""The Keras callbacks of a run, built from `callbacks.*` and `schedule.*` (conf/callbacks/,
conf/schedule/). Both loops drive this same list through `keras.callbacks.CallbackList`."""

from __future__ import annotations

import json
import math
import os

import keras

from trainer.run import signals
from trainer.config.choices import PROGRESS
from trainer.errors import NonFiniteLossError


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Raise at the first step whose loss is NaN or infinite (big_vision checks every step).

    Keras's TerminateOnNaN only sets `stop_training`, which would end the run as a success;
    raising makes the run end FAILED with the step in the message. The logged loss is the
    running mean of the epoch, which turns non-finite exactly when a step's loss does. With
    loop.steps_per_execution > 1 the check runs once per call, at its last step, and the loop's
    `watch` (trainer/loops/execution.py) says how many steps earlier the loss went bad, so the
    step named is the same as with one step per call.
    """

    block_safe = True  # checking at the end of a call of several steps names the same step (`watch`)

    def __init__(self):
        super().__init__()
        self.watch = None  # an execution.NonFiniteWatch, set by the loop when a call runs several steps

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = float((logs or {}).get("loss", 0.0))
        if math.isfinite(loss):
            return
        steps = self.params.get("steps") or 0
        if steps:  # fit passes a short last call's end as if the call were full
            batch = min(batch, steps - 1)
        if self.watch is not None:
            batch -= max(0, self.watch.steps_since())
        step = self._epoch * steps + batch + 1 if steps else batch + 1
        raise NonFiniteLossError(
            f"loss became {loss} at step {step} (epoch {self._epoch + 1}, batch {batch + 1}); lower"
            " optimizer.learning_rate or set optimizer.clipnorm"
        )


class RaiseLostSignal(keras.callbacks.Callback):
    """Raise a SIGTERM or Ctrl-C whose exception TensorFlow or Keras swallowed (trainer/run/signals.py),
    at the next batch end, so the run ends KILLED instead of training on."""

    block_safe = True  # with several steps per call, at the call's end: a few steps later

    def on_train_batch_end(self, batch, logs=None):
        signals.raise_if_received()

    def on_epoch_end(self, epoch, logs=None):  # after validation, which has no batch-end check
        signals.raise_if_received()


BEST_FILE, BEST_RECORD = "best.keras", "best.json"  # in the run folder


class BestCheckpoint(keras.callbacks.ModelCheckpoint):
    """`callbacks.checkpoint`: Keras's ModelCheckpoint keeping the best epoch as best.keras, and
    beside it best.json, which says which epoch that is and its logs, so the run can log the file as
    the LoggedModel "best" with the metrics of that very epoch (trainer/tracking/best_model.py)."""

    def __init__(self, run_dir: str, monitor: str):
        super().__init__(os.path.join(run_dir, BEST_FILE), monitor=monitor, save_best_only=True,
                         mode="max" if "accuracy" in monitor else "min")
        self.record = os.path.join(run_dir, BEST_RECORD)

    def on_epoch_end(self, epoch, logs=None):
        best = self.best
        super().on_epoch_end(epoch, logs)
        if self.best is not best:  # improved: the file now holds this epoch
            with open(self.record, "w") as f:
                json.dump({"epoch": epoch, "monitor": self.monitor,
                           "metrics": {k: float(v) for k, v in (logs or {}).items()}}, f)


class ReportToTrial(keras.callbacks.Callback):
    """After each epoch, hand its logs to `report` (an Optuna trial's reporter, trainer/sweeps/pruning.py),
    and stop training after this epoch when it says the trial is pruned: the run then ends as a
    finished run, with the epochs it trained."""

    def __init__(self, report) -> None:
        super().__init__()
        self.report = report

    def on_epoch_end(self, epoch, logs=None):
        if self.report(epoch, logs or {}):
            self.model.stop_training = True


def verbosity(progress: str) -> int:
    return PROGRESS[progress]


def build(callbacks: dict, schedule: dict, *, run_dir: str, loggers: list,
          snapshot_callback: keras.callbacks.Callback | None = None, report=None) -> list[keras.callbacks.Callback]:
    """The run's callbacks in the order they fire; `loggers` (MLflow) come after anything that
    adds to the epoch's logs, such as ReduceLROnPlateau's learning_rate, and the resume snapshot's
    callback (None: resume is off, or this worker does not write) comes last, so a saved epoch is
    one every other callback has seen. `report` (None outside a pruned sweep's trial) gets every
    epoch's logs and may stop training after that epoch."""
    built: list[keras.callbacks.Callback] = [RaiseLostSignal()]
    if callbacks["terminate_on_nan"]:
        built.append(StopOnNonFiniteLoss())
    early = callbacks["early_stopping"]
    if early["enabled"]:
        built.append(keras.callbacks.EarlyStopping(
            monitor=early["monitor"], patience=early["patience"], min_delta=early["min_delta"],
            restore_best_weights=early["restore_best_weights"], mode="max" if "accuracy" in early["monitor"] else "min",
        ))
    if schedule["name"] == "reduce_on_plateau":
        built.append(keras.callbacks.ReduceLROnPlateau(
            monitor=schedule["monitor"], factor=schedule["factor"], patience=schedule["patience"],
            min_lr=schedule["min_lr"], mode="max" if "accuracy" in schedule["monitor"] else "min",
        ))
    best_model = callbacks["checkpoint"]  # the user's best model so far, kept as best.keras in the run folder
    if best_model["enabled"]:
        built.append(BestCheckpoint(run_dir, best_model["monitor"]))
    if report is not None:
        built.append(ReportToTrial(report))
    return built + list(loggers) + ([snapshot_callback] if snapshot_callback is not None else [])


def callback_list(callbacks: list, *, model, epochs: int, steps: int | None, verbose: int) -> keras.callbacks.CallbackList:
    """Exactly the container `Model.fit` builds for a list of callbacks (History + progress bar)."""
    return keras.callbacks.CallbackList(
        callbacks, add_history=True, add_progbar=verbose != 0, verbose=verbose, epochs=epochs, steps=steps, model=model,
    )
