"""The one builder of loss, metrics, optimizer and learning-rate schedule, shared by `fit` and
the GradientTape loop so the two loops cannot disagree about what they optimize or report."""

from __future__ import annotations

import keras

from models import losses
from trainer.config import metrics as metric_names
from trainer.config.choices import OPTIMIZERS, SCHEDULES



def build_loss(label_smoothing: float = 0.0) -> keras.losses.Loss:
    return losses.build(label_smoothing)


def build_metrics() -> list[keras.metrics.Metric]:
    return [keras.metrics.SparseCategoricalAccuracy(name=metric_names.ACCURACY)]


def build_schedule(schedule: dict, *, learning_rate: float, steps_per_epoch: int, epochs: int):
    """A float (constant; reduce_on_plateau changes it through its callback) or a Keras schedule,
    stepped by the optimizer's iteration count so a resumed run continues on the same curve."""
    name = schedule["name"]
    if name in ("constant", "reduce_on_plateau"):
        return learning_rate
    if name == "cosine":
        warmup = int(round(schedule["warmup_fraction"] * epochs * steps_per_epoch))
        return keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=0.0 if warmup else learning_rate,
            decay_steps=max(1, epochs * steps_per_epoch - warmup),
            alpha=schedule["alpha"],
            warmup_target=learning_rate if warmup else None,
            warmup_steps=warmup,
        )
    if name == "exponential":
        return keras.optimizers.schedules.ExponentialDecay(
            learning_rate, decay_steps=steps_per_epoch, decay_rate=schedule["decay_rate"],
            staircase=schedule["staircase"],
        )
    raise ValueError(f"schedule.name must be one of {', '.join(SCHEDULES)}. Received: schedule.name={name}")


def build_optimizer(optimizer: dict, schedule: dict, *, steps_per_epoch: int, epochs: int,
                    precision: str = "float32") -> keras.optimizers.Optimizer:
    """The optimizer both loops use. Build it inside the strategy scope (its variables are mirrored)."""
    # YAML and the command line give `learning_rate=1` or `momentum=0` as ints, which the config
    # accepts as numbers but Keras's optimizers refuse ("should be float").
    options = {k: float(v) if isinstance(v, int) and not isinstance(v, bool) else v for k, v in optimizer.items()}
    name = options.pop("name")
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer.name must be one of {', '.join(OPTIMIZERS)}. Received: optimizer.name={name}")
    options["learning_rate"] = build_schedule(schedule, learning_rate=options["learning_rate"],
                                              steps_per_epoch=steps_per_epoch, epochs=epochs)
    built = getattr(keras.optimizers, OPTIMIZERS[name])(**options)
    if precision == "mixed_float16":
        # float16 gradients underflow without loss scaling; Model.compile would add this wrapper
        # itself, so adding it here gives the custom loop exactly what fit gets.
        built = keras.optimizers.LossScaleOptimizer(built, name="loss_scale_optimizer")
    return built


def resolve_jit_compile(value, *, distributed: bool) -> bool:
    """loop.jit_compile=auto means what Model.compile(jit_compile="auto") picks on this machine:
    XLA only with a GPU and no tf.distribute strategy. Both loops receive the resolved value."""
    if value != "auto":
        return bool(value)
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU")) and not distributed
