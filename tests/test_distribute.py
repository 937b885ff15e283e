"""strategy=mirrored on two logical CPUs gives the single-device results, in both loops.

Logical CPUs must be made before TensorFlow starts, so the mirrored runs happen in ONE
subprocess (a two-job multirun); the single-device references run in process.
"""

from __future__ import annotations

import re

import pytest

from trainer.train import train

ARGS = ("model=mlp", "width=16", "epochs=1", "batch_size=256", "deterministic=true", "tracking=none")


def _metrics(stdout: str) -> list[dict]:
    return [dict((k, float(v)) for k, v in re.findall(r"(\w+)=([-\d.]+)", line))
            for line in stdout.splitlines() if line.strip().startswith("metrics:")]


def test_mirrored_on_two_cpus_matches_one_device(cli, make_cfg):
    result = cli("-m", *ARGS, "loop=fit,custom", "strategy=mirrored", "strategy.devices=[/cpu:0,/cpu:1]")
    assert result.returncode == 0, result.stderr[-3000:]
    mirrored = dict(zip(("fit", "custom"), _metrics(result.stdout), strict=True))
    for loop in ("fit", "custom"):
        single = train(make_cfg(*ARGS, f"loop={loop}"))
        # The custom loop splits each global batch and scales by its global size: the same
        # numbers as one device up to float sums. Keras's fit draws one extra batch under a
        # strategy (its symbolic build), so its examples come in another order: close, not equal.
        tolerance = 1e-3 if loop == "custom" else 0.05
        for key in ("loss", "val_loss", "test_loss"):
            assert mirrored[loop][key] == pytest.approx(single[key], abs=tolerance), (loop, key)


def test_batch_not_divisible_by_replicas_is_explained(cli):
    result = cli(*ARGS, "strategy=mirrored", "strategy.devices=[/cpu:0,/cpu:1]", "batch_size=255")
    assert result.returncode == 2
    assert result.stderr.strip() == ("error: batch_size must be divisible by the number of replicas (2, strategy=mirrored),"
                                     " because it is the global batch split evenly over them. Received: batch_size=255")


def test_fit_with_several_steps_per_call_is_rejected_under_two_replicas(cli):
    # Keras 3.15's fit fails at its first step here (trainer/config/training.py); found before TensorFlow.
    result = cli(*ARGS, "strategy=mirrored", "strategy.devices=[/cpu:0,/cpu:1]", "loop.steps_per_execution=4")
    assert result.returncode == 2
    assert result.stderr.strip() == ("error: loop.steps_per_execution must be 1 for loop=fit with more than one replica"
                                     " (strategy=mirrored): Keras's fit cannot run several steps per call under"
                                     " tf.distribute; loop=custom can. Received: loop.steps_per_execution=4")
