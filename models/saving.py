"""`load(path)`: `keras.models.load_model` (safe mode kept), with a one-line error when the file
holds a model class that is not registered in this process."""

from __future__ import annotations

import json
import re
import zipfile

import keras

from models import net, registry


def load(path, **kwargs) -> keras.Model:
    """Load a `.keras` file saved from either variant of any registry model.

    Built-in models are registered by `import models`; a model of your own needs its module
    imported first. The module is never imported on the file's say-so: that would run code
    named by the file, which is what Keras's safe mode exists to prevent.
    """
    net.register_all()
    try:
        return keras.models.load_model(path, **kwargs)
    except TypeError as err:
        missing = re.search(r"Could not locate class '([^']+)'", str(err))
        if not missing:
            raise
        raise registry.RegistryError(_unregistered_message(str(path), missing.group(1))) from None


def _unregistered_message(path: str, class_name: str) -> str:
    found = _find_class(_read_config(path), class_name) or {}
    module = found.get("module") or "?"
    registered = found.get("registered_name") or class_name
    return (
        f"{path} holds model class {class_name} ('{registered}', from module {module}), which is not"
        f" registered in this process; import {module} before loading (registered models:"
        f" {', '.join(registry.names()) or 'none'}). Received: class={registered}"
    )


def _read_config(path: str) -> dict:
    try:
        with zipfile.ZipFile(path) as archive:
            return json.loads(archive.read("config.json"))
    except (OSError, KeyError, zipfile.BadZipFile, ValueError):
        return {}


def _find_class(node, class_name: str):
    if isinstance(node, dict):
        if node.get("class_name") == class_name and "module" in node:
            return node
        node = list(node.values())
    if isinstance(node, list):
        for child in node:
            found = _find_class(child, class_name)
            if found:
                return found
    return None
