"""`Net`: the base every registry model derives from; it yields both variants from one definition.

A registry model defines two static methods and nothing else:
  make_blocks(num_classes, **knobs) -> list/dict of Keras layers (created once)
  forward(blocks, x, training=None) -> output tensor (applies them; creates nothing)
The functional variant wires `forward` over `keras.Input`; the subclassed variant is the class
itself, whose `call` is the same `forward`. Layers are never created inside `call`, and the
block container is `self.blocks`, because `Model.layers` is reserved by Keras.
"""

from __future__ import annotations

import keras

from models import registry


class Net(keras.Model):
    registry_name = "net"  # set by @register

    @staticmethod
    def make_blocks(num_classes, **knobs):  # pragma: no cover - abstract
        raise NotImplementedError

    @staticmethod
    def forward(blocks, x, training=None):  # pragma: no cover - abstract
        raise NotImplementedError

    # -- subclassed variant -------------------------------------------------------------
    def __init__(self, input_shape, num_classes, name=None, trainable=True, dtype=None, **knobs):
        registry.check_knobs(self.registry_name, knobs)
        super().__init__(name=name or self.registry_name, trainable=trainable, dtype=dtype)
        self._net_config = {"input_shape": list(input_shape), "num_classes": int(num_classes), **knobs}
        blocks = self.make_blocks(num_classes, **knobs)
        # A subclassed model lists its weights in the order its layers were first assigned;
        # a functional one in graph order (by distance from the output). Assigning the
        # graph-ordered layers first makes the two lists identical even for branching
        # networks (resnet's shortcuts), so weights copy across variants one to one.
        self._graph_order = _graph_order(self.forward, blocks, input_shape)
        self.blocks = blocks
        # The graph pass above built every block on the real input shape: weights exist
        # before training or loading, and summary() shows shapes and parameter counts.
        self.built = True

    def build(self, input_shape):
        # Only reached if Keras asks a model that is not built yet (it always is, see __init__).
        _graph_order(self.forward, self.blocks, tuple(input_shape)[1:])
        self.built = True

    def call(self, x, training=None):
        return self.forward(self.blocks, x, training=training)

    def get_config(self):
        return {"name": self.name, "trainable": self.trainable, **self._net_config}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        # The config is exactly the constructor's arguments; no nested objects to revive.
        return cls(**config)

    # -- functional variant -------------------------------------------------------------
    @classmethod
    def functional(cls, input_shape, num_classes, **knobs) -> keras.Model:
        registry.check_knobs(cls.registry_name, knobs)
        blocks = cls.make_blocks(num_classes, **knobs)
        inputs = keras.Input(shape=tuple(input_shape), name="image")
        outputs = cls.forward(blocks, inputs)
        return keras.Model(inputs, outputs, name=cls.registry_name)


def _graph_order(forward, blocks, input_shape) -> list:
    """The layers `forward` applies, in the order a functional model of them lists its layers."""
    inputs = keras.Input(shape=tuple(input_shape))
    graph = keras.Function(inputs, forward(blocks, inputs))
    return [op for op in graph.operations if isinstance(op, keras.layers.Layer)
            and not isinstance(op, keras.layers.InputLayer)]


def apply_in_order(blocks, x, training=None):
    """The forward pass of a plain stack: each block in list order."""
    for block in blocks:
        x = block(x, training=training)
    return x
