"""Config choices that no other test runs, each tested for what it does: the adamw and rmsprop
optimizers, the exponential schedule, gradient clipping by norm and by value, `data.cache=false`,
`debug=fast`, and `HYDRA_FULL_ERROR=1` (a traceback instead of the one line). Sweeps that stop
(`sweep.continue_on_failure=false`, SIGTERM) are in test_sweeps.py."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tests.conftest import without_tensorflow
from tests.helpers import run_cfg, runs  # noqa: F401  (runs: a fixture)
from tests.test_data_folder import _compose, make_folder
from trainer.config.validate import validate
from trainer.train import train

TINY = ("model=mlp", "width=8", "tracking=none")


@pytest.mark.parametrize("name, keras_class, knob, value", [
    ("adamw", "AdamW", "weight_decay", 0.05),
    ("rmsprop", "RMSprop", "momentum", 0.5),
])
def test_adamw_and_rmsprop_are_built_as_configured_and_train(make_cfg, runs, name, keras_class, knob, value):
    import keras

    train(make_cfg(*TINY, f"optimizer={name}", f"optimizer.{knob}={value}", "epochs=2", "schedule=constant"))
    (run,) = runs
    assert type(run.optimizer) is getattr(keras.optimizers, keras_class)
    assert getattr(run.optimizer, knob) == pytest.approx(value)
    assert float(run.optimizer.learning_rate) == pytest.approx({"adamw": 0.02, "rmsprop": 0.001}[name])  # conf/optimizer
    assert run.history["loss"][1] < run.history["loss"][0]
    assert all(not np.array_equal(a, b) for a, b in zip(run.initial, run.weights, strict=True))


def test_integer_hyperparameters_build_the_optimizer_they_name(make_cfg):
    """`optimizer.learning_rate=1` and `optimizer.momentum=0` are valid numbers on the command
    line; Keras's optimizers take only floats, so the builder must not hand them the ints."""
    from trainer.loops import compile as compile_

    settings = validate(make_cfg("optimizer=sgd", "optimizer.learning_rate=1", "optimizer.momentum=0"))
    assert settings["optimizer"]["learning_rate"] == 1 and settings["optimizer"]["momentum"] == 0
    built = compile_.build_optimizer(settings["optimizer"], settings["schedule"], steps_per_epoch=1, epochs=1)
    assert float(built.learning_rate) == 1.0 and built.momentum == 0.0


@pytest.mark.parametrize("loop", ["fit", "custom"])
def test_exponential_schedule_multiplies_the_rate_by_decay_rate_each_epoch(make_cfg, runs, loop):
    train(make_cfg(*TINY, f"loop={loop}", "schedule=exponential", "schedule.decay_rate=0.5", "epochs=2",
                   "batch_size=256"))
    (run,) = runs
    steps_per_epoch = math.ceil(run.data.split_sizes["train"] / 256)
    assert int(run.optimizer.iterations) == 2 * steps_per_epoch
    assert float(run.optimizer.learning_rate) == pytest.approx(0.02 * 0.5 ** 2)
    half = steps_per_epoch // 2  # staircase=false (the default): between epochs the rate decays smoothly
    run.optimizer.iterations.assign(half)
    assert float(run.optimizer.learning_rate) == pytest.approx(0.02 * 0.5 ** (half / steps_per_epoch))


# One SGD step (a batch larger than the training split), no momentum: the weights move by exactly
# learning_rate times the clipped gradient, and a limit this small clips every gradient.
ONE_STEP = ("optimizer=sgd", "optimizer.momentum=0.0", "optimizer.learning_rate=0.1", "batch_size=4096", "epochs=1")


@pytest.mark.parametrize("clip, loop", [("clipnorm", "fit"), ("clipvalue", "custom")])
def test_gradient_clipping_bounds_every_update(make_cfg, runs, clip, loop):
    limit = 1e-3
    train(make_cfg(*TINY, *ONE_STEP, f"loop={loop}", f"optimizer.{clip}={limit}"))
    (run,) = runs
    assert int(run.optimizer.iterations) == 1
    for variable, before, after in zip(run.model.weights, run.initial, run.weights, strict=True):
        step = np.abs(after - before) / 0.1
        if clip == "clipnorm":  # each variable's gradient is scaled to norm `limit`
            assert np.linalg.norm(step) == pytest.approx(limit, rel=1e-3), variable.path
        else:  # each element is cut to [-limit, limit]; the largest ones sit at the limit
            assert step.max() == pytest.approx(limit, rel=1e-3) and (step <= limit * (1 + 1e-3)).all(), variable.path


def _pixels(dataset) -> np.ndarray:
    return np.concatenate([images.numpy() for images, _ in dataset])


@pytest.mark.parametrize("cache", [False, True])
def test_uncached_data_is_read_again_every_epoch_and_cached_data_is_not(tmp_path, cache):
    from trainer import data as data_lib

    folder = make_folder(tmp_path / "pets", size=(6, 6))
    settings = validate(_compose("data=image_folder", f"data.path={folder}", f"data.cache={str(cache).lower()}"))
    data = data_lib.load(**settings["data"], batch_size=4, seed=0)
    first = _pixels(data.test)
    for png in folder.rglob("*.png"):  # every image on disk changes between two epochs
        inverted = 255 - np.asarray(Image.open(png))
        Image.fromarray(inverted.astype(np.uint8), "RGB").save(png)
    second = _pixels(data.test)
    if cache:
        np.testing.assert_array_equal(second, first)
    else:
        np.testing.assert_allclose(second, 1.0 - first, atol=1e-6)  # normalized per batch, to the same values


def test_debug_fast_is_one_epoch_of_batches_of_64(tmp_path, tfds_dir, runs):
    train(run_cfg(tmp_path, "debug=fast", f"data.data_dir={tfds_dir}", *TINY))
    (run,) = runs
    assert len(run.history["loss"]) == 1
    assert int(run.optimizer.iterations) == math.ceil(run.data.split_sizes["train"] / 64)


def test_hydra_full_error_shows_the_traceback_instead_of_one_line(tmp_path):
    env = {**os.environ, "TRAINER_ROOT": str(tmp_path), "HYDRA_FULL_ERROR": "1",
           **without_tensorflow(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "trainer", "model=dynamic", "depth=0"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback (most recent call last):" in result.stderr
    assert "trainer/config/validate.py" in result.stderr  # where the check raised, which the one line never shows
    assert result.stderr.strip().splitlines()[-1] == (
        "trainer.errors.ConfigError: depth must be an integer >= 1. Received: depth=0")
    assert not (tmp_path / "outputs" / "mlflow.db").exists()
