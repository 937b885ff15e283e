"""`loop.steps_per_execution`: how many training steps one tf.function call runs (`auto`: as many
as leave every callback's behaviour unchanged), and, when a call runs several, which step a
non-finite loss first appeared at, so that `callbacks.terminate_on_nan` names it exactly."""

from __future__ import annotations

import keras
import tensorflow as tf

# The most steps `auto` puts in one call. Python runs only between calls, so this bounds how long a
# Ctrl-C or SIGTERM waits to be handled; and beyond a few dozen steps the per-call cost it saves is
# already a small share of each step (the `levers` benchmark, docs/performance.md).
AUTO_MAX_STEPS = 32

_HOOKS = ("on_train_batch_begin", "on_train_batch_end", "on_batch_begin", "on_batch_end")


def _per_step(callback: keras.callbacks.Callback) -> bool:
    """Whether `callback` does something at each training batch, which a block of several steps
    would call only once (a logger of every N steps, a user's per-batch hook)."""
    if getattr(callback, "block_safe", False):
        return False
    if isinstance(callback, keras.callbacks.ModelCheckpoint):
        return callback.save_freq != "epoch"
    return any(getattr(type(callback), hook) is not getattr(keras.callbacks.Callback, hook) for hook in _HOOKS)


def resolve(value, *, steps: int | None, verbose: int, callbacks: list, replicas: int, loop: str) -> int:
    """The steps per call for `loop.steps_per_execution=value` (validated: "auto" or an int >= 1).

    `auto` gives one step per call where several would change what the user sees: a progress bar
    (it moves once per call), a callback with per-batch hooks, an epoch of unknown length, and
    `fit` over several replicas (which Keras cannot run with more; trainer/config/training.py).
    Otherwise the epoch's steps split into calls of equal size, at most AUTO_MAX_STEPS each: the
    same steps in the same order, so the same results (tests/test_levers.py)."""
    if value != "auto":
        return int(value)
    if steps is None or steps < 1 or verbose == 1 or (loop == "fit" and replicas > 1):
        return 1
    if any(_per_step(cb) for cb in callbacks):
        return 1
    calls = -(-steps // AUTO_MAX_STEPS)
    return -(-steps // calls)


class NonFiniteWatch:
    """Counts training steps in the graph and keeps the count at the first step after which the
    epoch's running loss was NaN or infinite. With several steps per call, the callbacks see the
    loss only at the call's last step; this says how many steps earlier it went bad."""

    def __init__(self):
        # ONLY_FIRST_REPLICA: assigned in replica context by `fit`'s step under a one-replica strategy.
        policy = dict(trainable=False, dtype=tf.int64, aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        self.seen = tf.Variable(0, **policy)
        self.first = tf.Variable(-1, **policy)

    def update(self, loss) -> None:
        self.seen.assign_add(1)
        bad = tf.logical_and(tf.logical_not(tf.math.is_finite(loss)), self.first < 0)
        self.first.assign(tf.where(bad, self.seen, self.first))

    def steps_since(self) -> int:
        """Steps run after the first non-finite one (0: it was the last step run); -1 if none was."""
        first = int(self.first.numpy())
        return -1 if first < 0 else int(self.seen.numpy()) - first


def watch_fit_steps(model, watch: NonFiniteWatch) -> None:
    """Make `model.fit`'s train step update `watch` after each step (Keras calls `model.train_step`
    inside its compiled multi-step loop)."""
    step = model.train_step

    def train_step(data):
        logs = step(data)
        watch.update(logs["loss"])
        return logs

    model.train_step = train_step
