"""`train(cfg)` end to end, in process: every registry model x both variants on digits, tracked."""

from __future__ import annotations

import math

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


def test_run_logs_params_metrics_artifacts_and_model(make_cfg, tmp_path):
    import mlflow

    train(make_cfg("model=dynamic", "depth=2", "epochs=2"))
    client = MlflowClient(tracking_uri(tmp_path))
    (run,) = client.search_runs(client.get_experiment_by_name("trainer").experiment_id)
    params = run.data.params
    assert params["model.knobs.depth"] == "2" and params["epochs"] == "2" and params["data.name"] == "digits"
    assert len(client.get_metric_history(run.info.run_id, "loss")) == 2
    assert {"test_accuracy", "test_loss"} <= set(run.data.metrics)

    mlflow.set_tracking_uri(tracking_uri(tmp_path))
    (logged,) = mlflow.search_logged_models(experiment_ids=[run.info.experiment_id], output_format="list")
    assert logged.source_run_id == run.info.run_id
    model = mlflow.keras.load_model(logged.model_uri)
    assert len([w for w in model.trainable_weights if "kernel" in w.path]) == 3


def test_training_that_raises_ends_failed_with_traceback(make_cfg, tmp_path, monkeypatch):
    from trainer.loops import fit

    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(fit, "run", broken)
    with pytest.raises(RuntimeError, match="disk on fire"):
        train(make_cfg())
    client = MlflowClient(tracking_uri(tmp_path))
    (run,) = client.search_runs(client.get_experiment_by_name("trainer").experiment_id)
    assert run.info.status == "FAILED"
    assert "traceback.txt" in {a.path for a in client.list_artifacts(run.info.run_id)}


def test_unknown_model_lists_known_names():
    with pytest.raises(models.RegistryError) as err:
        models.build("resnt", "functional", input_shape=(8, 8, 1), num_classes=10)
    message = str(err.value)
    for name in models.names():
        assert name in message
    assert "Received: model=resnt" in message
