"""Export and serving through the real commands (docs/models-and-serving.md).

One tiny digits run is trained once for the module by `python -m trainer export.formats=[onnx]`
(the end-of-training export); `python -m trainer.export` exports it to every format, and a real
`mlflow models serve` on 127.0.0.1 answers JSON requests of its raw pixels with the probabilities
MLflow's in-process model and the Keras model give. Bad input is refused in one line before
TensorFlow loads, with nothing written.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import tomllib
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import REPO, end_session, free_port, tracking_uri, without_tensorflow
from trainer.config.choices import EXPORT_FORMATS, EXPORT_PACKAGES
from trainer.use.export_config import CHECK_EXAMPLES, TOLERANCE

INSTALL_LINE = 'pip install -e ".[export]"'


def _run(root: Path, module: str, *args: str, extra_env: dict | None = None, timeout: float = 600):
    env = {**os.environ, "TRAINER_ROOT": str(root), "TF_CPP_MIN_LOG_LEVEL": "2", **(extra_env or {})}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run([sys.executable, "-m", module, *args], cwd=root, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tfds_dir):
    """A 2-epoch digits run exported to ONNX as it ends: (project root, run id, client)."""
    root = tmp_path_factory.mktemp("export_root")
    result = _run(root, "trainer", "epochs=2", "export.formats=[onnx]", f"data.data_dir={tfds_dir}",
                  "tracking.system_metrics=false")
    assert result.returncode == 0, result.stderr[-3000:]
    client = MlflowClient(tracking_uri(root))
    (run,) = client.search_runs([client.get_experiment_by_name("trainer").experiment_id])
    return root, run.info.run_id, client


def _files(root: Path) -> list:
    """Every file and folder under root, but SQLite's journal files, which come and go with readers."""
    return sorted(p.relative_to(root) for p in root.rglob("*") if not p.name.startswith("mlflow.db-"))


def _artifacts(client, run_id: str, path: str) -> set[str]:
    return {a.path for a in client.list_artifacts(run_id, path)}


def test_export_at_the_end_of_training(trained):
    root, run_id, client = trained
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.metrics["test_accuracy"] > 0.8  # it learned: what was exported is a trained model
    assert run.data.metrics["export/onnx/max_abs_diff"] <= TOLERANCE
    assert run.data.metrics["export/onnx/examples"] == CHECK_EXAMPLES
    assert _artifacts(client, run_id, "export/onnx") == {"export/onnx/model.onnx"}
    assert {"export/export.json", "export/export.md"} <= _artifacts(client, run_id, "export")
    (run_dir,) = (root / "outputs" / "runs").glob("*/*")
    report = json.loads((run_dir / "export" / "export.json").read_text())["exports"]
    assert [r["format"] for r in report] == ["onnx"]
    assert report[0]["check_inputs"] == f"the first {CHECK_EXAMPLES} examples of the test split of digits"


def test_export_command_writes_checks_and_logs_every_format(trained):
    root, run_id, client = trained
    result = _run(root, "trainer.export", f"run={run_id}", "format=[saved_model,onnx,litert]")
    assert result.returncode == 0, result.stderr[-3000:]
    out = root / "outputs" / "exports" / run_id
    assert f"logged to run {run_id} as export/" in result.stdout
    assert (out / "saved_model" / "saved_model" / "saved_model.pb").is_file()
    assert (out / "onnx" / "model.onnx").stat().st_size > 1000
    assert (out / "litert" / "model.tflite").stat().st_size > 1000
    report = json.loads((out / "export.json").read_text())["exports"]
    assert [r["format"] for r in report] == ["saved_model", "onnx", "litert"]
    for record in report:
        assert record["examples"] == CHECK_EXAMPLES and 0 <= record["max_abs_diff"] <= TOLERANCE, record
        assert client.get_run(run_id).data.metrics[f"export/{record['format']}/max_abs_diff"] == record["max_abs_diff"]
    assert "| litert | litert/model.tflite |" in (out / "export.md").read_text()
    assert _artifacts(client, run_id, "export/litert") == {"export/litert/model.tflite"}
    assert "export/saved_model/saved_model" in _artifacts(client, run_id, "export/saved_model")
    assert "Traceback" not in result.stderr and "tf2onnx" not in result.stderr  # no converter chatter


def test_bad_input_is_one_line_before_tensorflow_and_writes_nothing(trained, tmp_path):
    root, run_id, _ = trained
    blocked = without_tensorflow(tmp_path)
    before = _files(root)
    allowed = ", ".join(EXPORT_FORMATS)
    cases = [
        (("trainer.export", f"run={run_id}", "format=tflite"),
         f"error: format must name export formats among {allowed}; tflite is not one. Received: format=tflite"),
        (("trainer.export", f"run={run_id}", "format=onnx,litert"),
         "error: Ambiguous value for argument 'format=onnx,litert' 1. To use it as a list, use key=[value1,value2]"
         " 2. To use it as string, quote the value: key=\\'value1,value2\\' 3. To sweep over it, add --multirun to"
         f" your command line Received: run={run_id} format=onnx,litert"),
        (("trainer.export", "run=0123456789abcdef0123456789abcdef"),
         f"error: run must be a run of the tracking store {tracking_uri(root)}; it has no run"
         " 0123456789abcdef0123456789abcdef (`mlflow ui` lists them, or use models:/<model id>)."
         " Received: run=0123456789abcdef0123456789abcdef"),
        (("trainer.export", "format=onnx"),
         "error: run must name the model to export: a run id (32 hex characters), models:/<model id>,"
         " models:/<name>/<version>, models:/<name>@<alias> or a path to a .keras file (python -m trainer.export"
         " run=<run id> format=onnx). Received: run=???"),
        (("trainer", "export.formats=[onnx,tflite]"),
         f"error: export.formats must name export formats among {allowed}; tflite is not one."
         " Received: export.formats=[onnx,tflite]"),
    ]
    for args, line in cases:
        result = _run(root, *args, extra_env=blocked)
        assert (result.returncode, result.stderr.splitlines()) == (2, [line]), (args, result.stderr[-2000:])
    assert _files(root) == before


