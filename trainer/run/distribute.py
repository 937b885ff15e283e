"""The tf.distribute strategy a run trains under, from `strategy.*` (conf/strategy/)."""

from __future__ import annotations

import re

import tensorflow as tf

from trainer.config.choices import STRATEGIES
from trainer.errors import ConfigError
from trainer.config.training import check_batch_divides, check_jit_compile, check_steps_per_execution


def _split_cpu(devices: list[str]) -> None:
    """`strategy.devices=[/cpu:0,/cpu:1]` on a machine with one CPU device: split it into logical
    CPUs, so data parallelism can be run (and tested) without GPUs. Possible only before
    TensorFlow's runtime starts, which is why `train` builds the strategy first."""
    wanted = 1 + max((int(m.group(1)) for d in devices if (m := re.search(r"cpu:(\d+)", d, re.I))), default=0)
    (cpu, *_) = tf.config.list_physical_devices("CPU")
    configured = tf.config.get_logical_device_configuration(cpu)
    if wanted <= max(1, len(configured or [])):
        return
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * wanted)
    except RuntimeError:
        raise ConfigError(
            f"strategy.devices asks for {wanted} CPU devices, but this process has {max(1, len(configured or []))} and"
            " TensorFlow is already running (logical CPUs must be made before). Received:"
            f" strategy.devices={devices}"
        ) from None


class KerasMultiWorkerStrategy(tf.distribute.MultiWorkerMirroredStrategy):
    """MultiWorkerMirroredStrategy whose `reduce` accepts two calls that Keras 3.15's `fit` and
    `evaluate` make and TensorFlow's collective implementation rejects; without it `loop=fit` fails
    at its first step on more than one worker:

    1. `_maybe_symbolic_build` reduces the whole first `(x, y)` batch, a nest of PerReplica values;
       `Strategy.reduce` takes one value ("TODO: support value being a nest" in TensorFlow).
       MirroredStrategy maps over nests itself, the collective strategy converts the tuple to a
       tensor: `ValueError: Attempt to convert a value (PerReplica:{...}) ... to a Tensor`.
    2. `reduce_per_replica` averages the step's scalar metrics with `axis=0`:
       `Invalid reduction dimension 0 for input with 0 dimensions`.

    Each leaf is reduced on its own, and a scalar across replicas only (what axis=0 means for one
    number per replica); values that already worked reduce exactly as before. tests/test_multi_worker.py
    trains `loop=fit` on two local workers; drop this class once Keras reduces leaf by leaf itself.
    """

    def reduce(self, reduce_op, value, axis=None):
        def one(leaf):
            local = self.experimental_local_results(leaf)[0]
            scalar = getattr(local, "shape", tf.TensorShape([])).rank == 0
            return super(KerasMultiWorkerStrategy, self).reduce(reduce_op, leaf, axis=None if scalar else axis)

        return tf.nest.map_structure(one, value)


def build(strategy: dict, *, batch_size: int, loop: dict) -> tf.distribute.Strategy:
    name = strategy["name"]
    if name == "default":
        built = tf.distribute.get_strategy()
    elif name == "mirrored":
        if strategy["devices"]:
            _split_cpu(strategy["devices"])
        built = tf.distribute.MirroredStrategy(devices=strategy["devices"])
    elif name == "multi_worker":
        # Reads TF_CONFIG; blocks until every worker of the cluster has started.
        built = KerasMultiWorkerStrategy()
    else:
        raise ValueError(f"strategy.name must be one of {', '.join(STRATEGIES)}. Received: strategy.name={name}")
    check_batch_divides(batch_size, built.num_replicas_in_sync, f"strategy={name} on this machine")
    check_steps_per_execution(loop["name"], loop["steps_per_execution"], built.num_replicas_in_sync, name)
    if built.num_replicas_in_sync > 1:  # the default strategy has no worker_devices to ask
        on_cpu = all("CPU" in device.upper() for device in built.extended.worker_devices)
        check_jit_compile(loop["jit_compile"], built.num_replicas_in_sync, on_cpu, name)
    return built


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """The one process that tracks the run and writes its resume snapshots (every process outside multi-worker)."""
    resolver = getattr(strategy.extended, "_cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "chief" or (not has_chief and resolver.task_type == "worker" and resolver.task_id == 0)


def shardable(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """TFDS splits are few files: shard by element so every worker sees different examples."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def workers_agree(strategy: tf.distribute.Strategy, value: int) -> bool:
    """Whether every worker of a multi-worker cluster passed the same `value` (always true outside
    one). A collective op: every worker must call it at the same point of the run."""
    if not is_multi_worker(strategy):
        return True
    # Strategy.reduce offers SUM and MEAN, not MIN/MAX: a sum equal to value x replicas on every
    # worker means equal values; a worker whose value differs from the cluster's mean sees it.
    total = strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(lambda: tf.constant(float(value))), axis=None)
    return float(total) == float(value) * strategy.num_replicas_in_sync


def is_multi_worker(strategy: tf.distribute.Strategy) -> bool:
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def is_default(strategy: tf.distribute.Strategy) -> bool:
    return not isinstance(strategy, (tf.distribute.MirroredStrategy, tf.distribute.MultiWorkerMirroredStrategy))


def distribute(strategy: tf.distribute.Strategy, dataset: tf.data.Dataset):
    """Split each global batch over the replicas (the custom loop's input; fit does this itself)."""
    if is_default(strategy):
        return dataset
    return strategy.experimental_distribute_dataset(shardable(dataset))
