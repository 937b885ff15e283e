"""Eight jobs at once through the real joblib launcher, against one SQLite file and against a real
local `mlflow server` (127.0.0.1, SQLite backend): eight FINISHED runs, every epoch metric present,
no lock error, eight distinct output folders."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import tracking_uri

WIDTHS = [4, 5, 6, 7, 8, 9, 10, 11]
EPOCH_METRICS = ("loss", "accuracy", "val_loss", "val_accuracy")


@pytest.mark.parametrize("store", ["sqlite", "server"])
def test_eight_parallel_jobs_lose_nothing(cli, tmp_path, request, store):
    args = ["-m", "model=mlp", f"width={','.join(map(str, WIDTHS))}", "epochs=1",
            "hydra/launcher=joblib", f"hydra.launcher.n_jobs={len(WIDTHS)}"]
    if store == "server":
        uri = request.getfixturevalue("mlflow_server")
        args += ["tracking=server", f"tracking.uri={uri}", "tracking.experiment=eight-jobs"]
    else:
        uri = tracking_uri(tmp_path)
    result = cli(*args, timeout=900)
    output = result.stdout + result.stderr
    assert result.returncode == 0, result.stderr[-3000:]
    assert "database is locked" not in output and "OperationalError" not in output

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("eight-jobs" if store == "server" else "trainer")
    runs = [r for r in client.search_runs([experiment.experiment_id]) if "mlflow.parentRunId" in r.data.tags]
    assert sorted(int(r.data.params["model.knobs.width"]) for r in runs) == WIDTHS
    for run in runs:
        assert run.info.status == "FINISHED", run.data.params["model.knobs.width"]
        for name in EPOCH_METRICS:
            assert [m.step for m in client.get_metric_history(run.info.run_id, name)] == [0], name
        assert {"test_loss", "test_accuracy"} <= set(run.data.metrics)

    folders = {p.parent.parent for p in Path(tmp_path, "outputs", "multiruns").glob("*/*/*/.hydra/config.yaml")}
    assert len(folders) == len(WIDTHS)  # one folder per job, none shared
    assert sorted(r.data.tags["sweep.job"] for r in runs) == sorted(str(i) for i in range(len(WIDTHS)))
