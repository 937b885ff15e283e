"""`callbacks.checkpoint.enabled=true`: the best epoch is logged, once, as the MLflow LoggedModel
"best" beside the final "model", with that epoch's metrics linked to it (real SQLite store)."""

from __future__ import annotations

import json

import mlflow
import numpy as np
from mlflow.tracking import MlflowClient

from models import saving
from tests.conftest import tracking_uri
from trainer.train import train


def test_best_epoch_is_a_logged_model_the_models_tab_ranks_by_its_metrics(make_cfg, tmp_path):
    train(make_cfg("model=mlp", "width=16", "epochs=4", "callbacks.checkpoint.enabled=true",
                   "callbacks.checkpoint.monitor=val_accuracy"))
    client = MlflowClient(tracking_uri(tmp_path))
    experiment = client.get_experiment_by_name("trainer").experiment_id
    (run,) = client.search_runs([experiment])
    history = client.get_metric_history(run.info.run_id, "val_accuracy")
    assert [m.step for m in history] == [0, 1, 2, 3]  # linking added no second value to any epoch
    values = [m.value for m in history]
    best_epoch = values.index(max(values))  # the first epoch with the highest value, as Keras keeps it
    record = json.loads((tmp_path / "run" / "best.json").read_text())
    assert record["epoch"] == best_epoch and record["monitor"] == "val_accuracy"

    mlflow.set_tracking_uri(tracking_uri(tmp_path))
    ranked = mlflow.search_logged_models(experiment_ids=[experiment], output_format="list", order_by=[
        {"field_name": "metrics.val_accuracy", "ascending": False}])
    # The final model carries the metrics of step 0 (MLflow links a model logged at step 0 to
    # them), which the best epoch, a later one as the model learns, beats.
    assert best_epoch > 0 and [m.name for m in ranked] == ["best", "model"]
    best = ranked[0]
    assert best.source_run_id == run.info.run_id
    assert best.tags["epoch"] == str(best_epoch) and best.tags["monitor"] == "val_accuracy"
    assert best.params["callbacks.checkpoint.enabled"] == "true"  # the run's params, as the final model has them
    linked = {m.key: (m.value, m.step) for m in best.metrics if not m.key.startswith("system/")}
    assert linked["val_accuracy"] == (values[best_epoch], best_epoch)
    for key in ("val_loss", "accuracy", "loss"):
        (at_best,) = [m for m in client.get_metric_history(run.info.run_id, key) if m.step == best_epoch]
        assert linked[key] == (at_best.value, best_epoch), key

    # The logged model is the checkpoint: it predicts raw pixels as best.keras predicts x / 255.
    pixels = np.random.default_rng(0).integers(0, 256, size=(5, 8, 8, 1), dtype=np.uint8)
    served = mlflow.pyfunc.load_model(f"models:/{best.model_id}").predict(pixels)
    checkpoint = saving.load(tmp_path / "run" / "best.keras", compile=False)
    np.testing.assert_allclose(served, checkpoint.predict(pixels / 255.0, verbose=0), atol=1e-6)

