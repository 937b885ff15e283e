"""`tracking=server` against a real `mlflow server` on 127.0.0.1 with a SQLite backend: a
training run is read back through the REST API, its model loaded with mlflow.pyfunc; a server
that does not answer fails in one line before training starts."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path_factory):
    """http://127.0.0.1:<port> of a fresh server; stopped (its whole process group) at teardown."""
    home = tmp_path_factory.mktemp("mlflow_server")
    port = _free_port()
    log = open(home / "server.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{home / 'mlflow.db'}", "--artifacts-destination", str(home / "artifacts")],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, (home / "server.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(uri + "/health", timeout=2):
                    break
            except OSError:
                assert time.monotonic() < deadline, "mlflow server did not answer in 120 s"
                time.sleep(0.5)
        yield uri
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
        log.close()


def test_training_run_is_recorded_on_the_server(cli, tmp_path, mlflow_server):
    import mlflow

    result = cli("tracking=server", f"tracking.uri={mlflow_server}", "model=mlp", "width=8", "epochs=2")
    assert result.returncode == 0, result.stderr[-3000:]
    assert not (tmp_path / "outputs" / "mlflow.db").exists()  # everything went to the server

    client = MlflowClient(mlflow_server)
    (run,) = client.search_runs(client.get_experiment_by_name("trainer").experiment_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["model.knobs.width"] == "8" and run.data.tags["model"] == "mlp"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_accuracy")] == [0, 1]
    assert {"test_accuracy", "epoch_time_s", "examples_per_second"} <= set(run.data.metrics)
    top = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "plots", "per_class_report.txt", ".hydra", "trainer.log"} <= top
    config = Path(client.download_artifacts(run.info.run_id, "config.yaml")).read_text()
    assert "width: 8" in config

    mlflow.set_tracking_uri(mlflow_server)
    (logged,) = mlflow.search_logged_models(experiment_ids=[run.info.experiment_id], output_format="list")
    assert logged.source_run_id == run.info.run_id
    model = mlflow.pyfunc.load_model(logged.model_uri)
    example = model.input_example if model.input_example is not None else np.zeros((2, 8, 8, 1), np.uint8)
    probabilities = np.asarray(model.predict(example))
    assert probabilities.shape[-1] == 10 and np.allclose(probabilities.sum(axis=-1), 1.0, atol=1e-4)


def test_unreachable_server_fails_in_one_line_before_training(cli, tmp_path):
    port = _free_port()  # nothing listens there
    result = cli("tracking=server", f"tracking.uri=http://127.0.0.1:{port}")
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: tracking.uri must be a reachable MLflow tracking server")
    assert lines[0].endswith(f"Received: tracking.uri=http://127.0.0.1:{port}")
    assert "Epoch" not in result.stdout  # no training started
