"""Model registry. Importing this package registers every built-in model.

    import models
    models.available()                      # {"dynamic": ["depth", "width", ...], ...}
    models.build("dynamic", "subclassed", input_shape=(8, 8, 1), num_classes=10,
                 depth=5, width=64, activation="relu", dropout=0.0, l2=0.0)
    models.load("model.keras")              # keras.models.load_model, clear error if unregistered
"""

from models import cnn, conditional, dynamic, mlp, resnet  # noqa: F401  (registration side effect)
from models.registry import (
    VARIANTS, RegistryError, available, build, get, import_model_module, knobs, names, register,
)
from models.net import Net, apply_in_order
from models.saving import load

__all__ = ["VARIANTS", "Net", "RegistryError", "apply_in_order", "available", "build", "get", "import_model_module",
           "knobs", "load", "names", "register"]
