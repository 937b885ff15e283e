"""Validation of how a run trains: loop, optimizer, schedule, callbacks, strategy, precision,
determinism and resume. Plain Python, no TensorFlow: called by `trainer.config.validate`."""

from __future__ import annotations

import json
import os

from omegaconf import DictConfig, ListConfig

from trainer.config import checks, metrics
from trainer.config.choices import LOOPS, OPTIMIZERS, PRECISIONS, PROGRESS, SCHEDULES, STRATEGIES
from trainer.errors import ConfigError

# What a callback can watch: the metrics both loops report each epoch, for training and validation
# (config/metrics.py names them once; a test keeps them equal to what loops/compile.py builds).
MONITORS = tuple(f"{prefix}{name}" for prefix in ("", "val_") for name in metrics.COMPILED)


def _optional_positive(key: str, value):
    return None if value is None else checks.number_above(key, value, 0.0)


def _check_loop(loop: DictConfig) -> None:
    checks.one_of("loop.name", loop.name, LOOPS)
    if loop.steps_per_execution != "auto" and not (checks.is_int(loop.steps_per_execution)
                                                    and loop.steps_per_execution >= 1):
        raise checks.fail("loop.steps_per_execution", "auto or an integer >= 1", loop.steps_per_execution)
    if not (loop.jit_compile == "auto" or isinstance(loop.jit_compile, bool)):
        raise checks.fail("loop.jit_compile", "one of auto, true, false", loop.jit_compile)


def _check_optimizer(opt: DictConfig) -> None:
    checks.one_of("optimizer.name", opt.name, OPTIMIZERS)
    checks.number_above("optimizer.learning_rate", opt.learning_rate, 0.0)
    _optional_positive("optimizer.clipnorm", opt.clipnorm)
    _optional_positive("optimizer.clipvalue", opt.clipvalue)
    if "weight_decay" in opt:
        checks.number_above("optimizer.weight_decay", opt.weight_decay, 0.0, inclusive=True)
    if "momentum" in opt:
        checks.number_in("optimizer.momentum", opt.momentum, 0.0, 1.0)
    if "nesterov" in opt:
        checks.boolean("optimizer.nesterov", opt.nesterov)


def _check_schedule(schedule: DictConfig) -> None:
    checks.one_of("schedule.name", schedule.name, SCHEDULES)
    if schedule.name == "cosine":
        checks.number_in("schedule.warmup_fraction", schedule.warmup_fraction, 0.0, 1.0)
        checks.number_in("schedule.alpha", schedule.alpha, 0.0, 1.0, high_open=False)
    elif schedule.name == "exponential":
        checks.number_in("schedule.decay_rate", schedule.decay_rate, 0.0, 1.0, low_open=True, high_open=False)
        checks.boolean("schedule.staircase", schedule.staircase)
    elif schedule.name == "reduce_on_plateau":
        checks.one_of("schedule.monitor", schedule.monitor, MONITORS)
        checks.number_in("schedule.factor", schedule.factor, 0.0, 1.0, low_open=True)
        checks.int_at_least("schedule.patience", schedule.patience, 0)
        checks.number_above("schedule.min_lr", schedule.min_lr, 0.0, inclusive=True)


def _check_callbacks(cb: DictConfig) -> None:
    checks.one_of("callbacks.progress", cb.progress, PROGRESS)
    checks.boolean("callbacks.terminate_on_nan", cb.terminate_on_nan)
    es = cb.early_stopping
    checks.boolean("callbacks.early_stopping.enabled", es.enabled)
    checks.one_of("callbacks.early_stopping.monitor", es.monitor, MONITORS)
    checks.int_at_least("callbacks.early_stopping.patience", es.patience, 0)
    checks.number_above("callbacks.early_stopping.min_delta", es.min_delta, 0.0, inclusive=True)
    checks.boolean("callbacks.early_stopping.restore_best_weights", es.restore_best_weights)
    checks.boolean("callbacks.checkpoint.enabled", cb.checkpoint.enabled)
    checks.one_of("callbacks.checkpoint.monitor", cb.checkpoint.monitor, MONITORS)


def _addresses(job) -> list | None:
    """A cluster job's addresses; tf.train.ClusterSpec takes a list, or {index: address} for a
    sparse job. None for anything else (a string would count its characters as workers)."""
    addresses = list(job.values()) if isinstance(job, dict) else job
    return addresses if isinstance(addresses, list) and all(isinstance(a, str) for a in addresses) else None


