"""`loop=custom`: the GradientTape loop. The same epochs, callbacks and reports as `Model.fit`,
with the step in plain sight (trainer/loops/step.py) for users who want to change it."""

from __future__ import annotations

import os

import keras
import tensorflow as tf

from trainer import callbacks as callbacks_lib
from trainer import compile as compile_
from trainer import distribute, resume
from trainer.loops.step import Steps


class EpochCheckpoint(keras.callbacks.Callback):
    """Model and optimizer state after every completed epoch, through tf.train.CheckpointManager.

    Last in the callback list, so a saved epoch is an epoch whose metrics were already logged.
    """

    def __init__(self, directory: str, model, optimizer):
        super().__init__()
        self.directory = directory
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.checkpoint = tf.train.Checkpoint(
            weights=list(model.weights), seeds=resume.seed_states(model), optimizer=list(optimizer.variables),
            epoch=self.epoch,
        )
        self.manager = tf.train.CheckpointManager(self.checkpoint, directory, max_to_keep=1)

    def restore(self) -> int:
        """The number of completed epochs in the checkpoint (0 when there is none)."""
        latest = self.manager.latest_checkpoint
        if latest is None:
            return 0
        try:
            self.checkpoint.restore(latest).assert_existing_objects_matched()
        except (tf.errors.OpError, ValueError, AssertionError) as err:
            raise resume.ResumeError(self.directory, err) from err
        return int(self.epoch.numpy())

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.assign(epoch + 1)
        self.manager.save()


def _blocks(num_batches: int, steps_per_execution: int):
    """(first, last) batch index of each call of the step function, as fit's epoch iterator yields them."""
    for begin in range(0, num_batches, steps_per_execution):
        yield begin, min(begin + steps_per_execution, num_batches) - 1


def _evaluate(steps: Steps, dataset, num_batches: int, steps_per_execution: int, callbacks=None) -> dict:
    steps.reset()
    if callbacks is not None:
        callbacks.on_test_begin()
    logs = {}
    iterator = iter(dataset)
    for begin, end in _blocks(num_batches, steps_per_execution):
        if callbacks is not None:
            callbacks.on_test_batch_begin(begin)
        logs = steps.test(iterator)
        if callbacks is not None:
            callbacks.on_test_batch_end(end, logs)
    logs = {k: float(v) for k, v in logs.items()}
    if callbacks is not None:
        callbacks.on_test_end(logs)
    return logs


def _num_batches(dataset: tf.data.Dataset) -> int:
    count = int(dataset.cardinality())
    if count < 0:
        raise ValueError("loop=custom needs datasets of known length (tf.data cardinality); this one has none")
    return count


def run(model, data, *, epochs: int, optimizer, callbacks: list, strategy, steps_per_execution: int,
        jit_compile: bool, verbose: int, checkpoint_dir: str | None) -> tuple[dict, dict]:
    spe = steps_per_execution
    with strategy.scope():
        # Build the optimizer's slots now, inside the scope, so they are mirrored and restorable.
        optimizer.build(model.trainable_variables)
        steps = Steps(model, optimizer, loss=compile_.build_loss(), metrics=compile_.build_metrics(),
                      strategy=strategy, steps_per_execution=spe, jit_compile=jit_compile)
    # Callbacks reach the optimizer through the model (ReduceLROnPlateau sets its learning rate).
    model.optimizer = optimizer
    sizes = {name: _num_batches(getattr(data, name)) for name in ("train", "validation", "test")}
    train, validation, test = (distribute.distribute(strategy, getattr(data, n)) for n in ("train", "validation", "test"))

    initial_epoch = 0
    if checkpoint_dir is not None:
        saver = EpochCheckpoint(os.path.join(checkpoint_dir, "custom"), model, optimizer)
        initial_epoch = saver.restore()
        callbacks = [*callbacks, saver]
    resume.replay_shuffles(train, initial_epoch)

    cbs = callbacks_lib.callback_list(callbacks, model=model, epochs=epochs, steps=sizes["train"], verbose=verbose)
    model.stop_training = False
    cbs.on_train_begin()
    epoch_logs: dict = {}
    for epoch in range(initial_epoch, epochs):
        steps.reset()
        cbs.on_epoch_begin(epoch)
        iterator = iter(train)
        logs = {}
        for begin, end in _blocks(sizes["train"], spe):
            cbs.on_train_batch_begin(begin)
            logs = steps.train(iterator)
            cbs.on_train_batch_end(end, logs)
            if model.stop_training:
                break
        else:
            resume.draw_unused_shuffle(train)
        epoch_logs = {k: float(v) for k, v in logs.items()}
        val_logs = _evaluate(steps, validation, sizes["validation"], spe, cbs)
        epoch_logs.update({f"val_{k}": v for k, v in val_logs.items()})
        cbs.on_epoch_end(epoch, epoch_logs)
        if model.stop_training:
            break
    optimizer.finalize_variable_values(model.trainable_weights)
    cbs.on_train_end(logs=epoch_logs)
    test_logs = _evaluate(steps, test, sizes["test"], spe)
    history = model.history.history if getattr(model, "history", None) is not None else {}
    return history, {f"test_{k}": v for k, v in test_logs.items()}
