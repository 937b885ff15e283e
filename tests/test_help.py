"""`python -m trainer --help`: what it prints comes from the config tree, the model registry and
the README, through the real command line, before TensorFlow loads."""

from __future__ import annotations

import pytest

import models


@pytest.mark.parametrize("name", models.names())
def test_every_model_documents_every_knob_and_itself(name):
    """The help prints each knob's line of the definition's Args, and the model's summary."""
    definition = models.get(name)
    docs = definition.knob_docs()
    assert list(docs) == models.knobs(name)
    assert all(docs.values()), docs
    assert definition.summary() and not definition.summary().startswith(f"`{name}`")
