"""Bad loop/optimizer/schedule/strategy/precision input: one line naming the key, the value and what
is allowed, found before TensorFlow is imported."""

from __future__ import annotations

import pytest

from trainer.config import training as loop_config
from trainer.config.validate import validate
from trainer.errors import ConfigError


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["optimizer.name=adagrad"], "optimizer.name must be one of adam, adamw, sgd, rmsprop. Received: optimizer.name=adagrad"),
        (["loop.name=manual"], "loop.name must be one of fit, custom. Received: loop.name=manual"),
        (["schedule.name=step"], "schedule.name must be one of constant, cosine, exponential, reduce_on_plateau."),
        (["strategy.name=tpu"], "strategy.name must be one of default, mirrored, multi_worker. Received: strategy.name=tpu"),
        (["precision=float64"], "precision must be one of float32, mixed_float16, mixed_bfloat16. Received: precision=float64"),
        (["deterministic=maybe"], "deterministic must be true or false. Received: deterministic=maybe"),
        (["loop.jit_compile=1"], "loop.jit_compile must be one of auto, true, false. Received: loop.jit_compile=1"),
        (["loop.steps_per_execution=0"], "loop.steps_per_execution must be auto or an integer >= 1. Received: loop.steps_per_execution=0"),
        (["loop.steps_per_execution=fast"], "loop.steps_per_execution must be auto or an integer >= 1. Received: loop.steps_per_execution=fast"),
        (["optimizer=sgd", "optimizer.momentum=1.5"], "optimizer.momentum must be a number in [0.0, 1.0)"),
        (["optimizer.clipnorm=0"], "optimizer.clipnorm must be a finite number > 0.0. Received: optimizer.clipnorm=0"),
        (["schedule.warmup_fraction=1"], "schedule.warmup_fraction must be a number in [0.0, 1.0). Received: schedule.warmup_fraction=1"),
        (["schedule=exponential", "schedule.decay_rate=0"], "schedule.decay_rate must be a number in (0.0, 1.0]"),
        (["callbacks.early_stopping.monitor=val_acc"],
         "callbacks.early_stopping.monitor must be one of loss, accuracy, val_loss, val_accuracy. Received:"),
        (["callbacks.progress=verbose"], "callbacks.progress must be one of bar, epoch, none"),
        (["strategy=mirrored", "strategy.devices=[/cpu:0,/cpu:1]", "batch_size=33"],
         "batch_size must be divisible by the number of replicas (2, strategy=mirrored)"),
        (["resume.enabled=yes"], "resume.enabled must be true or false. Received: resume.enabled=yes"),
        (["resume.every_seconds=-1"], "resume.every_seconds must be a finite number >= 0. Received: resume.every_seconds=-1"),
    ],
)
def test_bad_loop_values_name_key_value_and_allowed(make_cfg, overrides, expected):
    with pytest.raises(ConfigError) as err:
        validate(make_cfg(*overrides))
    assert str(err.value).startswith(expected), str(err.value)
    assert "\n" not in str(err.value)


def test_multi_worker_without_tf_config_is_explained(make_cfg, monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ConfigError, match="strategy=multi_worker needs TF_CONFIG"):
        validate(make_cfg("strategy=multi_worker"))


def test_multi_worker_batch_is_checked_against_tf_config(make_cfg, monkeypatch):
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}, "task": {"type": "worker", "index": 0}}')
    assert validate(make_cfg("strategy=multi_worker", "batch_size=64"))["strategy"]["name"] == "multi_worker"
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ConfigError, match="TF_CONFIG must be JSON"):
        validate(make_cfg("strategy=multi_worker"))


def test_every_option_of_the_new_groups_validates(make_cfg):
    for overrides in (["loop=custom"], ["optimizer=adamw"], ["optimizer=sgd"], ["optimizer=rmsprop"],
                      ["schedule=cosine", "epochs=3"], ["schedule=exponential"], ["schedule=reduce_on_plateau"],
                      ["strategy=mirrored"], ["precision=mixed_float16"], ["precision=mixed_bfloat16"],
                      ["deterministic=true"]):
        validate(make_cfg(*overrides))


def test_monitors_are_the_metrics_the_loops_report():
    from trainer.loops import compile as compile_

    names = ["loss", *(m.name for m in compile_.build_metrics())]
    assert set(loop_config.MONITORS) == {*names, *(f"val_{n}" for n in names)}


@pytest.mark.parametrize("args, expected", [
    (["optimizer=adagrad"], "optimizer must be one of adam, adamw, rmsprop, sgd. Received: optimizer=adagrad"),
    (["schedule=step"], "schedule must be one of constant, cosine, exponential, reduce_on_plateau"),
    (["strategy=tpu"], "strategy must be one of default, mirrored, multi_worker. Received: strategy=tpu"),
])
def test_unknown_group_option_lists_the_known_ones(cli, tmp_path, args, expected):
    result = cli(*args)
    assert result.returncode == 2 and expected in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
