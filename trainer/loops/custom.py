"""`loop=custom`: the GradientTape loop. The same epochs, callbacks and reports as `Model.fit`,
with the step in plain sight (trainer/loops/step.py) for users who want to change it."""

from __future__ import annotations

import tensorflow as tf

from trainer.loops import callbacks as callbacks_lib
from trainer.loops import compile as compile_
from trainer.loops import execution, setup
from trainer.loops.step import Steps
from trainer.run import distribute


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


def run(model, data, *, epochs: int, optimizer, loss, callbacks: list, strategy, steps_per_execution: int | str,
        jit_compile: bool, verbose: int, initial_epoch: int = 0) -> tuple[dict, dict]:
    """`initial_epoch`: the epochs a resumed run had completed (its snapshot already restored);
    `steps_per_execution`: an int or "auto" (trainer/loops/execution.py)."""
    sizes = {name: _num_batches(getattr(data, name)) for name in ("train", "validation", "test")}
    spe = execution.resolve(steps_per_execution, steps=sizes["train"], verbose=verbose, callbacks=callbacks,
                            replicas=strategy.num_replicas_in_sync, loop="custom")
    watchers = [cb for cb in callbacks if isinstance(cb, callbacks_lib.StopOnNonFiniteLoss)]
    with strategy.scope():
        # Build the optimizer's slots now, inside the scope, so they are mirrored and restorable.
        if not optimizer.built:
            optimizer.build(model.trainable_variables)
        watch = execution.NonFiniteWatch() if spe > 1 and watchers else None
        steps = Steps(model, optimizer, loss=loss, metrics=compile_.build_metrics(),
                      strategy=strategy, steps_per_execution=spe, jit_compile=jit_compile, watch=watch)
    if watch is not None:
        watchers[0].watch = watch
    # Callbacks reach the optimizer through the model (ReduceLROnPlateau sets its learning rate).
    model.optimizer = optimizer
    feed = setup.prepare(model, data, feed=lambda split: distribute.distribute(strategy, split), callbacks=callbacks,
                         epochs=epochs, initial_epoch=initial_epoch, steps=sizes["train"], verbose=verbose)
    train, validation, cbs = feed.train, feed.validation, feed.callbacks
    model.stop_training = False
    cbs.on_train_begin()
    epoch_logs: dict = {}
    iterator = iter(train)
    for epoch in range(initial_epoch, epochs):
        steps.reset()
        cbs.on_epoch_begin(epoch)
        logs = {}
        for begin, end in _blocks(sizes["train"], spe):
            cbs.on_train_batch_begin(begin)
            logs = steps.train(iterator)
            cbs.on_train_batch_end(end, logs)
            if model.stop_training:
                break
        else:
            # The next epoch's iterator, made as this one ends, as Model.fit makes it: one
            # iterator (and one shuffle order) per epoch in both loops.
            iterator = iter(train)
        epoch_logs = {k: float(v) for k, v in logs.items()}
        val_logs = _evaluate(steps, validation, sizes["validation"], spe, cbs)
        epoch_logs.update({f"val_{k}": v for k, v in val_logs.items()})
        cbs.on_epoch_end(epoch, epoch_logs)
        if model.stop_training:
            break
    optimizer.finalize_variable_values(model.trainable_weights)
    cbs.on_train_end(logs=epoch_logs)
    history = model.history.history if getattr(model, "history", None) is not None else {}
    return history, setup.test_metrics(model, data, strategy, loss, lambda: _evaluate(steps, feed.test, sizes["test"], spe))
