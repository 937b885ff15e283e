"""Saving, checked the way users load: every registry model x both variants is saved to `.keras`
and logged to MLflow here, then ONE fresh Python process (one TensorFlow start-up for the whole
grid) loads them back: `mlflow.pyfunc.load_model` with none of this project imported, then
`keras.models.load_model` in safe mode once `models.net.register_all()` has run. Predictions must match.
Each model is compiled as `loop=fit` compiles it, with the default label-smoothing loss, which
the saved file's compile config names."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

import models
from models import losses, net
from tests.conftest import REPO, tracking_uri
from tests.test_models import INPUT_SHAPE, NUM_CLASSES, knob_values
from trainer.tracking import export

LABEL_SMOOTHING = 0.1  # the default run's

FRESH_PROCESS = textwrap.dedent(
    """
    import json, sys
    import numpy as np

    def ours():
        return sorted(m for m in sys.modules if m.split(".")[0] in ("models", "trainer"))

    manifest = json.load(open(sys.argv[1]))
    import mlflow
    mlflow.set_tracking_uri(manifest["tracking_uri"])
    report = {}
    for entry in manifest["entries"]:
        key = entry["name"] + "/" + entry["variant"]
        raw = np.load(entry["raw"])
        pyfunc = mlflow.pyfunc.load_model(entry["model_uri"])
        report[key] = {
            "pyfunc": pyfunc.predict(raw).tolist(),
            "input_example": np.asarray(pyfunc.input_example).tolist(),
            "signature": pyfunc.metadata.signature.to_dict(),
            "imported_after_pyfunc": ours(),
            "unwrapped": type(pyfunc.unwrap_python_model().model).__name__,
        }
        if "models" in sys.modules:
            report[key]["models_file"] = sys.modules["models"].__file__

    import keras
    from models import net  # with `import models`, registers the project's classes; safe mode stays on
    net.register_all()
    for entry in manifest["entries"]:
        key = entry["name"] + "/" + entry["variant"]
        model = keras.models.load_model(entry["keras"])
        report[key]["keras"] = model.predict(np.load(entry["rescaled"]), verbose=0).tolist()
        report[key]["class"] = type(model).__name__
        report[key]["loss"] = [type(model.loss).__name__, model.loss.get_config().get("label_smoothing")]
    json.dump(report, open(sys.argv[2], "w"))
    """
)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Save and log every model and variant; run the fresh process once; return its report."""
    import mlflow

    from trainer.data.pipeline import _normalize

    root = tmp_path_factory.mktemp("saving")
    uri = tracking_uri(root)
    (root / "outputs").mkdir()
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    experiment = client.create_experiment("saving", artifact_location=f"file://{root / 'artifacts'}")
    raw = np.random.default_rng(1).integers(0, 256, (3, *INPUT_SHAPE), dtype=np.uint8)
    # The training pipeline's own rescale, so the served model is held to what training saw.
    rescaled = _normalize(raw, None)[0].numpy()
    np.save(root / "raw.npy", raw)
    np.save(root / "rescaled.npy", rescaled)

    entries, expected = [], {}
    for name in models.names():
        for variant in models.VARIANTS:
            model = net.build(name, variant, input_shape=INPUT_SHAPE, num_classes=NUM_CLASSES,
                              **knob_values(name, "l2-tanh-dropout"))
            model.compile(optimizer="adam", loss=losses.build(LABEL_SMOOTHING), metrics=["accuracy"])
            keras_path = root / f"{name}-{variant}.keras"
            model.save(keras_path)
            run = client.create_run(experiment)
            model_uri = export.log_model(run, model, rescaled)
            client.set_terminated(run.info.run_id)
            key = f"{name}/{variant}"
            expected[key] = model.predict(rescaled, verbose=0)
            entries.append({"name": name, "variant": variant, "keras": str(keras_path), "model_uri": model_uri,
                            "raw": str(root / "raw.npy"), "rescaled": str(root / "rescaled.npy")})
    (root / "manifest.json").write_text(json.dumps({"tracking_uri": uri, "entries": entries}))
    (root / "fresh.py").write_text(FRESH_PROCESS)

    # A clean environment and a folder outside the checkout: nothing of ours is importable by
    # accident except through the installed package (which the report shows was not imported).
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    command = [sys.executable, str(root / "fresh.py"), str(root / "manifest.json"), str(root / "report.json")]
    done = subprocess.run(command, cwd=root, env={**env, "TF_CPP_MIN_LOG_LEVEL": "2"}, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((root / "report.json").read_text())
    return report, expected, raw


KEYS = [f"{name}/{variant}" for name in models.names() for variant in models.VARIANTS]


@pytest.mark.parametrize("key", KEYS)
def test_keras_file_loads_in_a_fresh_process_with_identical_predictions(saved, key):
    report, expected, _ = saved
    np.testing.assert_allclose(np.array(report[key]["keras"]), expected[key], atol=1e-6, rtol=0)
    name, variant = key.split("/")
    assert report[key]["class"] == (models.get(name).__name__ if variant == "subclassed" else "Functional")
    # The loss comes back too, so `evaluate` reports what training reported.
    assert report[key]["loss"] == ["SmoothedSparseCategoricalCrossentropy", LABEL_SMOOTHING]


@pytest.mark.parametrize("key", KEYS)
def test_logged_model_serves_raw_pixels_in_a_fresh_process(saved, key):
    report, expected, raw = saved
    entry = report[key]
    np.testing.assert_allclose(np.array(entry["pyfunc"]), expected[key], atol=1e-6, rtol=0)
    assert np.array(entry["input_example"]).tolist() == raw.tolist()
    name, variant = key.split("/")
    assert entry["unwrapped"] == (models.get(name).__name__ if variant == "subclassed" else "Functional")
    signature = entry["signature"]
    assert json.loads(signature["inputs"]) == [{"type": "tensor", "tensor-spec": {"dtype": "uint8",
                                                                                  "shape": [-1, *INPUT_SHAPE]}}]
    assert json.loads(signature["outputs"]) == [{"type": "tensor", "tensor-spec": {"dtype": "float32",
                                                                                   "shape": [-1, NUM_CLASSES]}}]


def test_pyfunc_needs_none_of_our_code_for_functional_and_ships_it_for_subclassed(saved):
    report, _, _ = saved
    functional = [k for k in KEYS if k.endswith("/functional")]
    subclassed = [k for k in KEYS if k.endswith("/subclassed")]
    # The first entry is a functional model, loaded before any subclassed one could import `models`.
    assert report[KEYS[0]]["imported_after_pyfunc"] == [] and KEYS[0] in functional
    for key in subclassed:
        # The subclassed classes come from the copy shipped in the logged model's code/ folder.
        assert f"{os.sep}code{os.sep}models{os.sep}__init__.py" in report[key]["models_file"]
        assert not report[key]["models_file"].startswith(str(REPO))


def test_logged_model_keeps_the_keras_file_and_no_pickle(tmp_path):
    import mlflow

    uri = tracking_uri(tmp_path)
    (tmp_path / "outputs").mkdir()
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    run = client.create_run(client.create_experiment("x", artifact_location=f"file://{tmp_path / 'a'}"))
    model = net.build("cnn", "subclassed", input_shape=INPUT_SHAPE, num_classes=NUM_CLASSES,
                      **knob_values("cnn", "tiny"))
    model_uri = export.log_model(run, model, np.zeros((2, *INPUT_SHAPE), np.float32))
    local = mlflow.artifacts.download_artifacts(model_uri, dst_path=str(tmp_path / "dl"))
    files = {os.path.relpath(os.path.join(d, f), local) for d, _, fs in os.walk(local) for f in fs}
    assert "artifacts/model.keras" in files and "pyfunc_model.py" in files
    assert "code/models/net.py" in files
    assert not [f for f in files if f.endswith((".pkl", ".pickle", ".cloudpickle"))]
    requirements = (tmp_path / "dl" / "requirements.txt").read_text().split()
    assert {r.split("==")[0] for r in requirements} == {"tensorflow", "keras", "mlflow", "numpy"}
    assert client.get_run(run.info.run_id).info.status == "RUNNING"  # logging does not end the run
    # The keras flavor reads the same file: the Keras model back, weights and all.
    keras_model = mlflow.keras.load_model(model_uri)
    assert type(keras_model) is type(model)
    assert all(np.array_equal(a, b) for a, b in zip(keras_model.get_weights(), model.get_weights(), strict=True))
    logged = mlflow.get_logged_model(model_uri.split("/")[-1])
    assert (logged.source_run_id, logged.experiment_id, str(logged.status)) == \
        (run.info.run_id, run.info.experiment_id, "READY")
    assert [o.model_id for o in client.get_run(run.info.run_id).outputs.model_outputs] == [logged.model_id]
