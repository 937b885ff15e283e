"""`Definition`: what a registry model is, in plain Python: its knobs, its layers, their wiring.

A model is a dataclass deriving from `Definition`. Its fields are its knobs, documented in the
class docstring's Args and checked in `__post_init__` (so `Dynamic(depth=0)` fails in one line);
`make_blocks` creates its layers from the Keras factories it is handed, and `forward` applies
them. Nothing here imports Keras, so the config validator checks a model's knobs with the model's
own rules before TensorFlow starts; models/net.py turns a definition into either variant.
"""

from __future__ import annotations

import dataclasses


class Definition:
    registry_name = "definition"  # set by @register

    def knobs(self) -> dict:
        """The knob values, as checked (the keyword arguments that rebuild this model)."""
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}

    def make_blocks(self, blocks, num_classes: int):  # pragma: no cover - abstract
        """The model's layers, each created once: a list, or a dict of lists for a model whose
        `forward` is not a plain stack. `blocks` is models/blocks.py, the shared layer factories."""
        raise NotImplementedError

    def forward(self, built, x, training=None):
        """Apply the layers `make_blocks` created (creating none). The default is a plain stack."""
        for layer in built:
            x = layer(x, training=training)
        return x
