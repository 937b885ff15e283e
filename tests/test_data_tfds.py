"""TFDS datasets end to end, offline: mnist and cifar10 through the real command line under
`tfds.testing.mock_data`, the bundled digits builder, splits, the MLflow dataset input, and the
errors for unknown or unavailable datasets."""

from __future__ import annotations

import json
import socket
import sys

import pytest
import tensorflow_datasets as tfds
from mlflow.tracking import MlflowClient

from tests.conftest import free_port, tracking_uri
from trainer.errors import ConfigError


def _metadata_only(data_dir, name: str) -> None:
    """What `tfds.testing.mock_data` documents for realistic mocks: the dataset's metadata files
    in the data dir (here written from the builder's code, so nothing is downloaded)."""
    builder = tfds.builder(name, data_dir=str(data_dir))
    builder.data_path.mkdir(parents=True, exist_ok=True)
    builder.info.write_to_directory(builder.data_dir)


def _main(monkeypatch, *args: str) -> None:
    from trainer.__main__ import main

    monkeypatch.setattr(sys, "argv", ["trainer", *args])
    main()


def _only_run(root):
    client = MlflowClient(tracking_uri(root))
    (run,) = client.search_runs(client.get_experiment_by_name("trainer").experiment_id)
    return client, run


@pytest.mark.parametrize("name, shape", [("mnist", [28, 28, 1]), ("cifar10", [32, 32, 3])])
def test_mock_tfds_dataset_trains_through_the_cli(tmp_path, monkeypatch, name, shape):
    data_dir = tmp_path / "tfds"
    _metadata_only(data_dir, name)
    monkeypatch.setenv("TRAINER_ROOT", str(tmp_path))
    with tfds.testing.mock_data(num_examples=24, data_dir=str(data_dir)):
        _main(monkeypatch, f"data={name}", f"data.data_dir={data_dir}", "epochs=1", "batch_size=8", "width=8")

    _, run = _only_run(tmp_path)
    assert run.info.status == "FINISHED"
    assert run.data.params["data.name"] == name
    assert json.loads(run.data.tags["dataset.class_names"]) == tfds.builder(name).info.features["label"].names
    (dataset_input,) = run.inputs.dataset_inputs
    dataset = dataset_input.dataset
    assert dataset.name == f"{name}:{tfds.builder(name).info.version}" and dataset.source_type == "tfds"
    assert json.loads(dataset.source)["data_dir"] == str(data_dir)
    profile = json.loads(dataset.profile)
    assert profile["input_shape"] == shape and profile["num_classes"] == 10
    # mock_data yields num_examples for every split, sliced or not
    assert profile["split_sizes"] == {"train": 24, "validation": 24, "test": 24}
    assert profile["splits"] == {"train": "train[:90%]", "validation": "train[90%:]", "test": "test"}
    assert [(t.key, t.value) for t in dataset_input.tags] == [("mlflow.data.context", "training")]


def test_digits_is_prepared_offline_with_fixed_splits(tfds_dir):
    from trainer.data import load

    data = load(source="tfds", name="digits", data_dir=tfds_dir, download=True,
                train_split="train", validation_split=None, test_split="test", validation_fraction=0.25,
                test_fraction=0.1, image_size=None, cache="auto", shuffle_buffer=10000,
                augment={"flip": False, "crop": 0, "translate": 0.0}, batch_size=64, seed=0)
    assert data.split_sizes == {"train": 1078, "validation": 360, "test": 359}
    assert data.split_specs == {"train": "train[:75%]", "validation": "train[75%:]", "test": "test"}
    assert data.input_shape == (8, 8, 1) and data.num_classes == 10 and data.class_names[3] == "3"
    images, labels = next(iter(data.test))
    assert images.dtype.name == "float32" and 0.0 <= float(images.numpy().min()) and float(images.numpy().max()) <= 1.0
    assert images.shape == (64, 8, 8, 1) and labels.shape == (64,)
    assert sum(int(y.shape[0]) for _, y in data.train) == 1078


