"""Experiment presets (conf/experiment/): each file's header, the README's table of them, the
`experiment` group on the command line (listed, validated, a user's own from --config-dir),
digits_best through the real command line at the README's figure, and the presets that need a
download composed and trained for one step on `tfds.testing.mock_data`."""

from __future__ import annotations

import math
import re

import keras
import pytest
import tensorflow_datasets as tfds

from tests.conftest import REPO
from tests.helpers import runs  # noqa: F401 (fixture)
from tests.test_data_tfds import _metadata_only
from trainer.train import train

PRESETS = sorted(p.stem for p in (REPO / "conf" / "experiment").glob("*.yaml"))


def _readme_rows() -> dict[str, list[str]]:
    """README's preset table: {preset: [command, result]}."""
    rows = {}
    for line in (REPO / "README.md").read_text().splitlines():
        match = re.match(r"\| `(\w+)` \| `(python -m trainer [^`]+)` \| (.+) \|$", line)
        if match:
            rows[match.group(1)] = [match.group(2), match.group(3)]
    return rows


def test_every_preset_is_a_global_diff_whose_header_gives_its_command_and_result_and_readme_lists_it():
    assert {"digits_best", "mnist_convnet", "cifar10_resnet", "fashion_mnist_cnn"} <= set(PRESETS)
    rows = _readme_rows()
    for name in PRESETS:
        lines = (REPO / "conf" / "experiment" / f"{name}.yaml").read_text().splitlines()
        assert lines[0] == "# @package _global_", name
        assert lines[1] == f"# python -m trainer experiment={name}", name
        assert any(line.startswith("# Result:") for line in lines), name
        assert rows[name][0] == f"python -m trainer experiment={name}", name


def test_experiment_group_is_listed_and_a_users_own_preset_works_from_config_dir(cli, tmp_path):
    own = tmp_path / "my_conf" / "experiment"
    own.mkdir(parents=True)
    (own / "mine.yaml").write_text("# @package _global_\ndefaults:\n  - override /model: cnn\n\nepochs: 3\nfilters: 8\n")
    listed = cli("--config-dir", str(tmp_path / "my_conf"), "--help")
    assert listed.returncode == 0, listed.stderr
    (line,) = [line for line in listed.stdout.splitlines() if line.startswith("experiment:")]
    assert line.split(":", 1)[1].strip().split(", ") == sorted([*PRESETS, "mine"])
    composed = cli("--config-dir", str(tmp_path / "my_conf"), "--cfg", "job", "experiment=mine")
    assert composed.returncode == 0, composed.stderr
    assert "name: cnn" in composed.stdout and "epochs: 3" in composed.stdout and "filters: 8" in composed.stdout


def test_digits_best_reaches_the_readme_figure_through_the_real_command_line(cli, tmp_path):
    result_cell = _readme_rows()["digits_best"][1]
    seed_42 = float(re.search(r"(0\.\d{4}) at seed 42", result_cell).group(1))
    result = cli("experiment=digits_best", "tracking=none")
    assert result.returncode == 0, result.stderr[-3000:]
    printed = float(re.search(r"test_accuracy=(\d\.\d{4})", result.stdout).group(1))
    assert printed == seed_42 >= 0.985


# (preset, dataset, Conv2D kernels of the built model, its optimizer class and peak learning rate)
_DOWNLOADS = [
    ("mnist_convnet", "mnist", [32, 32, 64, 64], "Adam", 0.001),
    ("fashion_mnist_cnn", "fashion_mnist", [32, 32, 64, 64], "Adam", 0.001),
    # ResNet-20: a stem conv, 3 stages of 3 blocks of two 3x3 convs, and two 1x1 projections
    ("cifar10_resnet", "cifar10", [16] + [16] * 6 + [32] * 7 + [64] * 7, "SGD", 0.1),
]


@pytest.mark.parametrize("preset, dataset, filters, optimizer, rate", _DOWNLOADS)
def test_download_presets_train_one_step_on_mock_data(make_cfg, runs, tmp_path, preset, dataset, filters,  # noqa: F811
                                                      optimizer, rate):
    data_dir = tmp_path / "tfds"
    _metadata_only(data_dir, dataset)
    with tfds.testing.mock_data(num_examples=24, data_dir=str(data_dir)):  # fewer than one batch: one step
        metrics = train(make_cfg(f"experiment={preset}", f"data.data_dir={data_dir}", "tracking=none"))
    (run,) = runs
    assert run.data.name.startswith(dataset) and math.isfinite(metrics["test_loss"])
    assert int(run.optimizer.iterations) == 1
    assert type(run.optimizer).__name__ == optimizer
    convs = [layer for layer in run.model._flatten_layers() if isinstance(layer, keras.layers.Conv2D)]
    assert sorted(c.filters for c in convs) == sorted(filters)
    rate_config = run.optimizer.get_config()["learning_rate"]  # a number, or a schedule's config
    peak = rate_config if isinstance(rate_config, float) else (
        rate_config["config"]["warmup_target"] or rate_config["config"]["initial_learning_rate"])
    assert peak == pytest.approx(rate)
