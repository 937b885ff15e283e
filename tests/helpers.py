"""For in-process `train(cfg)` tests: a spy on the model `train` hands to its loop (each run's
history, test metrics, data, model, optimizer, and the weights before and after training), and
the config of a command line composed without conftest's make_cfg shrinking it."""

from __future__ import annotations

import types

import numpy as np
import pytest
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict

from trainer import loops


def run_cfg(root, *overrides: str):
    """The config of `python -m trainer <overrides>` writing into root, with HydraConfig set as
    make_cfg sets it, but nothing else changed: no epochs=1, no data.data_dir (which
    data=image_folder does not have)."""
    GlobalHydra.instance().clear()
    with initialize_config_module("conf", version_base="1.3"):
        cfg = compose("config", overrides=[f"paths.root_dir={root}", *overrides], return_hydra_config=True)
    GlobalHydra.instance().clear()
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(root / "run")
        cfg.hydra.job.num = 0
    HydraConfig.instance().set_config(cfg)
    return cfg


@pytest.fixture
def runs(monkeypatch):
    """Each loop run of the test: history, test, data, model, optimizer, initial and (final) weights."""
    seen = []
    real_get = loops.get

    def get(name):
        module = real_get(name)

        def run(model, data, **kwargs):
            initial = [np.array(w) for w in model.weights]
            history, test = module.run(model, data, **kwargs)
            seen.append(types.SimpleNamespace(history=history, test=test, data=data, model=model,
                                              optimizer=kwargs["optimizer"], initial=initial,
                                              weights=[np.array(w) for w in model.weights]))
            return history, test

        return types.SimpleNamespace(run=run)

    monkeypatch.setattr(loops, "get", get)
    return seen


def nan_in_training_batch_5(monkeypatch) -> None:
    """Fault injection: from now on, every loaded dataset's 5th training batch is NaN. (Use tanh,
    not relu, in the model: oneDNN's relu turns NaN into 0, which would hide it from the loss.)"""
    import tensorflow as tf

    import trainer.data as data_lib

    real_load = data_lib.load

    def load_with_nan_in_batch_5(*args, **kwargs):
        data = real_load(*args, **kwargs)
        poisoned = data.train.enumerate().map(lambda i, xy: (tf.where(i == 4, xy[0] * np.nan, xy[0]), xy[1]))
        data.train = poisoned.apply(tf.data.experimental.assert_cardinality(data.train.cardinality()))
        return data

    monkeypatch.setattr(data_lib, "load", load_with_nan_in_batch_5)
