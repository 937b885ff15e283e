"""A fixture that watches `train(cfg)` hand the model to its loop: each run's history, test
metrics, model, optimizer, and the weights before and after training, for tests to compare."""

from __future__ import annotations

import types

import numpy as np
import pytest

from trainer import loops


@pytest.fixture
def runs(monkeypatch):
    """Each loop run of the test: history, test, model, optimizer, initial and (final) weights."""
    seen = []
    real_get = loops.get

    def get(name):
        module = real_get(name)

        def run(model, data, **kwargs):
            initial = [np.array(w) for w in model.weights]
            history, test = module.run(model, data, **kwargs)
            seen.append(types.SimpleNamespace(history=history, test=test, model=model, optimizer=kwargs["optimizer"],
                                              initial=initial, weights=[np.array(w) for w in model.weights]))
            return history, test

        return types.SimpleNamespace(run=run)

    monkeypatch.setattr(loops, "get", get)
    return seen
