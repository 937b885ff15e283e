"""Both variants of a registry model, built from its definition's one `make_blocks`/`forward` pair.

    from models import net
    net.build("dynamic", "subclassed", input_shape=(8, 8, 1), num_classes=10,
              depth=5, width=64, activation="relu", dropout=0.0, l2=0.0)

The functional variant wires `forward` over `keras.Input`; the subclassed variant is an instance
of the model's `Net` subclass (a `keras.Model` named after the definition, registered with Keras
as `trainer>{name}`), whose `call` is the same `forward`. Layers are never created inside `call`,
and the block container is `self.blocks`, because `Model.layers` is reserved by Keras.
"""

from __future__ import annotations

import functools

import keras

from models import blocks as block_factories
from models import losses  # noqa: F401  (registers the label-smoothing loss saved models are compiled with)
from models import registry
from models.definition import Definition
from trainer.config.choices import VARIANTS
from trainer.errors import RegistryError

KERAS_PACKAGE = "trainer"  # registered Keras name of a model class: "trainer>resnet"


class Net(keras.Model):
    """The subclassed variant. Its subclasses (one per registry name, made by `subclass`) only
    name the definition; the constructor's arguments are exactly what `get_config` returns."""

    registry_name = "net"

    def __init__(self, input_shape, num_classes, name=None, trainable=True, dtype=None, **knobs):
        definition = registry.define(self.registry_name, knobs)
        super().__init__(name=name or self.registry_name, trainable=trainable, dtype=dtype)
        self.definition = definition
        self._net_config = {"input_shape": list(input_shape), "num_classes": int(num_classes), **definition.knobs()}
        built = definition.make_blocks(block_factories, num_classes)
        # A subclassed model lists its weights in the order its layers were first assigned;
        # a functional one in graph order (by distance from the output). Assigning the
        # graph-ordered layers first makes the two lists identical even for branching
        # networks (resnet's shortcuts), so weights copy across variants one to one.
        self._graph_order = _graph_order(definition, built, input_shape)
        self.blocks = built
        # The graph pass above built every block on the real input shape: weights exist
        # before training or loading, and summary() shows shapes and parameter counts.
        self.built = True

    def build(self, input_shape):
        # Only reached if Keras asks a model that is not built yet (it always is, see __init__).
        _graph_order(self.definition, self.blocks, tuple(input_shape)[1:])
        self.built = True

    def call(self, x, training=None):
        return self.definition.forward(self.blocks, x, training=training)

    def get_config(self):
        return {"name": self.name, "trainable": self.trainable, **self._net_config}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        # The config is exactly the constructor's arguments; no nested objects to revive.
        return cls(**config)


@functools.cache
def subclass(name: str) -> type[Net]:
    """The `Net` subclass of registry model `name`, registered with Keras so that `.keras` files
    holding it load back in safe mode (the registry name is unique, so two model modules can
    reuse a class name)."""
    definition = registry.get(name)
    cls = type(definition.__name__, (Net,), {
        "registry_name": name, "__module__": definition.__module__, "__doc__": definition.__doc__,
        "__qualname__": definition.__qualname__,
    })
    return keras.saving.register_keras_serializable(package=KERAS_PACKAGE, name=name)(cls)


def register_all() -> None:
    """Make every registered model's `Net` subclass known to Keras (before loading a `.keras` file)."""
    for name in registry.names():
        subclass(name)


def functional(definition: Definition, input_shape, num_classes: int) -> keras.Model:
    built = definition.make_blocks(block_factories, num_classes)
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    return keras.Model(inputs, definition.forward(built, inputs), name=definition.registry_name)


def build(name: str, variant: str, *, input_shape, num_classes: int, **knobs) -> keras.Model:
    """Build registry model `name` as `variant` ('functional' or 'subclassed'); the knobs are
    checked by the model's own rules first. The subclassed variant is built on `input_shape`,
    so `summary()` shows shapes and parameter counts."""
    if variant not in VARIANTS:
        raise RegistryError(
            f"model.variant must be one of {', '.join(VARIANTS)}. Received: model.variant={variant}"
        )
    if variant == "functional":
        return functional(registry.define(name, knobs), input_shape, num_classes)
    return subclass(name)(input_shape=tuple(input_shape), num_classes=num_classes, **knobs)


def _graph_order(definition: Definition, built, input_shape) -> list:
    """The layers `forward` applies, in the order a functional model of them lists its layers."""
    inputs = keras.Input(shape=tuple(input_shape))
    graph = keras.Function(inputs, definition.forward(built, inputs))
    return [op for op in graph.operations if isinstance(op, keras.layers.Layer)
            and not isinstance(op, keras.layers.InputLayer)]
