"""loop=fit and loop=custom give the same run: losses, weights, callbacks, NaN handling, precision.

Every test goes through `train(cfg)` (the real data, model, optimizer and callbacks); a spy on
`trainer.loops.get` (tests/helpers.py) keeps each loop's history and final weights for comparison.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

import models
from tests.conftest import tracking_uri
from tests.helpers import nan_in_training_batch_5, runs  # noqa: F401  (runs: a fixture)
from trainer.train import train

# The smallest version of every knob a registry model may have, so each run takes seconds.
TINY = {"width": "8", "filters": "4", "depth": "1", "stages": "1", "widths": "[4]"}
QUICK = ("tracking=none", "batch_size=128", "deterministic=true")


def tiny(name: str) -> list[str]:
    return [f"{knob}={TINY[knob]}" for knob in models.knobs(name) if knob in TINY]


@pytest.mark.parametrize("name", models.names())
def test_fit_and_custom_agree_for_every_model(make_cfg, runs, name):
    for loop in ("fit", "custom"):
        train(make_cfg(f"model={name}", *tiny(name), f"loop={loop}", "epochs=3", *QUICK))
    fit, custom = runs
    assert len(fit.history["loss"]) == 3
    for key in ("loss", "val_loss", "accuracy", "val_accuracy"):
        assert np.round(fit.history[key], 4).tolist() == np.round(custom.history[key], 4).tolist(), key
    assert fit.test.keys() == custom.test.keys()
    for a, b in zip(fit.weights, custom.weights, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_steps_per_execution_keeps_the_loops_equal(make_cfg, runs):
    for loop in ("fit", "custom"):
        train(make_cfg("model=mlp", "width=8", f"loop={loop}", "loop.steps_per_execution=4", "epochs=2", *QUICK))
    fit, custom = runs
    assert np.round(fit.history["loss"], 4).tolist() == np.round(custom.history["loss"], 4).tolist()


@pytest.mark.parametrize("loop", ["fit", "custom"])
def test_each_loop_makes_one_training_iterator_per_epoch(make_cfg, monkeypatch, loop):
    # Each iterator instantiates the augmentation's map function again (~15 ms of CPU); Model.fit
    # without steps_per_epoch made two per epoch. One extra comes as the last epoch ends.
    import tensorflow as tf

    import trainer.data as data_lib

    train_splits, iterated = [], []
    real_load, real_iter = data_lib.load, tf.data.Dataset.__iter__

    def load(*args, **kwargs):
        data = real_load(*args, **kwargs)
        train_splits.append(data.train)
        return data

    def counting_iter(dataset):
        iterated.append(dataset)
        return real_iter(dataset)

    monkeypatch.setattr(data_lib, "load", load)
    monkeypatch.setattr(tf.data.Dataset, "__iter__", counting_iter)
    train(make_cfg("model=mlp", "width=8", f"loop={loop}", "epochs=4", *QUICK))
    (train_split,) = train_splits
    assert sum(d is train_split for d in iterated) == 4 + 1


@pytest.mark.parametrize("loop", ["fit", "custom"])
def test_callbacks_fire_the_same_in_both_loops(make_cfg, runs, tmp_path, loop):
    # A learning rate so small the loss barely moves: early stopping (min_delta 1.0, patience 2)
    # ends the run after epoch 3 of 6, and ReduceLROnPlateau halves the rate after epoch 2.
    train(make_cfg("model=mlp", "width=8", f"loop={loop}", "epochs=6", *QUICK,
                   "optimizer.learning_rate=1e-7", "schedule=reduce_on_plateau", "schedule.monitor=loss",
                   "schedule.patience=0", "schedule.min_lr=0", "callbacks.early_stopping.enabled=true", "callbacks.early_stopping.monitor=loss",
                   "callbacks.early_stopping.min_delta=1.0", "callbacks.early_stopping.patience=2",
                   "callbacks.checkpoint.enabled=true"))
    (run,) = runs
    assert len(run.history["loss"]) == 3
    rates = run.history["learning_rate"]
    assert rates[0] == rates[1] and rates[2] == pytest.approx(rates[1] / 2)
    assert float(run.model.optimizer.learning_rate) == pytest.approx(rates[2] / 2)
    assert (tmp_path / "run" / "best.keras").is_file()


def test_callback_histories_are_equal_across_loops(make_cfg, runs):
    for loop in ("fit", "custom"):
        train(make_cfg("model=mlp", "width=8", f"loop={loop}", "epochs=6", *QUICK,
                       "callbacks.early_stopping.enabled=true", "callbacks.early_stopping.monitor=val_loss",
                       "callbacks.early_stopping.min_delta=0.3", "callbacks.early_stopping.patience=1",
                       "schedule=cosine", "schedule.warmup_fraction=0.2"))
    fit, custom = runs
    assert len(fit.history["loss"]) == len(custom.history["loss"]) < 6  # stopped at the same epoch
    assert np.round(fit.history["val_loss"], 4).tolist() == np.round(custom.history["val_loss"], 4).tolist()


@pytest.mark.parametrize("loop", ["fit", "custom"])
def test_nan_loss_stops_at_its_step_and_fails_the_run(make_cfg, tmp_path, monkeypatch, loop):
    nan_in_training_batch_5(monkeypatch)
    with pytest.raises(FloatingPointError, match=r"loss became nan at step 5 \(epoch 1, batch 5\)"):
        train(make_cfg("model=mlp", "width=8", "activation=tanh", f"loop={loop}", "batch_size=128", "epochs=2"))
    client = MlflowClient(tracking_uri(tmp_path))
    (run,) = client.search_runs(client.get_experiment_by_name("trainer").experiment_id)
    assert run.info.status == "FAILED"
    assert "traceback.txt" in {a.path for a in client.list_artifacts(run.info.run_id)}


@pytest.mark.parametrize("precision", ["mixed_float16", "mixed_bfloat16"])
@pytest.mark.parametrize("loop", ["fit", "custom"])
def test_mixed_precision_trains_in_both_loops(make_cfg, runs, loop, precision):
    import keras

    metrics = train(make_cfg("model=mlp", "width=8", f"loop={loop}", f"precision={precision}", *QUICK))
    assert all(math.isfinite(v) for v in metrics.values())
    (run,) = runs
    hidden = run.model.get_layer("hidden")
    assert hidden.compute_dtype == precision.split("_")[1]
    wrapped = isinstance(run.model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert wrapped == (precision == "mixed_float16")


def test_mlflow_records_the_custom_loop_like_fit(make_cfg, tmp_path):
    train(make_cfg("model=mlp", "width=8", "loop=custom", "epochs=2", "batch_size=128"))
    client = MlflowClient(tracking_uri(tmp_path))
    (run,) = client.search_runs(client.get_experiment_by_name("trainer").experiment_id)
    assert run.info.status == "FINISHED" and run.data.tags["loop"] == "custom"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_loss")] == [0, 1]
    assert {"test_loss", "test_accuracy"} <= set(run.data.metrics)
    assert not list(Path(tmp_path, "outputs", "checkpoints").glob("*"))  # finished: nothing to resume
