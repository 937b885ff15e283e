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


_STARTS_ON_A_NEW_STORE = """
import pathlib, sys, time
from mlflow.tracking import MlflowClient
from trainer.tracking import store
folder, uri, me = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3]
(folder / f"ready-{me}").touch()
while not (folder / "go").exists():
    time.sleep(0.005)
store.prepare_store(uri)  # what `python -m trainer` does first, before it opens the store
MlflowClient(uri).search_experiments()
"""


def test_commands_started_together_on_a_new_store_all_open_it(tmp_path):
    # Independent commands (two terminals, a scheduler's array job) that start on a store no run
    # has created yet: MLflow creates the tables with migrations, and two processes running them
    # at once made one fail ("Online migration expected to match one row ... 0 found").
    import subprocess
    import sys
    import time

    from tests.conftest import REPO

    uri = f"sqlite:///{tmp_path / 'outputs' / 'mlflow.db'}"
    procs = [subprocess.Popen([sys.executable, "-c", _STARTS_ON_A_NEW_STORE, str(tmp_path), uri, str(i)], cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(4)]
    while len(list(tmp_path.glob("ready-*"))) < len(procs) and all(p.poll() is None for p in procs):
        time.sleep(0.01)
    (tmp_path / "go").touch()
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0] * len(procs), "\n".join(o[-1500:] for o in outputs)
    assert [e.name for e in MlflowClient(uri).search_experiments()] == ["Default"]
