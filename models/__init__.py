"""Model registry. Importing this package registers every built-in model's definition, without Keras.

    import models
    models.available()                      # {"dynamic": ["depth", "width", ...], ...}
    models.define("dynamic", {"depth": 5, ...})   # the definition, its knobs checked

    from models import net, saving          # these import Keras
    net.build("dynamic", "subclassed", input_shape=(8, 8, 1), num_classes=10,
              depth=5, width=64, activation="relu", dropout=0.0, l2=0.0)
    saving.load("model.keras")              # keras.models.load_model, clear error if unregistered
"""

from models import cnn, conditional, dynamic, mlp, resnet  # noqa: F401  (registration side effect)
from models.definition import Definition
from models.registry import RegistryError, available, define, get, import_model_module, knobs, names, register
from trainer.config.choices import VARIANTS

__all__ = ["VARIANTS", "Definition", "RegistryError", "available", "define", "get", "import_model_module", "knobs",
           "names", "register"]