def tf_config_workers() -> int:
    """Worker count from $TF_CONFIG (what MultiWorkerMirroredStrategy reads); 0 when unset."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return 0
    try:
        cluster = json.loads(raw)["cluster"]
        jobs = [_addresses(cluster.get(name, [])) for name in ("worker", "chief")]
    except (ValueError, KeyError, TypeError, AttributeError):
        jobs = [None]
    if None in jobs:
        raise ConfigError(
            'TF_CONFIG must be JSON like {"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker",'
            f' "index": 0}}}}. Received: TF_CONFIG={checks.shorten(raw)}'
        )
    return sum(map(len, jobs))


def known_replicas(strategy: DictConfig) -> int | None:
    """Replica count when it can be known without TensorFlow, else None (counted after import)."""
    if strategy.name == "mirrored" and strategy.devices:
        return len(strategy.devices)
    if strategy.name == "multi_worker":
        # One replica per worker on CPU-only workers; with GPUs it is checked after import.
        return None
    return 1 if strategy.name == "default" else None


def check_batch_divides(batch_size: int, replicas: int, where: str) -> None:
    if batch_size % replicas:
        raise ConfigError(
            f"batch_size must be divisible by the number of replicas ({replicas}, {where}), because it is the"
            f" global batch split evenly over them. Received: batch_size={batch_size}"
        )


def check_steps_per_execution(loop: str, steps_per_execution: int | str, replicas: int, strategy: str) -> None:
    """Keras 3.15's fit runs several steps per call in a tf.while_loop, which fails at the first
    step under a strategy with more than one replica ("You must feed a value for placeholder
    tensor"; plain Keras does too: MirroredStrategy over two CPUs, steps_per_execution=2). One
    replica works, and so does the custom loop, which calls strategy.run once per step. `auto`
    gives fit one step per call there (trainer/loops/execution.py)."""
    if loop == "fit" and steps_per_execution != "auto" and steps_per_execution > 1 and replicas > 1:
        raise ConfigError(
            f"loop.steps_per_execution must be 1 for loop=fit with more than one replica (strategy={strategy}):"
            " Keras's fit cannot run several steps per call under tf.distribute; loop=custom can."
            f" Received: loop.steps_per_execution={steps_per_execution}"
        )


def check_jit_compile(jit_compile, replicas: int, on_cpu: bool, strategy: str) -> None:
    """XLA cannot compile a step whose replicas are CPUs: under mirrored the step reads variables
    on another logical CPU ("Trying to access resource ... located in device CPU:1"), under
    multi_worker it needs collectives ("Collectives are not yet implemented for CPU devices when
    compiling with XLA"). jit_compile=auto already picks XLA only on GPUs without a strategy."""
    if jit_compile is True and replicas > 1 and on_cpu:
        raise ConfigError(
            f"loop.jit_compile must be auto or false under strategy={strategy} on CPU devices: XLA cannot compile"
            " a training step that spans several CPU replicas. Received: loop.jit_compile=true"
        )


def _check_strategy(strategy: DictConfig, batch_size: int) -> None:
    checks.one_of("strategy.name", strategy.name, STRATEGIES)
    if strategy.name == "mirrored":
        devices = strategy.devices
        names = list(devices) if isinstance(devices, ListConfig) else devices
        if names is not None and (not isinstance(names, list) or not names or len(set(map(str, names))) != len(names)
                                  or not all(isinstance(d, str) and d.strip() for d in names)):
            raise checks.fail("strategy.devices", "null or a non-empty list of distinct device names like /cpu:0",
                              devices)
    if strategy.name == "multi_worker" and tf_config_workers() == 0:
        raise ConfigError(
            "strategy=multi_worker needs TF_CONFIG describing the cluster and this process's task (see"
            " conf/strategy/multi_worker.yaml). Received: TF_CONFIG unset"
        )
    replicas = known_replicas(strategy)
    if replicas:
        check_batch_divides(batch_size, replicas, f"strategy={strategy.name}")


def _check_fit_under_strategy(loop: DictConfig, strategy: DictConfig) -> None:
    # Every worker holds at least one replica; the exact count (GPUs) is checked after import.
    replicas = tf_config_workers() if strategy.name == "multi_worker" else known_replicas(strategy)
    if replicas:
        check_steps_per_execution(loop.name, loop.steps_per_execution, replicas, strategy.name)
    if strategy.name == "mirrored" and strategy.devices:
        on_cpu = all("cpu" in device.lower() for device in strategy.devices)
        check_jit_compile(loop.jit_compile, len(strategy.devices), on_cpu, strategy.name)


def check(cfg: DictConfig) -> None:
    _check_loop(cfg.loop)
    _check_optimizer(cfg.optimizer)
    _check_schedule(cfg.schedule)
    _check_callbacks(cfg.callbacks)
    _check_strategy(cfg.strategy, cfg.batch_size)
    _check_fit_under_strategy(cfg.loop, cfg.strategy)
    checks.one_of("precision", cfg.precision, PRECISIONS)
    checks.boolean("deterministic", cfg.deterministic)
    checks.boolean("resume.enabled", cfg.resume.enabled)
    checks.number_above("resume.every_seconds", cfg.resume.every_seconds, 0, inclusive=True)
    if cfg.resume.dir is not None and (not isinstance(cfg.resume.dir, str) or not cfg.resume.dir):
        raise checks.fail("resume.dir", "null or a directory path", cfg.resume.dir)
