"""The names of the metrics a run reports, declared once and free of TensorFlow, so a sweep's
`sweep.metric` is checked before TensorFlow loads (trainer/cli/command.py) by the same names the loops
log: the loss and trainer/loops/compile.py's metrics, for training, validation (`val_`) and test (`test_`)."""

from __future__ import annotations

LOSS = "loss"
ACCURACY = "accuracy"
COMPILED = (LOSS, ACCURACY)
PREFIXES = ("", "val_", "test_")


def reported(schedule: str) -> tuple[str, ...]:
    """Every metric a run with this learning-rate schedule returns."""
    names = [f"{prefix}{name}" for prefix in PREFIXES for name in COMPILED]
    if schedule == "reduce_on_plateau":
        names.append("learning_rate")  # Keras's ReduceLROnPlateau adds it to every epoch's logs
    return tuple(names)
