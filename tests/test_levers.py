"""`loop.steps_per_execution=auto`, the default, changes speed only: the same per-epoch metrics,
callbacks, NaN step and test metrics as one step per call, in both loops (trainer/loops/execution.py).
Its speed is measured by `python -m benchmarks --only levers`, never here."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from tests.helpers import nan_in_training_batch_5, runs  # noqa: F401  (runs: a fixture)
from trainer.config.validate import validate
from trainer.loops import callbacks as callbacks_lib
from trainer.loops import execution
from trainer.tracking.tracker import NoTracker, StepLogger
from trainer.train import train

# Digits at the default batch size: 41 training steps, so auto makes calls of 21 and 20 steps.
SMALL = ("model=mlp", "width=8", "tracking=none", "deterministic=true")


def resolve(value="auto", *, steps=41, verbose=2, callbacks=(), replicas=1, loop="fit"):
    return execution.resolve(value, steps=steps, verbose=verbose, callbacks=list(callbacks), replicas=replicas,
                             loop=loop)


@pytest.fixture
def resolved(monkeypatch):
    """The steps per call each loop run of the test resolved."""
    seen = []
    real = execution.resolve

    def spy(*args, **kwargs):
        seen.append(real(*args, **kwargs))
        return seen[-1]

    monkeypatch.setattr(execution, "resolve", spy)
    return seen


def test_auto_splits_an_epoch_into_equal_calls_of_at_most_32_steps():
    assert [resolve(steps=s) for s in (1, 11, 32, 33, 41, 64, 65)] == [1, 11, 32, 17, 21, 32, 22]
    assert resolve(8) == 8 and resolve(1) == 1  # a number is used as given


def test_auto_keeps_one_step_per_call_where_something_watches_each_step(make_cfg, tmp_path):
    class PerBatch(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            pass

    assert resolve(verbose=1) == 1  # progress=bar moves once per call
    assert resolve(callbacks=[StepLogger(NoTracker(), every=5)]) == 1  # tracking.log_every_n_steps
    assert resolve(callbacks=[PerBatch()]) == 1
    assert resolve(callbacks=[keras.callbacks.ModelCheckpoint(str(tmp_path / "m.keras"), save_freq=5)]) == 1
    assert resolve(steps=None) == 1  # an epoch of unknown length
    assert resolve(replicas=2, loop="fit") == 1  # Keras's fit cannot run several steps per call there
    assert resolve(replicas=2, loop="custom") == 21
    # Every callback the framework builds acts at epoch ends (or names the step exactly): auto stays on.
    settings = validate(make_cfg("callbacks.early_stopping.enabled=true", "callbacks.checkpoint.enabled=true",
                                 "schedule=reduce_on_plateau"))
    built = callbacks_lib.build(settings["callbacks"], settings["schedule"], run_dir=str(tmp_path), loggers=[])
    assert resolve(callbacks=built) == 21


@pytest.mark.parametrize("loop", ["fit", "custom"])
def test_auto_gives_the_same_epochs_and_callbacks_as_one_step_per_call(make_cfg, runs, resolved, tmp_path, loop):
    # Early stopping on val_loss (patience 1, min_delta 0.3) ends the 6-epoch run early, ReduceLROnPlateau
    # changes the rate, and the checkpoint keeps the best model: all at epoch ends.
    for spe in ("1", "auto"):
        train(make_cfg(*SMALL, f"loop={loop}", f"loop.steps_per_execution={spe}", "epochs=6",
                       "callbacks.early_stopping.enabled=true", "callbacks.early_stopping.min_delta=0.3",
                       "callbacks.early_stopping.patience=1", "callbacks.checkpoint.enabled=true",
                       "schedule=reduce_on_plateau", "schedule.monitor=loss", "schedule.patience=0"))
    assert resolved == [1, 21]
    one, auto = runs
    assert one.history.keys() == auto.history.keys()
    assert 1 < len(auto.history["loss"]) < 6  # stopped early, at the same epoch
    for key in one.history:
        np.testing.assert_allclose(auto.history[key], one.history[key], rtol=1e-6, err_msg=key)
    np.testing.assert_allclose(list(auto.test.values()), list(one.test.values()), rtol=1e-6)
    for a, b in zip(auto.weights, one.weights, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    assert (tmp_path / "run" / "best.keras").is_file()
    if loop == "fit":
        assert (one.model.steps_per_execution, auto.model.steps_per_execution) == (1, 21)


@pytest.mark.parametrize("loop", ["fit", "custom"])
def test_progress_bar_keeps_one_step_per_call(make_cfg, runs, resolved, capsys, loop):
    train(make_cfg(*SMALL, f"loop={loop}", "callbacks.progress=bar"))
    assert resolved == [1]
    assert "41/41" in capsys.readouterr().out


@pytest.mark.parametrize("spe", ["auto", "4"])
@pytest.mark.parametrize("loop", ["fit", "custom"])
def test_nan_loss_names_its_step_with_several_steps_per_call(make_cfg, monkeypatch, resolved, loop, spe):
    nan_in_training_batch_5(monkeypatch)  # inside the first call of several steps
    with pytest.raises(FloatingPointError, match=r"loss became nan at step 5 \(epoch 1, batch 5\)"):
        train(make_cfg("model=mlp", "width=8", "activation=tanh", f"loop={loop}", "tracking=none", "epochs=2",
                       f"loop.steps_per_execution={spe}"))
    assert resolved == [21 if spe == "auto" else 4]
