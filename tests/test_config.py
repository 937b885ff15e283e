"""Config validation: every bad value is one line naming the key, the value and what is allowed."""

from __future__ import annotations

import pytest

from trainer.config.choices import ACTIVATIONS
from trainer.config.validate import knob_slots, validate
from trainer.errors import ConfigError


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["model=dynamic", "depth=0"], "depth must be an integer >= 1. Received: depth=0"),
        (["model=dynamic", "depth=-2"], "depth must be an integer >= 1. Received: depth=-2"),
        (["model=dynamic", "depth=abc"], "depth must be an integer >= 1. Received: depth=abc"),
        (["model=dynamic", "depth=2.5"], "depth must be an integer >= 1. Received: depth=2.5"),
        (["model=mlp", "depth=5"], "depth is not a knob of model 'mlp'; its knobs are: width, activation, l2. Received: depth=5"),
        (["model=conditional", "dropout=1.5"], "dropout must be a number in [0.0, 1.0). Received: dropout=1.5"),
        (["activation=relux"], "activation must be one of"),
        (["model.variant=subclased"], "model.variant must be one of functional, subclassed. Received: model.variant=subclased"),
        (["epochs=0"], "epochs must be an integer >= 1. Received: epochs=0"),
        (["batch_size=x"], "batch_size must be an integer >= 1. Received: batch_size=x"),
        (["optimizer.learning_rate=-1"], "optimizer.learning_rate must be a finite number > 0.0. Received: optimizer.learning_rate=-1"),
        (["data.validation_fraction=1.0"], "data.validation_fraction must be a number in (0.0, 1.0). Received: data.validation_fraction=1.0"),
    ],
)
def test_bad_values_name_key_value_and_allowed(make_cfg, overrides, expected):
    with pytest.raises(ConfigError) as err:
        validate(make_cfg(*overrides))
    assert str(err.value).startswith(expected)
    assert "\n" not in str(err.value)


def test_knobs_come_from_the_selected_model(make_cfg):
    settings = validate(make_cfg("model=dynamic", "depth=5"))
    assert settings["model"]["knobs"] == {"depth": 5, "width": 64, "activation": "relu", "dropout": 0.0, "l2": 0.0}
    assert settings["model"]["name"] == "dynamic"
    assert "hydra" not in settings and "depth" not in settings


def test_each_model_yaml_gives_a_default_for_exactly_its_models_knobs(make_cfg):
    """conf/model/<name>.yaml gives a value to each knob of the model's definition and to no other
    knob slot, and conf/config.yaml's slots are the built-in models' knobs."""
    import models

    slots = set(knob_slots())
    assert slots == {k for name in models.names() for k in models.knobs(name)}
    for name in models.names():
        cfg = make_cfg(f"model={name}")
        assert {k for k in slots if cfg[k] is not None} == set(models.knobs(name)), name


def test_activation_names_are_real_keras_activations():
    import keras

    for name in ACTIVATIONS:
        assert callable(keras.activations.get(name)), name
