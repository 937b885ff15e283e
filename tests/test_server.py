"""`tracking=server` against a real `mlflow server` on 127.0.0.1 with a SQLite backend: a
training run is read back through the REST API, its model loaded with mlflow.pyfunc; a server
that does not answer fails in one line before training starts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from mlflow.tracking import MlflowClient

from tests.conftest import free_port


def test_training_run_is_recorded_on_the_server(cli, tmp_path, mlflow_server):
    import mlflow

    # The server is shared by the session's tests: each keeps to its own experiment.
    result = cli("tracking=server", f"tracking.uri={mlflow_server}", "tracking.experiment=server-run", "model=mlp",
                 "width=8", "epochs=2")
    assert result.returncode == 0, result.stderr[-3000:]
    assert not (tmp_path / "outputs" / "mlflow.db").exists()  # everything went to the server

    client = MlflowClient(mlflow_server)
    (run,) = client.search_runs(client.get_experiment_by_name("server-run").experiment_id)
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
    port = free_port()  # nothing listens there
    result = cli("tracking=server", f"tracking.uri=http://127.0.0.1:{port}")
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: tracking.uri must be a reachable MLflow tracking server")
    assert lines[0].endswith(f"Received: tracking.uri=http://127.0.0.1:{port}")
    assert "Epoch" not in result.stdout  # no training started
