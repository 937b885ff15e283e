"""`python -m trainer.predict` and `python -m trainer.evaluate` through the real commands, on one
tiny digits run trained once per session into its own MLflow store (docs/models-and-serving.md)."""

from __future__ import annotations

import concurrent.futures
import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import tracking_uri, without_tensorflow

REGISTERED = "digits_use"


def _command(module: str, root: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    environment = {**os.environ, "TRAINER_ROOT": str(root), "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=root, env=environment,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="session")
def trained(tmp_path_factory, tfds_dir):
    """One digits run (2 epochs, registered as digits_use): its root, ids and test metrics."""
    from mlflow.tracking import MlflowClient

    root = tmp_path_factory.mktemp("use")
    done = _command("trainer", root, "epochs=2", f"data.data_dir={tfds_dir}", "tracking.system_metrics=false",
                    f"tracking.register_as={REGISTERED}")
    assert done.returncode == 0, done.stderr[-3000:]
    client = MlflowClient(tracking_uri(root))
    (run,) = client.search_runs(client.get_experiment_by_name("trainer").experiment_id)
    (model,) = client.search_logged_models([run.info.experiment_id], filter_string=f"source_run_id='{run.info.run_id}'")
    return {"root": root, "run_id": run.info.run_id, "model_id": model.model_id, "metrics": run.data.metrics,
            "experiment_id": run.info.experiment_id, "tfds_dir": tfds_dir}


def _digits_test_images():
    """The digits test split's images (uint8, 8x8) and labels, as trainer/data/digits.py makes them."""
    from sklearn.datasets import load_digits

    from trainer.data.digits import _split_indices

    digits = load_digits()
    _, test = _split_indices(digits.target)
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
    return images[test], digits.target[test]


def test_predict_writes_the_models_predictions_for_the_images_a_glob_names(trained, tmp_path):
    from trainer.use import predict, source

    images, labels = _digits_test_images()
    folder = tmp_path / "images"
    folder.mkdir()
    for i, (image, label) in enumerate(zip(images[:40], labels[:40])):
        Image.fromarray(image).save(folder / f"digit{i:02d}_{label}.png")
    # An RGB JPEG at twice the size: decoded to the model's one channel and resized as training resizes.
    Image.fromarray(np.repeat(np.kron(images[0], np.ones((2, 2), np.uint8))[..., None], 3, -1)).save(folder / "big.jpg")
    (folder / "notes.txt").write_text("not an image")
    (folder / "damaged.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"junk" * 4)  # a PNG's signature, then nothing

    done = _command("trainer.predict", trained["root"], f"run=models:/{REGISTERED}/1", f"source='{folder}/*'")
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"skipped {folder / 'notes.txt'}: not an image" in done.stdout
    assert f"skipped {folder / 'damaged.png'}: could not be decoded" in done.stdout
    assert f"predicted 41 image(s) with models:/{trained['model_id']} (run {trained['run_id']})" in done.stdout
    (path,) = (trained["root"] / "outputs" / "predictions").glob("*/*/predictions.csv")
    assert f"predictions: {path}" in done.stdout
    with open(path) as f:
        table = list(csv.DictReader(f))
    assert list(table[0]) == ["file", "class", "probability", "top1_class", "top1_probability", "top2_class",
                              "top2_probability", "top3_class", "top3_probability"]
    by_file = {Path(row["file"]).name: row for row in table}
    assert "notes.txt" not in by_file and "damaged.png" not in by_file and len(by_file) == 41

    # The CSV holds what the model gives in this process for the same pixels.
    trained_model = source.open_trained(trained["run_id"], tracking_uri(trained["root"]))
    expected = np.asarray(trained_model.model(images[:40, ..., None].astype("float32") / 255.0, training=False))
    for i, label in enumerate(labels[:40]):
        row = by_file[f"digit{i:02d}_{label}.png"]
        best = np.argsort(-expected[i], kind="stable")[:3]
        assert row["class"] == row["top1_class"] == str(best[0])
        assert [row[f"top{k}_class"] for k in (1, 2, 3)] == [str(b) for b in best]
        assert float(row["probability"]) == pytest.approx(expected[i, best[0]], abs=1e-5)
        assert float(row["top3_probability"]) == pytest.approx(expected[i, best[2]], abs=1e-5)
    correct = sum(by_file[f"digit{i:02d}_{label}.png"]["class"] == str(label) for i, label in enumerate(labels[:40]))
    assert correct >= 32, correct  # the run reaches about 0.9 test accuracy after 2 epochs
    assert by_file["big.jpg"]["class"] in [str(c) for c in range(10)]

    # A bare .keras file has no class names but its indices, unless it is given some.
    keras_file = trained_model.located.keras_file
    assert source.open_trained(keras_file, None).class_names == tuple(str(i) for i in range(10))
    names = [f"digit_{i}" for i in range(10)]
    named = source.open_trained(keras_file, None, class_names=names)
    header, rows = predict.rows(["a.png"], expected[:1], named.class_names, top_k=2)
    assert header[-1] == "top2_probability" and rows[0][1] == names[int(np.argmax(expected[0]))]
    # An output file is created, never replaced.
    predict.write_csv(str(tmp_path / "mine.csv"), header, rows, exclusive=True)
    with pytest.raises(ValueError, match="output must be a file that does not exist yet"):
        predict.write_csv(str(tmp_path / "mine.csv"), header, [], exclusive=True)
    assert len((tmp_path / "mine.csv").read_text().splitlines()) == 2


def test_evaluate_reports_the_runs_test_metrics_and_links_them_to_the_model(trained):
    from mlflow.tracking import MlflowClient

    root = trained["root"]
    done = _command("trainer.evaluate", root, f"run={trained['run_id']}", f"data.data_dir={trained['tfds_dir']}")
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    reported = {parts[0]: float(parts[1]) for parts in (line.split() for line in lines)
                if len(parts) == 2 and parts[0].startswith("test_")}
    # The same model on the same split: the numbers the training run logged.
    assert reported["test_accuracy"] == pytest.approx(trained["metrics"]["test_accuracy"], abs=1e-3)
    assert reported["test_loss"] == pytest.approx(trained["metrics"]["test_loss"], abs=1e-3)
    assert any(line.split()[:5] == ["class", "precision", "recall", "f1", "support"] for line in lines)
    supports = [int(line.split()[4]) for line in lines if len(line.split()) == 5 and line.split()[0] in "0123456789"]
    assert len(supports) == 10 and sum(supports) == 359

    client = MlflowClient(tracking_uri(root))
    (evaluation,) = client.search_runs([trained["experiment_id"]], "tags.evaluation = 'true'")
    assert evaluation.info.status == "FINISHED"
    assert evaluation.data.tags["evaluated.run_id"] == trained["run_id"]
    assert evaluation.data.tags["evaluated.model_id"] == trained["model_id"]
    inputs = client.get_run(evaluation.info.run_id).inputs
    assert [m.model_id for m in inputs.model_inputs] == [trained["model_id"]]
    (dataset_input,) = inputs.dataset_inputs
    assert dataset_input.dataset.name.startswith("digits")
    artifacts = {a.path for a in client.list_artifacts(evaluation.info.run_id)}
    artifacts |= {a.path for a in client.list_artifacts(evaluation.info.run_id, "plots")}
    assert {"plots/confusion_matrix.png", "per_class_report.txt", ".hydra"} <= artifacts

    # MLflow 3 links the metrics to the LoggedModel and the dataset: the model's page lists them,
    # and a search over models can rank by them.
    linked = {m.key: m for m in client.get_logged_model(trained["model_id"]).metrics
              if m.run_id == evaluation.info.run_id}
    assert linked["test_accuracy"].value == pytest.approx(reported["test_accuracy"], abs=1e-4)
    assert linked["test_accuracy"].dataset_name == dataset_input.dataset.name
    assert linked["test_accuracy"].dataset_digest == dataset_input.dataset.digest
    found = client.search_logged_models([trained["experiment_id"]], filter_string="metrics.test_macro_f1 > 0.5")
    assert [m.model_id for m in found] == [trained["model_id"]]


def test_bad_references_and_sources_are_one_line_before_tensorflow(trained, tmp_path):
    """Each refused in one line, exit 2, before TensorFlow imports, with no folder or store left behind."""
    from mlflow.tracking import MlflowClient

    root = trained["root"]
    client = MlflowClient(tracking_uri(root))
    without_model = client.create_run(trained["experiment_id"]).info.run_id
    client.set_terminated(without_model, "FAILED")
    (tmp_path / "notes.txt").write_text("not an image")
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(images / "a.png")
    run = f"run={trained['run_id']}"
    cases = [
        ("trainer.predict", [f"source={images}"], "run must be given"),
        ("trainer.predict", ["run=0123456789abcdef0123456789abcdef", f"source={images}"],
         "it has no run 0123456789abcdef0123456789abcdef"),
        ("trainer.predict", ["run=models:/m-0123456789abcdef0123456789abcdef", f"source={images}"],
         "it has no model m-0123456789abcdef0123456789abcdef"),
        ("trainer.predict", [f"run=models:/{REGISTERED}/7", f"source={images}"], f"it has no {REGISTERED} version 7"),
        ("trainer.predict", ["run=models:/nope", f"source={images}"], "is not a models:/ URI of one of those forms"),
        ("trainer.predict", [f"run={tmp_path}/missing.keras", f"source={images}"], "missing.keras does not exist"),
        ("trainer.predict", [f"run={without_model}", f"source={images}"], f"run {without_model} has no logged model"),
        ("trainer.predict", [run, f"source={tmp_path}/nothing"], "source must be an existing image file"),
        ("trainer.predict", [run, f"source='{tmp_path}/*.jpg'"], "source must be a glob that matches at least one file"),
        ("trainer.predict", [run, f"source={tmp_path / 'notes.txt'}"], "none of its 1 file(s) is one"),
        ("trainer.predict", [run, f"source={images}", "top_k=0"], "top_k must be an integer >= 1"),
        ("trainer.predict", [run, f"source={images}", f"output={images / 'a.png'}"],
         "output must be a file that does not exist yet"),
        ("trainer.predict", [run, f"source={images}", f"tracking.uri=sqlite:///{tmp_path}/none.db"],
         "tracking.uri names no MLflow store"),
        ("trainer.predict", ["-m", run, f"source={images}"], "runs one job"),
        ("trainer.evaluate", ["run=0123456789abcdef0123456789abcdef"], "it has no run"),
        ("trainer.evaluate", [run, "data=nope"], "data must be one of"),
        ("trainer.evaluate", [run, "batch_size=0"], "batch_size must be an integer >= 1"),
    ]
    env = without_tensorflow(tmp_path)
    folders = sorted((root / "outputs").glob("*/*/*"))
    with concurrent.futures.ThreadPoolExecutor(4) as pool:  # each waits mostly for its imports
        finished = list(pool.map(lambda case: _command(case[0], root, *case[1], env=env), cases))
    for (module, args, expected), done in zip(cases, finished):
        assert done.returncode == 2, (args, done.stderr[-2000:])
        assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, (args, done.stderr)
        assert expected in done.stderr, (args, done.stderr)
    assert not (tmp_path / "none.db").exists()
    assert sorted((root / "outputs").glob("*/*/*")) == folders  # no command folder was made
