"""The custom loop's train and test steps, in Keras's own order (keras/src/backend/tensorflow/
trainer.py): forward, loss (plus `model.losses`), gradients, apply, metrics. Each call of
`train`/`test` runs up to `steps_per_execution` steps inside one tf.function, like `fit` does."""

from __future__ import annotations

import keras
import tensorflow as tf

from trainer.config import metrics as metric_names


class Steps:
    def __init__(self, model, optimizer, *, loss, metrics, strategy, steps_per_execution: int, jit_compile: bool,
                 watch=None):
        """`watch`: an execution.NonFiniteWatch that each training step updates with the running loss."""
        self.model, self.optimizer, self.loss, self.strategy = model, optimizer, loss, strategy
        with strategy.scope():
            self.loss_tracker = keras.metrics.Mean(name=metric_names.LOSS)
        self.metrics = [self.loss_tracker, *metrics]
        self.train = self._on_iterator(self._train_step, steps_per_execution, jit_compile, watch)
        self.test = self._on_iterator(self._test_step, steps_per_execution, jit_compile)

    def _losses(self, y, y_pred):
        """(loss to differentiate, loss to report) for this replica's share of the global batch."""
        per_example = self.loss.call(y, y_pred)
        local_batch = tf.shape(per_example)[0]
        # Scale by the GLOBAL batch size, so that the optimizer's sum of the replicas' gradients
        # is the gradient of the mean loss (an uneven last batch included).
        global_batch = tf.distribute.get_replica_context().all_reduce("sum", local_batch)
        loss = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch)
        reported = tf.reduce_sum(per_example) / tf.cast(local_batch, per_example.dtype)
        if self.model.losses:  # regularization: counted once over all replicas
            regularization = tf.add_n([tf.cast(tf.reduce_sum(x), loss.dtype) for x in self.model.losses])
            loss += tf.nn.scale_regularization_loss(regularization)
            reported += regularization
        return loss, reported, local_batch

    def _update_metrics(self, y, y_pred, reported, local_batch):
        self.loss_tracker.update_state(reported, sample_weight=local_batch)
        for metric in self.metrics[1:]:
            metric.update_state(y, y_pred)

    def _train_step(self, data):
        x, y = data
        with tf.GradientTape() as tape:
            y_pred = self.model(x, training=True)
            loss, reported, local_batch = self._losses(y, y_pred)
            loss = self.optimizer.scale_loss(loss)  # a LossScaleOptimizer scales; others return it as is
        gradients = tape.gradient(loss, self.model.trainable_variables)
        self.optimizer.apply_gradients(zip(gradients, self.model.trainable_variables))
        self._update_metrics(y, y_pred, reported, local_batch)

    def _test_step(self, data):
        x, y = data
        y_pred = self.model(x, training=False)
        _, reported, local_batch = self._losses(y, y_pred)
        self._update_metrics(y, y_pred, reported, local_batch)

    def _on_iterator(self, step, steps_per_execution: int, jit_compile: bool, watch=None):
        if jit_compile:
            step = tf.function(step, jit_compile=True, reduce_retracing=True)

        def one_step(data):
            self.strategy.run(step, args=(data,))
            if watch is not None:
                watch.update(self.loss_tracker.result())

        @tf.function(reduce_retracing=True)
        def function(iterator):
            if steps_per_execution == 1:
                one_step(next(iterator))
            else:
                for _ in tf.range(steps_per_execution):
                    data = iterator.get_next_as_optional()
                    if not data.has_value():
                        break
                    one_step(data.get_value())
            return {metric.name: metric.result() for metric in self.metrics}

        return function

    def reset(self) -> None:
        for metric in self.metrics:
            metric.reset_state()


def evaluate_here(model, dataset: tf.data.Dataset, *, loss, metrics) -> dict:
    """The metrics of this process's copy of `model` over the whole of `dataset`, with no
    collective op: what each worker of a multi-worker cluster reports as its test metrics.

    Keras's distributed `evaluate` adds the workers' shares up through collective ops, and on a
    loaded machine has reported a test accuracy that no count over the split can give (the
    cross-check in tests/test_multi_worker.py); here nothing crosses processes, so the number is
    the saved model's on the whole split, and workers that print the same numbers hold the same
    weights. Called outside the strategy's scope: the model's mirrored variables read as this
    process's copy, and the metrics made here are plain variables."""
    default = tf.distribute.get_strategy()
    # One call runs the whole split: the step loop stops at the iterator's end.
    steps = Steps(model, None, loss=loss, metrics=metrics, strategy=default, steps_per_execution=2**31 - 1,
                  jit_compile=False)
    return {k: float(v) for k, v in steps.test(iter(dataset)).items()}
