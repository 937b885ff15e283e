"""The model registry: one decorator keys a model's definition by name, rejecting duplicates.

Plain Python on purpose: neither this module nor the definitions it holds import Keras, so the
config validator checks a model's knobs, with the model's own rules, before TensorFlow starts.
models/net.py builds the Keras models.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib

from models.definition import Definition
from trainer.config import checks
from trainer.errors import RegistryError

_REGISTRY: dict[str, type[Definition]] = {}


def register(name: str):
    """Class decorator for a `Definition` dataclass: `@register("mlp") @dataclass class Mlp(Definition)`.

    Rejects duplicates so two modules cannot silently fight over one name.
    """

    def decorator(cls):
        if not (isinstance(cls, type) and issubclass(cls, Definition) and dataclasses.is_dataclass(cls)):
            raise RegistryError(f"@register('{name}') takes a dataclass deriving from models.Definition."
                                f" Received: {getattr(cls, '__qualname__', cls)}")
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise RegistryError(
                f"model '{name}' is already registered by {_REGISTRY[name].__module__}."
                f"{_REGISTRY[name].__qualname__}; pick another name for {cls.__module__}."
                f"{cls.__qualname__}"
            )
        cls.registry_name = name
        _REGISTRY[name] = cls
        return cls

    return decorator


def import_model_module(module: str) -> None:
    """Import the module named by a model YAML's `model.module`, so its `@register` runs."""
    try:
        importlib.import_module(module)
    except ImportError as err:
        raise RegistryError(
            f"model.module must name an importable Python module (run from the folder that holds it"
            f" or put that folder on PYTHONPATH); importing it failed with: {err}. Received: model.module={module}"
        ) from err


def names() -> list[str]:
    return sorted(_REGISTRY)


def get(name: str) -> type[Definition]:
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, _REGISTRY, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise RegistryError(
            f"model must be one of {', '.join(names())}. Received: model={checks.shorten(name)}.{hint}"
            " (A model of your own must be imported first: set model.module in its YAML.)"
        )
    return _REGISTRY[name]


def knobs(name: str) -> list[str]:
    """The model's knobs, in the order its definition declares them."""
    return [field.name for field in dataclasses.fields(get(name))]


def available() -> dict[str, list[str]]:
    """Every registered model with its knobs: `{"dynamic": ["depth", "width", ...]}`."""
    return {name: knobs(name) for name in names()}


def define(name: str, values: dict) -> Definition:
    """Model `name`'s definition with these knob values, checked by the model's own rules."""
    known = knobs(name)
    unknown = sorted(set(values) - set(known))
    missing = [k for k in known if k not in values]
    if unknown:
        raise RegistryError(
            f"{unknown[0]} is not a knob of model '{name}'; its knobs are: {', '.join(known)}."
            f" Received: {unknown[0]}={values[unknown[0]]}"
        )
    if missing:
        raise RegistryError(
            f"model '{name}' needs a value for {', '.join(missing)} (its knobs are:"
            f" {', '.join(known)}). Received only: {', '.join(sorted(values)) or 'nothing'}"
        )
    return get(name)(**values)
