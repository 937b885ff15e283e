"""What both loops do around their epochs, written once so that `fit` and the GradientTape loop
cannot drift apart: the splits as the strategy feeds them, the shuffle orders a resumed run has
already used, the callback container, and the test metrics."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import keras
import tensorflow as tf

from trainer.loops import callbacks as callbacks_lib
from trainer.loops import compile as compile_
from trainer.loops.step import evaluate_here
from trainer.run import distribute, resume


@dataclasses.dataclass
class Feed:
    train: object       # the splits as the loop iterates them (distributed or sharded by `feed`)
    validation: object
    test: object
    callbacks: keras.callbacks.CallbackList


def prepare(model, data, *, feed: Callable[[tf.data.Dataset], object], callbacks: list, epochs: int,
            initial_epoch: int, steps: int | None, verbose: int) -> Feed:
    """`feed` turns a split into what the loop iterates; `steps` the training batches per epoch
    (None: unknown)."""
    train, validation, test = (feed(split) for split in (data.train, data.validation, data.test))
    resume.replay_shuffles(train, initial_epoch)
    return Feed(train, validation, test,
                callbacks_lib.callback_list(callbacks, model=model, epochs=epochs, steps=steps, verbose=verbose))


def test_metrics(model, data, strategy, loss, evaluate: Callable[[], dict]) -> dict:
    """{"test_<metric>": value}. In a multi-worker cluster every worker evaluates the whole test
    split on its own copy of the weights, with no collective op (loops/step.py, evaluate_here);
    elsewhere `evaluate()`, the loop's own evaluation of its test feed."""
    if distribute.is_multi_worker(strategy):
        logs = evaluate_here(model, data.test, loss=loss, metrics=compile_.build_metrics())
    else:
        logs = evaluate()
    return {f"test_{k}": float(v) for k, v in logs.items()}
