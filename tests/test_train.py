"""`train(cfg)` end to end, in process: every registry model x both variants on digits, tracked.

What a run records is tested in test_tracking.py (params, tags, metrics, artifacts, and a failure
that keeps its metrics and traceback), test_cli.py (the logged model loads back) and
test_loops.py (a failure inside either loop ends the run FAILED with its traceback)."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import pytest
from mlflow.tracking import MlflowClient

import models
from tests.conftest import tracking_uri
from trainer.train import train


@pytest.mark.parametrize("variant", models.VARIANTS)
@pytest.mark.parametrize("name", models.names())
def test_every_model_and_variant_trains_one_epoch(make_cfg, tmp_path, name, variant):
    metrics = train(make_cfg(f"model={name}", f"model.variant={variant}"))
    assert set(metrics) >= {"loss", "accuracy", "val_loss", "val_accuracy", "test_loss", "test_accuracy"}
    assert all(math.isfinite(v) for v in metrics.values())

    client = MlflowClient(tracking_uri(tmp_path))
    (run,) = client.search_runs(client.get_experiment_by_name("trainer").experiment_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["model"] == name and run.data.tags["variant"] == variant
    assert run.data.params["model.name"] == name
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_accuracy")] == [0]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "overrides.txt"} <= artifacts


def test_unknown_model_lists_known_names():
    with pytest.raises(models.RegistryError) as err:
        models.define("resnt", {})
    message = str(err.value)
    for name in models.names():
        assert name in message
    assert "Received: model=resnt" in message


def test_the_first_imports_are_frozen_out_of_the_collector_and_a_later_jobs_are_not():
    code = ("import gc, sys\n"
            "import trainer.train as t\n"
            "with t._kept_for_good():\n"
            "    import tensorflow\n"
            "first = gc.get_freeze_count()\n"
            "with t._kept_for_good():\n"
            "    garbage = [[] for _ in range(1000)]\n"
            "print(first > 0, gc.get_freeze_count() == first, gc.isenabled())\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    # Frozen once, by the imports; what the next job makes stays collectable; the collector runs again.
    assert proc.stdout.split() == ["True", "True", "True"]
