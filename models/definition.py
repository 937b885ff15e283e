"""`Definition`: what a registry model is, in plain Python: its knobs, its layers, their wiring.

A model is a dataclass deriving from `Definition`. Its fields are its knobs, documented in the
class docstring's Args and checked in `__post_init__` (so `Dynamic(depth=0)` fails in one line);
`make_blocks` creates its layers from the Keras factories it is handed, and `forward` applies
them. Nothing here imports Keras, so the config validator checks a model's knobs with the model's
own rules before TensorFlow starts; models/net.py turns a definition into either variant.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import sys


class Definition:
    registry_name = "definition"  # set by @register

    @classmethod
    def summary(cls) -> str:
        """What the model is, in one line: the class docstring's text before Args, else the first
        line of its module's docstring (without a leading "`name`:")."""
        text = inspect.cleandoc(cls.__doc__ or "").partition("Args:")[0].strip()
        if not text:
            module = sys.modules.get(cls.__module__)
            text = inspect.cleandoc(getattr(module, "__doc__", None) or "")
        line = text.split("\n\n")[0].splitlines()[0] if text else ""
        return re.sub(rf"^`?{re.escape(cls.registry_name)}`?:\s*", "", line.strip())

    @classmethod
    def knob_docs(cls) -> dict[str, str]:
        """{knob: what it means and accepts}, from the class docstring's Args (Google style: one
        `name: text` per knob, continuation lines indented deeper). `--help` prints them."""
        lines = inspect.cleandoc(cls.__doc__ or "").partition("Args:")[2].splitlines()
        docs, name, indent = {}, None, None
        for line in lines:
            if not line.strip():
                continue
            depth = len(line) - len(line.lstrip())
            indent = depth if indent is None else indent
            if depth < indent:
                break
            match = re.fullmatch(r"(\w+)\s*(?:\([^)]*\))?:\s*(.*)", line.strip())
            if depth == indent and match:
                name = match.group(1)
                docs[name] = match.group(2)
            elif name is not None:
                docs[name] = f"{docs[name]} {line.strip()}".strip()
        return docs

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
