"""The model registry: one decorator keys a network by name; `build` makes either variant.

Plain Python on purpose: importing this module does not import Keras, so the config
validator can use the same error messages before TensorFlow starts.
"""

from __future__ import annotations

import difflib
import importlib
import inspect

from trainer.config.choices import VARIANTS
from trainer.errors import RegistryError

KERAS_PACKAGE = "trainer"  # registered Keras name of a model class: "trainer>resnet"

_REGISTRY: dict[str, type] = {}


def register(name: str):
    """Class decorator: `@register("mlp") class Mlp(Net): ...`.

    Rejects duplicates so two modules cannot silently fight over one name, and registers
    the class with Keras as `trainer>{name}` so `.keras` files load back in safe mode (the
    registry name is unique, so two model modules can reuse a class name).
    """

    def decorator(cls):
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise RegistryError(
                f"model '{name}' is already registered by {_REGISTRY[name].__module__}."
                f"{_REGISTRY[name].__qualname__}; pick another name for {cls.__module__}."
                f"{cls.__qualname__}"
            )
        import keras  # deferred: only model modules (which import Keras anyway) call this

        keras.saving.register_keras_serializable(package=KERAS_PACKAGE, name=name)(cls)
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


def get(name: str) -> type:
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, _REGISTRY, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise RegistryError(
            f"model must be one of {', '.join(names())}. Received: model={name}.{hint}"
            " (A model of your own must be imported first: set model.module in its YAML.)"
        )
    return _REGISTRY[name]


def knobs(name: str) -> list[str]:
    """The keyword arguments a model takes besides input shape and class count."""
    params = inspect.signature(get(name).make_blocks).parameters
    return [p for p in params if p != "num_classes"]


def available() -> dict[str, list[str]]:
    """Every registered model with its knobs: `{"dynamic": ["depth", "width", ...]}`."""
    return {name: knobs(name) for name in names()}


def check_knobs(name: str, given: dict) -> None:
    known = knobs(name)
    unknown = sorted(set(given) - set(known))
    missing = [k for k in known if k not in given]
    if unknown:
        raise RegistryError(
            f"{unknown[0]} is not a knob of model '{name}'; its knobs are: {', '.join(known)}."
            f" Received: {unknown[0]}={given[unknown[0]]}"
        )
    if missing:
        raise RegistryError(
            f"model '{name}' needs a value for {', '.join(missing)} (its knobs are:"
            f" {', '.join(known)}). Received only: {', '.join(sorted(given)) or 'nothing'}"
        )


def build(name: str, variant: str, *, input_shape, num_classes: int, **knobs_):
    """Build registry model `name` as `variant` ('functional' or 'subclassed').

    Both variants come from the same `make_blocks`/`forward` pair of the registered class,
    so they are the same network; the subclassed one is built on `input_shape` so that
    `summary()` shows shapes and parameter counts.
    """
    cls = get(name)
    if variant not in VARIANTS:
        raise RegistryError(
            f"model.variant must be one of {', '.join(VARIANTS)}. Received: model.variant={variant}"
        )
    check_knobs(name, knobs_)
    if variant == "functional":
        return cls.functional(input_shape=tuple(input_shape), num_classes=num_classes, **knobs_)
    model = cls(input_shape=tuple(input_shape), num_classes=num_classes, **knobs_)
    return model
