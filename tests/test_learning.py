"""Training learns, in both loops: the default digits run reaches the test accuracy README states
(through the real command at each seed README quotes, and in process under both loops), an image folder of classes told apart by their colour is learned, and a learning rate of 0
changes no weight and improves nothing."""

from __future__ import annotations

import re

import numpy as np
import pytest

from tests.conftest import REPO
from tests.helpers import run_cfg, runs  # noqa: F401  (runs: a fixture)
from tests.test_data_folder import make_folder
from trainer import train as train_module
from trainer.train import train

LOOPS = ["fit", "custom"]


def _readme_claim() -> re.Match:
    text = " ".join((REPO / "README.md").read_text().split())  # line breaks fall anywhere in a paragraph
    found = re.search(r"reaches ([0-9.]+), ([0-9.]+) and ([0-9.]+) test accuracy at seeds (\d+), (\d+) and (\d+)"
                      r" \(at least ([0-9.]+)", text)
    assert found, "README's Quick start no longer states the default run's test accuracy"
    return found


def readme_threshold() -> float:
    """The test accuracy README's Quick start promises for `python -m trainer`."""
    return float(_readme_claim()[7])


def readme_seeds() -> list[int]:
    return [int(seed) for seed in _readme_claim().groups()[3:6]]


@pytest.mark.parametrize("seed", readme_seeds())
def test_the_default_command_reaches_the_readme_accuracy_at_each_seed_it_quotes(cli, seed):
    # The command exactly as a user types it (tracking on), only the seed chosen.
    result = cli(f"seed={seed}")
    assert result.returncode == 0, result.stderr[-3000:]
    accuracy = float(re.search(r"test_accuracy=([0-9.]+)", result.stdout)[1])
    assert accuracy >= readme_threshold(), result.stdout


@pytest.mark.parametrize("loop", LOOPS)
def test_the_default_run_reaches_the_test_accuracy_readme_states(make_cfg, runs, loop):
    # The default run (`python -m trainer`, 20 epochs) in every setting that decides what it
    # learns; MLflow tracking off, which records the run and changes nothing it learns.
    metrics = train(make_cfg("epochs=20", f"loop={loop}", "tracking=none"))
    assert metrics["test_accuracy"] >= readme_threshold(), metrics
    (run,) = runs
    # With label smoothing the loss cannot fall far below the smoothed targets' entropy (about
    # 0.5 for 10 classes), so the check is that it fell, and the accuracy above that it learned.
    assert run.history["val_loss"][-1] < run.history["val_loss"][0], run.history["val_loss"]
    assert any(not np.array_equal(a, b) for a, b in zip(run.initial, run.weights, strict=True))


@pytest.mark.parametrize("loop", LOOPS)
def test_an_image_folder_of_colour_separable_classes_is_learned(tmp_path, loop):
    folder = make_folder(tmp_path / "colours", per_class=40, size=(8, 8))
    metrics = train(run_cfg(tmp_path, "data=image_folder", f"data.path={folder}", "data.test_fraction=0.25",
                                "epochs=6", "batch_size=16", "width=16", f"loop={loop}", "tracking=none"))
    assert metrics["test_accuracy"] >= 0.9, metrics  # 30 test images, 10 a class


@pytest.mark.parametrize("loop", LOOPS)
def test_a_learning_rate_of_0_changes_no_weight_and_improves_nothing(make_cfg, runs, monkeypatch, loop):
    """The validator refuses optimizer.learning_rate=0 on the command line (a run that cannot learn
    is a mistake there), and this test needs exactly that run. So the real validator checks the
    real config with the default rate, and the settings it returns get a rate of 0 before the rest
    of `train` (data, model, optimizer, loop, callbacks) runs as usual. A tiny rate instead of 0
    would still move the weights, and could not show that only the optimizer does."""
    real_validate = train_module.validate

    def validate_then_freeze(cfg):
        settings = real_validate(cfg)
        settings["optimizer"]["learning_rate"] = 0.0
        return settings

    monkeypatch.setattr(train_module, "validate", validate_then_freeze)
    train(make_cfg("model=mlp", "width=16", "epochs=2", f"loop={loop}", "tracking=none"))
    (run,) = runs
    assert float(run.optimizer.learning_rate) == 0.0 and int(run.optimizer.iterations) > 0
    for before, after in zip(run.initial, run.weights, strict=True):
        np.testing.assert_array_equal(before, after)
    history = run.history
    assert history["val_loss"][1] == pytest.approx(history["val_loss"][0], rel=1e-6)
    assert history["loss"][1] == pytest.approx(history["loss"][0], rel=1e-5)  # the same examples, reshuffled
    assert history["val_accuracy"][1] == history["val_accuracy"][0]
    assert history["val_accuracy"][-1] < 0.5  # an untrained model of 10 classes
