"""Model registry. Importing this package registers every built-in model.

    import models
    models.available()                      # {"dynamic": ["depth", "width", ...], ...}
    models.build("dynamic", "subclassed", input_shape=(8, 8, 1), num_classes=10,
                 depth=5, width=64, activation="relu", dropout=0.0, l2=0.0)
"""

from models import conditional, dynamic, mlp  # noqa: F401  (registration side effect)
from models.registry import VARIANTS, RegistryError, available, build, get, knobs, names, register

__all__ = ["VARIANTS", "RegistryError", "available", "build", "get", "knobs", "names", "register"]
