"""The code MLflow keeps with every logged model ("models from code": no pickle anywhere).

MLflow runs this file on its own when `mlflow.pyfunc.load_model` is called, in whatever process
serves the model: it imports only Keras, NumPy and the model modules shipped in the logged
model's `code/` folder, loads the `.keras` file in Keras safe mode, and turns raw pixels
(0..255, the model's input shape) into class probabilities with the rescale training used.
"""

import importlib
import json

import sys

import keras
import mlflow
import numpy as np
from mlflow.pyfunc import PythonModel


class KerasClassifier(PythonModel):
    def load_context(self, context):
        with open(context.artifacts["serving"]) as f:
            config = json.load(f)
        # A subclassed registry model: importing its module registers its definition, and
        # models/net.py makes the Keras class safe mode rebuilds it with. A functional model
        # needs neither, so serving it needs nothing of this project.
        for module in config["modules"]:
            importlib.import_module(module)
        if "models.registry" in sys.modules:
            importlib.import_module("models.net").register_all()
        self.input_scale = float(config["input_scale"])
        # Serving only predicts: without compile=False, the loss of a model trained with label
        # smoothing (a class of this project, models/losses.py) would be needed to load it.
        self.model = keras.models.load_model(context.artifacts["keras_model"], compile=False)

    # The hint names what MLflow hands over for a tensor signature (and silences its warning).
    def predict(self, context, model_input: np.ndarray, params=None) -> np.ndarray:
        x = np.asarray(model_input, dtype="float32") * self.input_scale
        return self.model.predict(x, verbose=0)


mlflow.models.set_model(KerasClassifier())
