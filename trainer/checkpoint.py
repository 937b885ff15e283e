"""The resume checkpoint: after every completed epoch, everything a rerun of the killed command
needs to continue exactly where it stopped. Both loops use this one callback.

What it holds: the model's weights, the optimizer's variables (step count and slots), the layers'
RNG state (dropout masks: a resumed deterministic run must draw the masks an uninterrupted one
draws), the number of completed epochs, and the metrics the tracker had not yet confirmed in the
store (so logging never waits for the store before a checkpoint; trainer/tracking.py replays them
on resume, and MLflow ignores a metric it already has).

Why not Keras's BackupAndRestore or a tf.train.CheckpointManager: measured on a 2-core CPU, they
write synchronously and cost 11 ms and 6-7 ms per epoch for the default mlp, a fifth and an eighth
of a 52 ms digits epoch (benchmarks/, "overhead"); TensorFlow's async checkpoint option fails on
Keras 3 variables ("tf.function only supports singleton tf.Variables"). Here the epoch-end cost is
a read of the variables into NumPy (0.9 ms, median of 120 epochs); the file is written on a
background thread while the next epoch trains (~3 ms of CPU there), into a temporary file that
atomically replaces the previous one, so a kill at any moment leaves one complete checkpoint. A write that fails (full disk) raises at the
next epoch end or when training ends, and the previous checkpoint is kept.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import zipfile

import keras
import numpy as np

from trainer import resume

FILE = "state.npz"
_FORMAT = 1


class EpochCheckpoint(keras.callbacks.Callback):
    """Write the resume state after every epoch; last in the callback list, so a saved epoch is an
    epoch every other callback (early stopping, the MLflow logger) has already seen."""

    def __init__(self, directory: str, model, optimizer, unconfirmed_metrics=lambda: []):
        super().__init__()
        self.directory = directory
        self.path = os.path.join(directory, FILE)
        self.unconfirmed_metrics = unconfirmed_metrics
        seen: set[int] = set()
        self.variables = []
        for variable in [*model.weights, *optimizer.variables, *resume.seed_states(model)]:
            if id(variable) not in seen:  # a variable shared by two layers is saved once
                seen.add(id(variable))
                self.variables.append(variable)
        self._described = [[v.path, list(v.shape), str(v.dtype)] for v in self.variables]
        self._writer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="resume-checkpoint")
        self._pending: concurrent.futures.Future | None = None

    def restore(self) -> tuple[int, list]:
        """Load the checkpoint into the variables; returns (completed epochs, unconfirmed metrics),
        (0, []) when there is none. Anything unusable is a ResumeError and the file is left as is."""
        if not os.path.exists(self.path):
            return 0, []
        try:
            with np.load(self.path, allow_pickle=False) as stored:
                manifest = json.loads(str(stored["manifest"]))
                if manifest.get("format") != _FORMAT:
                    raise ValueError(f"format {manifest.get('format')!r}, this version reads {_FORMAT}")
                arrays = [stored[f"v{i}"] for i in range(len(manifest["variables"]))]
            self._check(arrays)
        except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as err:
            raise resume.ResumeError(self.directory, err) from err
        for variable, value in zip(self.variables, arrays, strict=True):
            variable.assign(value)
        return int(manifest["epoch"]), manifest["metrics"]

    def _check(self, arrays: list) -> None:
        if len(arrays) != len(self.variables):
            raise ValueError(f"it holds {len(arrays)} variables, the model and optimizer have {len(self.variables)}")
        for variable, value in zip(self.variables, arrays):
            if tuple(value.shape) != tuple(variable.shape):
                raise ValueError(f"{variable.path} has shape {tuple(variable.shape)}, the checkpoint {tuple(value.shape)}")

    def on_epoch_end(self, epoch, logs=None):
        self.wait()  # one write at a time, in order; a failed one raises here
        # This epoch's state: a read of a TensorFlow variable is a snapshot (the optimizer's next
        # update copies the buffer while a reader still holds it), so no further copy is needed.
        arrays = [v.value.numpy() for v in self.variables]
        manifest = {
            "format": _FORMAT,
            "epoch": epoch + 1,
            "variables": self._described,
            "metrics": [list(m) for m in self.unconfirmed_metrics()],
        }
        self._pending = self._writer.submit(self._write, arrays, manifest)

    def on_train_end(self, logs=None):
        self.wait()
        self._writer.shutdown()  # a sweep's jobs share one process: no idle thread per job

    def wait(self) -> None:
        """Block until the last checkpoint is on disk; re-raise its error if it failed."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def _write(self, arrays: list, manifest: dict) -> None:
        os.makedirs(self.directory, exist_ok=True)
        partial = self.path + ".partial"
        try:
            with open(partial, "wb") as f:
                np.savez(f, manifest=np.array(json.dumps(manifest)), **{f"v{i}": a for i, a in enumerate(arrays)})
                f.flush()
                os.fsync(f.fileno())  # on disk before it replaces the previous checkpoint
            os.replace(partial, self.path)
        except BaseException:
            try:
                os.remove(partial)  # a full disk keeps the previous checkpoint, not a broken one
            except OSError:
                pass
            raise
