"""The registry, parametrized over every model x both variants x a few knob settings: the two
variants are the same network (weights copy across and give the same outputs), and bad knobs
fail in one line naming what was received and what is allowed."""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import pytest

import models
from models import net
from trainer.config.validate import validate
from trainer.errors import ConfigError

INPUT_SHAPE = (8, 8, 1)
NUM_CLASSES = 10

# Tiny values for every knob a registry model may take (width 8, depth 2, small input), so the
# whole grid runs in seconds. A new model with a new knob fails `knob_values` until it is added.
TINY = {"width": 8, "depth": 2, "filters": 4, "stages": 2, "widths": [4, 8], "dropout": 0.0,
        "activation": "relu", "l2": 0.0}
SETTINGS = {
    "tiny": {},
    "l2-tanh-dropout": {"l2": 1e-3, "activation": "tanh", "dropout": 0.25},
    "deeper": {"depth": 3, "stages": 3, "widths": [4, 8, 8], "filters": 2, "width": 4},
}


def knob_values(name: str, setting: str) -> dict:
    values = {**TINY, **SETTINGS[setting]}
    missing = [k for k in models.knobs(name) if k not in values]
    if missing:
        pytest.fail(f"tests/test_models.py TINY needs a tiny value for knob(s) {missing} of model '{name}'")
    return {k: values[k] for k in models.knobs(name)}


def build_pair(name: str, setting: str):
    knobs = knob_values(name, setting)
    keras.utils.set_random_seed(0)
    functional = net.build(name, "functional", input_shape=INPUT_SHAPE, num_classes=NUM_CLASSES, **knobs)
    subclassed = net.build(name, "subclassed", input_shape=INPUT_SHAPE, num_classes=NUM_CLASSES, **knobs)
    return functional, subclassed, knobs


def random_images(n: int = 5) -> np.ndarray:
    return np.random.default_rng(0).random((n, *INPUT_SHAPE), dtype=np.float32)


GRID = [(name, setting) for name in models.names() for setting in SETTINGS]


@pytest.mark.parametrize("name, setting", GRID)
def test_variants_are_the_same_network(name, setting):
    functional, subclassed, _ = build_pair(name, setting)
    assert isinstance(subclassed, net.Net) and not isinstance(functional, net.Net)
    assert type(subclassed) is net.subclass(name) and type(subclassed).__name__ == models.get(name).__name__
    assert functional.count_params() == subclassed.count_params() > 0
    assert [w.shape for w in functional.trainable_weights] == [w.shape for w in subclassed.trainable_weights]
    # Layer names are shared too, so the two variants' weights line up path by path.
    assert [w.path for w in functional.weights] == [w.path for w in subclassed.weights]


@pytest.mark.parametrize("name, setting", GRID)
def test_copied_weights_give_identical_finite_probabilities(name, setting):
    functional, subclassed, knobs = build_pair(name, setting)
    subclassed.set_weights(functional.get_weights())
    x = random_images()
    probabilities = keras.ops.convert_to_numpy(functional(x, training=False))
    assert probabilities.shape == (len(x), NUM_CLASSES) and np.isfinite(probabilities).all()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(subclassed(x, training=False), probabilities, atol=1e-6, rtol=0)
    if not knobs.get("dropout"):
        # Training mode too (batch-norm uses batch statistics); dropout would draw different masks.
        np.testing.assert_allclose(subclassed(x, training=True), functional(x, training=True), atol=1e-6, rtol=0)


@pytest.mark.parametrize("name, setting", GRID)
def test_config_round_trip(name, setting):
    functional, subclassed, knobs = build_pair(name, setting)
    config = subclassed.get_config()
    assert config == {"name": name, "trainable": True, "input_shape": list(INPUT_SHAPE),
                      "num_classes": NUM_CLASSES, **knobs}
    revived = type(subclassed).from_config(config)
    assert revived.get_config() == config
    assert [w.path for w in revived.weights] == [w.path for w in subclassed.weights]

    revived_functional = keras.Model.from_config(functional.get_config())
    assert revived_functional.get_config() == functional.get_config()
    assert revived_functional.count_params() == functional.count_params()


@pytest.mark.parametrize("name", models.names())
def test_l2_weight_decay_appears_in_model_losses(name):
    if "l2" not in models.knobs(name):
        pytest.skip(f"{name} has no l2 knob")
    for setting, expect_losses in (("tiny", False), ("l2-tanh-dropout", True)):
        for model in build_pair(name, setting)[:2]:
            model(random_images(), training=True)
            assert bool(model.losses) is expect_losses, (name, setting)


def test_resnet_weight_order_is_the_graph_order_not_the_definition_order():
    """The projection shortcut's conv sits between the main path's conv_b and bn_b in a functional
    model; the subclassed variant must list its weights that way too, or weights cannot copy."""
    functional, subclassed, _ = build_pair("resnet", "tiny")
    paths = [w.path for w in subclassed.weights if w.path.startswith("stage1_block0")]
    assert paths.index("stage1_block0_conv_b/kernel") < paths.index("stage1_block0_shortcut_conv/kernel") \
        < paths.index("stage1_block0_bn_b/gamma")
    definition_order = [layer.name for layer in subclassed.blocks["residual"][2].values()]
    assert definition_order.index("stage1_block0_bn_b") < definition_order.index("stage1_block0_shortcut_conv")


