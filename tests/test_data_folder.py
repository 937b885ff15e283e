"""`data=image_folder`: a folder of generated PNGs trains through the real CLI; its split is fixed
by the fractions and split_seed; every kind of bad folder is one line and no MLflow run."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import pytest
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from mlflow.tracking import MlflowClient
from PIL import Image

from tests.conftest import tracking_uri
from trainer.config.validate import validate
from trainer.errors import ConfigError

CLASSES = ("cat", "dog", "fox")


def make_folder(root, *, per_class: int = 10, size=(12, 10), mode="RGB"):
    """root/<class>/<i>.png, each class a different dominant colour, plus a stray text file."""
    rng = np.random.default_rng(0)
    for label, name in enumerate(CLASSES):
        os.makedirs(root / name)
        for i in range(per_class):
            pixels = rng.integers(0, 60, size=(*size, 3), dtype=np.uint8)
            pixels[..., label] += 180
            Image.fromarray(pixels, "RGB").convert(mode).save(root / name / f"{i:03d}.png")
    (root / "cat" / "notes.txt").write_text("not an image")
    return root


def _compose(*overrides):
    GlobalHydra.instance().clear()
    with initialize_config_module("conf", version_base="1.3"):
        cfg = compose("config", overrides=list(overrides))
    GlobalHydra.instance().clear()
    return cfg


def _cli(tmp_path, *args) -> subprocess.CompletedProcess:
    env = {**os.environ, "TRAINER_ROOT": str(tmp_path), "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run([sys.executable, "-m", "trainer", *args], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600)


def _no_run(root) -> None:
    client = MlflowClient(tracking_uri(root))
    experiment = client.get_experiment_by_name("trainer")
    assert experiment is None or client.search_runs(experiment.experiment_id) == []


def _open(path, **changes):
    from trainer.data import image_folder

    args = dict(path=str(path), name=None, validation_fraction=0.2, test_fraction=0.2, split_seed=0,
                image_size=None, channels=None)
    return image_folder.open_source(**{**args, **changes})


def test_image_folder_trains_through_the_cli_and_is_logged_as_input(tmp_path):
    folder = make_folder(tmp_path / "pets")
    result = _cli(tmp_path, "data=image_folder", f"data.path={folder}", "epochs=1", "batch_size=4", "width=8",
                  "data.augment.flip=true", "data.augment.translate=0.1")
    assert result.returncode == 0, result.stderr[-3000:]
    client = MlflowClient(tracking_uri(tmp_path))
    (run,) = client.search_runs(client.get_experiment_by_name("trainer").experiment_id)
    assert run.info.status == "FINISHED"
    (dataset_input,) = run.inputs.dataset_inputs
    assert dataset_input.dataset.name == "pets" and dataset_input.dataset.source_type == "image_folder"
    assert '"split_sizes": {"train": 24, "validation": 3, "test": 3}' in dataset_input.dataset.profile
    assert run.data.tags["dataset.class_names"] == '["cat", "dog", "fox"]'


def test_split_is_stratified_and_fixed_by_split_seed(tmp_path):
    folder = make_folder(tmp_path / "pets")
    first, again, other = _open(folder), _open(folder), _open(folder, split_seed=1)

    def pixels(source, split):
        return np.stack([x for x, _ in source.examples[split].as_numpy_iterator()])

    assert first.split_sizes == {"train": 18, "validation": 6, "test": 6}
    assert first.class_names == list(CLASSES) and first.input_shape == (12, 10, 3) and first.num_classes == 3
    labels = sorted(int(y) for _, y in first.examples["test"].as_numpy_iterator())
    assert labels == [0, 0, 1, 1, 2, 2]  # every class in proportion
    assert first.split_specs == again.split_specs and first.digest == again.digest
    for split in ("train", "validation", "test"):
        assert np.array_equal(pixels(first, split), pixels(again, split))
    assert not np.array_equal(pixels(first, "test"), pixels(other, "test"))
    assert first.digest != other.digest


def test_grayscale_and_mixed_sizes(tmp_path):
    gray = _open(make_folder(tmp_path / "gray", mode="L"))
    assert gray.input_shape == (12, 10, 1)
    mixed = make_folder(tmp_path / "mixed")
    Image.new("RGB", (7, 9)).save(mixed / "dog" / "odd.png")
    with pytest.raises(ConfigError, match=r"data.image_size must be set \(\[height, width\]\) because the images"):
        _open(mixed)
    resized = _open(mixed, image_size=[6, 5], channels=1)
    images = [x for x, _ in resized.examples["train"].as_numpy_iterator()]
    assert {x.shape for x in images} == {(6, 5, 1)}


def test_corrupt_image_is_one_line_before_any_run(tmp_path):
    from trainer.train import train

    folder = make_folder(tmp_path / "pets")
    broken = folder / "dog" / "004.png"
    broken.write_bytes(broken.read_bytes()[:40])
    with pytest.raises(ConfigError) as err:
        train(_compose("data=image_folder", f"data.path={folder}", f"paths.root_dir={tmp_path}", "epochs=1"))
    message = str(err.value)
    assert message.startswith(f"data.path must hold readable images; {broken} is corrupt or not an image")
    assert message.endswith(f"Received: data.path={folder}") and "\n" not in message
    _no_run(tmp_path)


@pytest.mark.parametrize(
    "layout, expected",
    [
        ("missing", "does not exist"),
        ("flat", "has no sub-folders (it holds 1 images directly: move them into one sub-folder per class)"),
        ("empty_class", "class folder {path}/dog holds no images"),
        ("one_class", "must hold at least 2 class sub-folders"),
    ],
)
def test_bad_folders_are_found_before_tensorflow(tmp_path, layout, expected):
    path = tmp_path / "data"
    if layout == "flat":
        path.mkdir()
        Image.new("RGB", (4, 4)).save(path / "a.png")
    elif layout == "empty_class":
        make_folder(path)
        for f in (path / "dog").iterdir():
            f.unlink()
    elif layout == "one_class":
        (path / "only").mkdir(parents=True)
        Image.new("RGB", (4, 4)).save(path / "only" / "a.png")
    with pytest.raises(ConfigError) as err:
        validate(_compose("data=image_folder", f"data.path={path}"))
    assert expected.format(path=path) in str(err.value) and str(err.value).endswith(f"Received: data.path={path}")


@pytest.mark.parametrize(
    "override, expected",
    [
        ("data.validation_fraction=1.5", "data.validation_fraction must be a number in (0.0, 1.0)"),
        ("data.test_fraction=0.95", "data.validation_fraction + data.test_fraction must be < 1"),
        ("data.augment.translate=2", "data.augment.translate must be a number in [0.0, 1.0)"),
        ("data.augment.crop=-1", "data.augment.crop must be an integer >= 0"),
        ("data.channels=2", "data.channels must be 1, 3 or null"),
        ("data.image_size=[0,4]", "data.image_size must be null or [height, width] with integers >= 1"),
        ("data.cache=sometimes", "data.cache must be one of auto, true, false"),
    ],
)
def test_bad_data_values_name_key_and_allowed(tmp_path, override, expected):
    folder = make_folder(tmp_path / "pets", per_class=2)
    with pytest.raises(ConfigError, match=re.escape(expected)):
        validate(_compose("data=image_folder", f"data.path={folder}", override))


def test_folder_checks_do_not_import_tensorflow(tmp_path):
    code = ("import sys; from trainer.config.validate import validate; from tests.test_data_folder import _compose;"
            f"\ntry: validate(_compose('data=image_folder', 'data.path={tmp_path}/nope'))"
            "\nexcept Exception as e: print(type(e).__name__)"
            "\nprint('tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=os.path.dirname(os.path.dirname(__file__)))
    assert out.stdout.split() == ["ConfigError", "False"], out.stderr[-2000:]


@pytest.mark.parametrize(
    "args, expected",
    [
        (["data.path={missing}"], "data.path must be a folder with one sub-folder of images per class;"),
        (["data.path={folder}", "data.validation_fraction=0"],
         "data.validation_fraction must be a number in (0.0, 1.0). Received: data.validation_fraction=0"),
    ],
)
def test_bad_input_through_the_cli_is_one_line_exit_2(tmp_path, args, expected):
    folder = make_folder(tmp_path / "pets", per_class=2)
    args = [a.format(folder=folder, missing=tmp_path / "missing") for a in args]
    result = _cli(tmp_path, "data=image_folder", *args)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], result.stderr
    assert not (tmp_path / "outputs" / "mlflow.db").exists()
