"""`loop=fit`: Keras `Model.fit` with validation each epoch and a test evaluation at the end."""

from __future__ import annotations

import json
import os

import keras
import numpy as np

from trainer import callbacks as callbacks_lib
from trainer import compile as compile_
from trainer import distribute, resume


class SeedBackup(keras.callbacks.Callback):
    """BackupAndRestore keeps weights and optimizer but not the layers' RNG state (dropout masks);
    this keeps it beside them, written before the backup so the two always describe one epoch."""

    def __init__(self, path: str):
        super().__init__()
        self.path = path

    def on_epoch_end(self, epoch, logs=None):
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        states = [np.asarray(s.numpy()).tolist() for s in resume.seed_states(self.model)]
        with open(self.path + ".tmp", "w") as f:
            json.dump(states, f)
        os.replace(self.path + ".tmp", self.path)


def _restore(model, backup_dir: str, seeds_path: str) -> int:
    """Load the backup now, so a corrupt or incompatible one fails with one clear message before
    training (BackupAndRestore loads it again, identically, when fit begins). A process killed
    while it wrote the latest backup leaves the previous one (`.bkp`), which is then used, as
    BackupAndRestore itself does."""
    weights = os.path.join(backup_dir, "latest.weights.h5")
    metadata = os.path.join(backup_dir, "training_metadata.json")
    if not os.path.exists(weights):
        return 0
    model.optimizer.build(model.trainable_variables)
    try:
        epoch = _load(model, weights, metadata)
    except Exception as err:  # h5py, Keras and JSON each raise their own types for a bad file
        if not os.path.exists(weights + ".bkp"):
            raise resume.ResumeError(os.path.dirname(backup_dir), err) from err
        try:
            epoch = _load(model, weights + ".bkp", metadata + ".bkp")
        except Exception:
            raise resume.ResumeError(os.path.dirname(backup_dir), err) from err
    if os.path.exists(seeds_path):
        try:
            with open(seeds_path) as f:
                for state, value in zip(resume.seed_states(model), json.load(f), strict=True):
                    state.assign(np.asarray(value, dtype=state.dtype))
        except (OSError, ValueError) as err:
            raise resume.ResumeError(os.path.dirname(backup_dir), err) from err
    return epoch


def _load(model, weights: str, metadata: str) -> int:
    model.load_weights(weights)
    with open(metadata) as f:
        return int(json.load(f)["epoch"])


def run(model, data, *, epochs: int, optimizer, callbacks: list, strategy, steps_per_execution: int,
        jit_compile: bool, verbose: int, checkpoint_dir: str | None) -> tuple[dict, dict]:
    with strategy.scope():
        model.compile(optimizer=optimizer, loss=compile_.build_loss(), metrics=compile_.build_metrics(),
                      steps_per_execution=steps_per_execution, jit_compile=jit_compile)
    initial_epoch = 0
    if checkpoint_dir is not None:
        backup_dir = os.path.join(checkpoint_dir, "fit")
        seeds_path = os.path.join(checkpoint_dir, "fit-seeds.json")
        with strategy.scope():
            initial_epoch = _restore(model, backup_dir, seeds_path)
        # Not deleted at the end of fit: the run is finished only once its test metrics and
        # model are logged, and trainer/resume.py removes the whole folder then.
        callbacks = [*callbacks, SeedBackup(seeds_path),
                     keras.callbacks.BackupAndRestore(backup_dir, delete_checkpoint=False, double_checkpoint=True)]
    train, validation = data.train, data.validation
    if not distribute.is_default(strategy):
        train, validation = distribute.shardable(train), distribute.shardable(validation)
    resume.replay_shuffles(train, initial_epoch)

    steps = int(train.cardinality()) if int(train.cardinality()) >= 0 else None
    cbs = callbacks_lib.callback_list(callbacks, model=model, epochs=epochs, steps=steps, verbose=verbose)
    history = model.fit(train, validation_data=validation, epochs=epochs, callbacks=cbs, verbose=verbose,
                        shuffle=False)  # the tf.data pipeline already shuffles with the run seed
    test = model.evaluate(data.test, return_dict=True, verbose=0)
    return history.history, {f"test_{k}": float(v) for k, v in test.items()}