def test_dataset_own_validation_split_is_used_and_fractions_carve_the_rest():
    from trainer.data.splits import resolve

    own = resolve(train_split="train", validation_split="auto", test_split="auto", validation_fraction=0.1,
                  test_fraction=0.2, available={"train", "validation"})
    assert own == {"train": "train[:80%]", "validation": "validation", "test": "train[80%:]"}
    carved = resolve(train_split="train", validation_split=None, test_split=None, validation_fraction=0.125,
                     test_fraction=0.1, available={"train", "test"})
    assert carved == {"train": "train[:77.5%]", "validation": "train[77.5%:90%]", "test": "train[90%:]"}
    with pytest.raises(ConfigError, match=r"data.test_split must be a split of the dataset \(train, validation\)"):
        resolve(train_split="train", validation_split="auto", test_split="tset", validation_fraction=0.1,
                test_fraction=0.1, available={"train", "validation"})


def test_unknown_tfds_name_suggests_close_names_before_any_run(make_cfg, tmp_path):
    from trainer.train import train

    with pytest.raises(ConfigError) as err:
        train(make_cfg("data=tfds", "data.name=fashion_mnsit"))
    message = str(err.value)
    assert message.startswith("data.name must be a TFDS dataset name (did you mean fashion_mnist")
    assert message.endswith("Received: data.name=fashion_mnsit") and "\n" not in message
    client = MlflowClient(tracking_uri(tmp_path))
    experiment = client.get_experiment_by_name("trainer")
    assert experiment is None or client.search_runs(experiment.experiment_id) == []


def test_non_image_classification_dataset_is_refused(tmp_path):
    from trainer.data import tfds_source

    with pytest.raises(ConfigError, match="data.name must be an image classification dataset"):
        tfds_source.open_source(name="imdb_reviews", data_dir=str(tmp_path), download=False, train_split="train",
                                validation_split=None, test_split="test", validation_fraction=0.1,
                                test_fraction=0.1, image_size=None)


def test_unprepared_dataset_without_download_is_one_line_naming_the_ways_forward(tmp_path):
    from trainer.data import tfds_source

    with pytest.raises(ConfigError) as err:
        tfds_source.open_source(name="mnist", data_dir=str(tmp_path), download=False, train_split="train",
                                validation_split=None, test_split="test", validation_fraction=0.1,
                                test_fraction=0.1, image_size=None)
    message = str(err.value)
    assert message.startswith(f"data.name=mnist is not prepared in {tmp_path} and data.download=false")
    assert "data.data_dir" in message and "data=digits" in message and "\n" not in message


def test_unreachable_network_stops_before_tfds_tries_to_download(tmp_path, monkeypatch):
    """The reachability probe, not this machine, decides "offline": pointed at a local port nothing
    listens on, the test holds on a machine with network too. TFDS alone would retry for minutes."""
    from trainer.data import tfds_source

    monkeypatch.setenv("TRAINER_NETWORK_PROBE", f"127.0.0.1:{free_port()}")
    with pytest.raises(ConfigError) as err:
        tfds_source.open_source(name="mnist", data_dir=str(tmp_path), download=True, train_split="train",
                                validation_split=None, test_split="test", validation_fraction=0.1,
                                test_fraction=0.1, image_size=None)
    message = str(err.value)
    assert message.startswith(f"data.name=mnist is not prepared in {tmp_path} and the network is unreachable"
                              " (no connection to 127.0.0.1)")
    assert "\n" not in message
    assert list(tmp_path.rglob("dataset_info.json")) == [] and list(tmp_path.rglob("downloads")) == []


def test_the_network_probe_connects_to_the_address_it_is_given(monkeypatch):
    from trainer.data import prepare

    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        monkeypatch.setenv("TRAINER_NETWORK_PROBE", f"127.0.0.1:{listening.getsockname()[1]}")
        assert prepare.network_reachable()
    monkeypatch.setenv("TRAINER_NETWORK_PROBE", f"127.0.0.1:{free_port()}")
    assert not prepare.network_reachable()
    monkeypatch.setenv("TRAINER_NETWORK_PROBE", "no-port")
    with pytest.raises(ConfigError, match=r"TRAINER_NETWORK_PROBE must be host:port.*Received: "
                                          r"TRAINER_NETWORK_PROBE=no-port$"):
        prepare.network_reachable()