def test_a_missing_optional_package_is_named_before_anything_is_written(trained, tmp_path):
    """tf2onnx made unimportable (None in sys.modules, as Python marks a module that cannot be
    imported): both commands name the package and the install command, exit 2, write nothing."""
    root, run_id, _ = trained
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text("import sys\nsys.modules['tf2onnx'] = None\n")
    env = without_tensorflow(tmp_path)
    env["PYTHONPATH"] = os.pathsep.join([str(shim), env["PYTHONPATH"]])
    before = _files(root)
    for args, key, value in [(("trainer.export", f"run={run_id}", "format=[litert,onnx]"), "format", "[litert,onnx]"),
                             (("trainer", "export.formats=[onnx]"), "export.formats", "[onnx]")]:
        result = _run(root, *args, extra_env=env)
        assert result.returncode == 2, result.stderr[-2000:]
        assert result.stderr.splitlines() == [
            f"error: {key} includes onnx, which needs the Python package tf2onnx (not installed here):"
            f" {INSTALL_LINE} installs it. Received: {key}={value}"]
    assert _files(root) == before


def test_the_export_extra_installs_what_each_format_needs():
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    declared = {r.split(">")[0].split("=")[0].split("<")[0] for r in extras["export"]}
    assert declared == {p for packages in EXPORT_PACKAGES.values() for p in packages}
    assert "trainer[export]" in extras["test"]  # the suite exports to every format


def test_a_failed_check_writes_nothing(tmp_path, monkeypatch):
    """An export whose file computes something else is refused, and the folder an earlier export
    wrote is left exactly as it was."""
    import keras

    from trainer.errors import ExportMismatch
    from trainer.use import export as exporting

    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(3, activation="softmax")])
    inputs = np.random.default_rng(0).random((16, 8, 8, 1), dtype=np.float32)
    out = tmp_path / "exports"
    (record,) = exporting.export(model, ["saved_model"], str(out), inputs, inputs_note="random")
    assert record["max_abs_diff"] <= TOLERANCE
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    real = exporting._RUNNERS["saved_model"]
    monkeypatch.setitem(exporting._RUNNERS, "saved_model", lambda path, x: real(path, x) + 1e-3)
    with pytest.raises(ExportMismatch, match=r"the saved_model export differs from the Keras model by up to 0\.001"):
        exporting.export(model, ["saved_model"], str(out), inputs, inputs_note="random")
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before
    assert [p.name for p in tmp_path.iterdir()] == ["exports"]  # no staging folder left behind


def test_mlflow_models_serve_answers_raw_pixels_like_the_model(trained, tmp_path):
    """A real `mlflow models serve --env-manager local` (no pip, no new environment) on 127.0.0.1:
    the JSON request docs/models-and-serving.md shows, with test images as raw uint8 pixels, gets
    the probabilities of mlflow.pyfunc's model and of the Keras model on x / 255."""
    import mlflow

    from trainer import data as data_lib

    root, run_id, client = trained
    model_uri = f"models:/{client.get_run(run_id).outputs.model_outputs[0].model_id}"
    data = data_lib.load(**_logged_data(client, run_id), batch_size=64, seed=42)
    pixels = np.concatenate([x.numpy() for x, _ in data.examples("test").batch(64).take(1)])
    assert pixels.dtype == np.uint8 and pixels.shape == (64, 8, 8, 1)

    mlflow.set_tracking_uri(tracking_uri(root))
    served_in_process = mlflow.pyfunc.load_model(model_uri)
    expected = served_in_process.predict(pixels)
    keras_model = served_in_process.unwrap_python_model().model
    np.testing.assert_allclose(keras_model.predict(pixels / np.float32(255), verbose=0), expected, atol=1e-6)

    port = free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri(root), "TF_CPP_MIN_LOG_LEVEL": "2",
           # `mlflow models serve` starts `uvicorn` by name: the venv's scripts must be on PATH
           "PATH": os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])}
    log_path = tmp_path / "serve.log"
    with open(log_path, "w") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri, "--env-manager", "local",
             "--host", "127.0.0.1", "--port", str(port)],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp_path, start_new_session=True)
    try:
        _wait_for(f"http://127.0.0.1:{port}/ping", server, log_path)
        body = json.dumps({"inputs": pixels.tolist()}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            answer = json.loads(response.read())
    finally:
        end_session(server)
    served = np.asarray(answer["predictions"], dtype=np.float32)
    np.testing.assert_allclose(served, expected, atol=1e-6)
    assert (served.argmax(1) == np.asarray([y for _, y in data.examples("test").take(64).as_numpy_iterator()])).mean() > 0.8
    text = log_path.read_text()
    assert "pip install" not in text and "virtualenv" not in text  # --env-manager local: nothing installed


def _logged_data(client, run_id: str) -> dict:
    """The `data` settings the run logged (config.yaml), without the run-level keys load() adds."""
    import yaml

    path = client.download_artifacts(run_id, "config.yaml")
    settings = yaml.safe_load(Path(path).read_text())
    return settings["data"]


def _wait_for(url: str, server: subprocess.Popen, log_path: Path, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while True:
        assert server.poll() is None, log_path.read_text()[-3000:]
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            assert time.monotonic() < deadline, f"mlflow models serve did not answer in {timeout} s"
            time.sleep(0.5)