# -- the public API ------------------------------------------------------------------------

def test_available_lists_every_model_with_its_knobs():
    available = models.available()
    assert {"mlp", "conditional", "dynamic", "cnn", "resnet"} <= set(available)
    assert available["cnn"] == ["filters", "depth", "width", "dropout", "activation", "l2"]
    assert available["resnet"] == ["stages", "widths", "depth", "dropout", "activation", "l2"]
    assert models.names() == sorted(available)


def test_unknown_knob_lists_the_knobs():
    with pytest.raises(models.RegistryError) as err:
        net.build("cnn", "functional", input_shape=INPUT_SHAPE, num_classes=10,
                  **knob_values("cnn", "tiny"), kernel=5)
    assert str(err.value) == ("kernel is not a knob of model 'cnn'; its knobs are: filters, depth, width, dropout,"
                              " activation, l2. Received: kernel=5")


def test_missing_knob_names_it():
    knobs = knob_values("resnet", "tiny")
    del knobs["widths"]
    with pytest.raises(models.RegistryError, match="model 'resnet' needs a value for widths"):
        net.build("resnet", "subclassed", input_shape=INPUT_SHAPE, num_classes=10, **knobs)


def test_unknown_variant_lists_the_variants():
    with pytest.raises(models.RegistryError) as err:
        net.build("cnn", "subclased", input_shape=INPUT_SHAPE, num_classes=10, **knob_values("cnn", "tiny"))
    assert str(err.value) == ("model.variant must be one of functional, subclassed."
                              " Received: model.variant=subclased")


def test_resnet_definition_rejects_widths_that_do_not_match_stages():
    knobs = {**knob_values("resnet", "tiny"), "widths": [4, 8, 16]}
    with pytest.raises(ConfigError) as err:
        net.build("resnet", "functional", input_shape=INPUT_SHAPE, num_classes=10, **knobs)
    assert str(err.value) == ("widths must list one width per stage (2 integers >= 1, since stages=2)."
                              " Received: widths=[4, 8, 16]")


def test_register_rejects_a_second_class_under_a_taken_name():
    with pytest.raises(models.RegistryError, match="model 'cnn' is already registered by models.cnn.Cnn"):
        @models.register("cnn")
        @dataclasses.dataclass
        class Impostor(models.Definition):  # noqa: F841
            pass
    assert models.get("cnn").__name__ == "Cnn"


def test_subclassed_summary_shows_shapes_and_parameter_counts():
    from trainer.tracking.export import summary_text

    _, subclassed, _ = build_pair("resnet", "tiny")
    text = summary_text(subclassed)
    assert "unbuilt" not in text and "?" not in text
    assert "(None, 4, 4, 8)" in text and f"Total params: {subclassed.count_params():,}" in text


# -- bad knob values, caught before TensorFlow is needed (trainer/config/validate.py) ----------------

@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["model=cnn", "dropout=1.5"], "dropout must be a number in [0.0, 1.0). Received: dropout=1.5"),
        (["model=cnn", "filters=0"], "filters must be an integer >= 1. Received: filters=0"),
        (["model=resnet", "stages=two"], "stages must be an integer >= 1. Received: stages=two"),
        (["model=resnet", "widths=[16,0,64]"],
         "widths must be a list of integers >= 1, one per stage, such as [16,32,64]. Received: widths=[16, 0, 64]"),
        (["model=resnet", "widths=16"],
         "widths must be a list of integers >= 1, one per stage, such as [16,32,64]. Received: widths=16"),
        (["model=resnet", "widths=[16,32]"],
         "widths must list one width per stage (3 integers >= 1, since stages=3). Received: widths=[16, 32]"),
        (["model=cnn", "widths=[8]"], "widths is not a knob of model 'cnn'; its knobs are: filters, depth, width,"
                                      " dropout, activation, l2. Received: widths=[8]"),
        (["model=resnet", "model.variant=subclased"],
         "model.variant must be one of functional, subclassed. Received: model.variant=subclased"),
        (["model.module=no_such_pkg.models"], "model.module must be an importable Python module"),
        (["model.module=not a module"], "model.module must be null or a dotted Python module name"),
    ],
)
def test_bad_knobs_fail_in_one_line(make_cfg, overrides, expected):
    with pytest.raises(ConfigError) as err:
        validate(make_cfg(*overrides))
    assert str(err.value).startswith(expected)
    assert "\n" not in str(err.value)


def test_resnet_knobs_from_the_command_line_are_plain_values(make_cfg):
    knobs = validate(make_cfg("model=resnet", "stages=2", "widths=[8,16]", "depth=1"))["model"]["knobs"]
    assert knobs == {"stages": 2, "widths": [8, 16], "depth": 1, "dropout": 0.0, "activation": "relu", "l2": 0.0001}
    assert type(knobs["widths"]) is list
