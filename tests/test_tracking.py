"""What every run records in MLflow, against a real SQLite store: params, tags, per-epoch and
per-step metrics, system metrics, artifacts, registration, the run's name, and tracking switched off."""

from __future__ import annotations

import math
import re
import threading
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import tracking_uri
from trainer.tracking import store, system_metrics, tracker as tracking
from trainer.tracking.provenance import code_root, git_state
from trainer.config.validate import validate
from trainer.errors import ConfigError
from trainer.train import train


def _only_run(root):
    client = MlflowClient(tracking_uri(root))
    (run,) = client.search_runs(client.get_experiment_by_name("trainer").experiment_id)
    return client, run


def _artifacts(client, run_id, path=None) -> set[str]:
    out = set()
    for item in client.list_artifacts(run_id, path):
        out |= _artifacts(client, run_id, item.path) if item.is_dir else {item.path}
    return out


def test_tracking_off_trains_and_writes_nothing_to_mlflow(make_cfg, tmp_path, capsys):
    metrics = train(make_cfg("tracking=none", "model=mlp", "width=8"))
    assert math.isfinite(metrics["test_accuracy"])
    assert not (tmp_path / "outputs" / "mlflow.db").exists()
    assert not (tmp_path / "outputs" / "mlartifacts").exists()
    assert "tracking off" in capsys.readouterr().out


def test_run_records_params_tags_metrics_and_artifacts(make_cfg, tmp_path):
    cfg = make_cfg("model=dynamic", "depth=1", "width=8", "epochs=2", "tracking.log_every_n_steps=10",
                   "tracking.register_as=digits-classifier")
    # What Hydra leaves in the run folder under `python -m trainer`, which make_cfg does not run.
    run_dir = Path(cfg.hydra.runtime.output_dir)
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "overrides.yaml").write_text("- model=dynamic\n")
    (run_dir / "trainer.log").write_text("a log line\n")
    train(cfg)

    client, run = _only_run(tmp_path)
    assert run.info.status == "FINISHED"
    params, tags = run.data.params, run.data.tags
    assert params["model.knobs.depth"] == "1" and params["optimizer.learning_rate"] == str(cfg.optimizer.learning_rate)
    assert "tracking.uri" not in params and "paths.root_dir" not in params  # where, not what, is trained
    assert {"model", "variant", "loop", "dataset", "git.commit", "git.dirty", "command"} <= set(tags)
    assert tags["model"] == "dynamic" and tags["dataset"] == "digits"
    # The commit of the code that ran (this checkout), whatever folder the outputs go to.
    assert (tags["git.commit"], tags["git.dirty"]) == git_state(code_root())
    assert tags["registered_model"] == "digits-classifier v1"
    assert "mlflow.parentRunId" not in tags and "sweep" not in tags

    history = {name: client.get_metric_history(run.info.run_id, name)
               for name in ("loss", "val_accuracy", "epoch_time_s", "examples_per_second", "step/loss")}
    assert [m.step for m in history["loss"]] == [0, 1]
    assert [m.step for m in history["epoch_time_s"]] == [0, 1] and all(m.value > 0 for m in history["epoch_time_s"])
    assert all(m.value > 0 for m in history["examples_per_second"])
    steps = [m.step for m in history["step/loss"]]
    assert steps and all(s % 10 == 0 for s in steps) and steps == sorted(steps)
    assert {"test_accuracy", "test_loss"} <= set(run.data.metrics)
    # The machine under the run, for the run page's "System metrics" tab: a sample at least.
    assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes",
            "system/disk_usage_percentage"} <= set(run.data.metrics)
    assert client.get_metric_history(run.info.run_id, "system/cpu_utilization_percentage")
    assert not [t for t in threading.enumerate() if t.name == system_metrics.THREAD_NAME]  # stopped with the run

    assert {"config.yaml", "overrides.txt", "model_summary.txt", "per_class_report.txt", "trainer.log",
            ".hydra/overrides.yaml", "plots/training_curves.png", "plots/confusion_matrix.png"} <= _artifacts(client, run.info.run_id)
    report = client.download_artifacts(run.info.run_id, "per_class_report.txt")
    lines = Path(report).read_text().splitlines()
    assert lines[0].split() == ["class", "precision", "recall", "f1", "support"]
    assert sum(int(line.split()[-1]) for line in lines[1:11]) == int(lines[-1].split()[-1]) > 300  # each test example once
    png = Path(client.download_artifacts(run.info.run_id, "plots/confusion_matrix.png")).read_bytes()
    assert png.startswith(b"\x89PNG")

    (version,) = client.search_model_versions("name = 'digits-classifier'")
    assert version.run_id == run.info.run_id


def test_failure_after_an_epoch_keeps_its_metrics(make_cfg, tmp_path, monkeypatch):
    from trainer.tracking import artifacts

    def broken(*args, **kwargs):
        raise RuntimeError("plotting exploded")

    monkeypatch.setattr(artifacts, "log_evaluation", broken)
    with pytest.raises(RuntimeError, match="plotting exploded"):
        train(make_cfg("model=mlp", "width=8", "epochs=2"))
    client, run = _only_run(tmp_path)
    assert run.info.status == "FAILED"
    assert len(client.get_metric_history(run.info.run_id, "val_loss")) == 2
    assert "traceback.txt" in _artifacts(client, run.info.run_id)
    assert client.get_metric_history(run.info.run_id, "system/cpu_utilization_percentage")
    assert not [t for t in threading.enumerate() if t.name == system_metrics.THREAD_NAME]  # stopped however it ended


def test_system_metrics_off_records_none(make_cfg, tmp_path):
    train(make_cfg("model=mlp", "width=8", "tracking.system_metrics=false"))
    _, run = _only_run(tmp_path)
    assert run.info.status == "FINISHED" and run.data.metrics
    assert not [key for key in run.data.metrics if key.startswith("system/")]


def test_system_metrics_sample_until_stopped_and_a_short_run_gets_one(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    store.prepare_store(uri)
    client = MlflowClient(uri)
    run_id = client.create_run(client.create_experiment("system")).info.run_id

    def steps():
        return sorted(m.step for m in client.get_metric_history(run_id, "system/cpu_utilization_percentage"))

    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.2")  # MLflow's own setting wins
    sampler = system_metrics.SystemMetrics(client, run_id)
    time.sleep(1.5)
    sampler.stop()
    sampled = steps()
    assert len(sampled) >= 3 and sampled == list(range(len(sampled)))
    assert not [t for t in threading.enumerate() if t.name == system_metrics.THREAD_NAME]
    assert all(0 <= m.value <= 100 for m in client.get_metric_history(run_id, "system/cpu_utilization_percentage"))

    # A run that ends before one interval passes still records one sample; a resumed run's
    # samples continue after the steps its killed attempt recorded.
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "3600")
    system_metrics.SystemMetrics(client, run_id, first_step=len(sampled)).stop()
    assert steps() == list(range(len(sampled) + 1))


def test_runs_of_one_seed_get_distinct_names_that_say_what_ran_and_its_source(cli, tmp_path):
    """MLflow draws its own names ("aged-skink-281") from Python's `random`, which the seed fixes
    before the run exists: every run of one seed got the same name."""
    for _ in range(2):
        result = cli("model=mlp", "width=8", "loop=custom", "seed=7")
        assert result.returncode == 0, result.stderr[-3000:]
    client = MlflowClient(tracking_uri(tmp_path))
    runs = client.search_runs(client.get_experiment_by_name("trainer").experiment_id)
    names = [run.info.run_name for run in runs]
    assert len(names) == 2 and len(set(names)) == 2, names
    commit, _ = git_state(code_root())
    for run in runs:
        assert re.fullmatch(r"mlp-digits-custom-\d{4}-[0-9a-f]{4}", run.info.run_name), run.info.run_name
        # What the runs table's Source and Version columns show: the entry point and the commit.
        tags = run.data.tags
        assert (tags["mlflow.source.name"], tags["mlflow.source.type"]) == ("python -m trainer", "LOCAL")
        assert tags.get("mlflow.source.git.commit", "unknown") == tags["git.commit"] == commit


def test_params_are_dotted_plain_and_within_mlflow_limits():
    long_key = "a." * 200 + "b"
    items = tracking.param_items({"lr": 0.001, "on": True, "off": None, "sizes": [1, 2], "deep": {"x": {"y": 3}},
                                  "text": "z" * 7000, long_key: 1, long_key + "c": 2})
    assert items["lr"] == "0.001" and items["on"] == "true" and items["off"] == "null"
    assert items["sizes"] == "[1, 2]" and items["deep.x.y"] == "3"
    assert len(items["text"]) == tracking.PARAM_VALUE_LIMIT and items["text"].endswith("see config.yaml)")
    long_keys = [k for k in items if k.startswith("a.a.")]
    assert len(long_keys) == 2 and all(len(k) <= tracking.KEY_LIMIT for k in long_keys)


def test_writes_are_retried_while_sqlite_reports_a_lock(monkeypatch):
    monkeypatch.setattr(store.time, "sleep", lambda seconds: None)
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise RuntimeError("(sqlite3.OperationalError) database is locked")
        return "written"

    assert store.with_lock_retries(flaky) == "written" and len(calls) == 3

    def broken():
        calls.append(1)
        raise RuntimeError("no such table: runs")

    calls.clear()
    with pytest.raises(RuntimeError, match="no such table"):
        store.with_lock_retries(broken)
    assert len(calls) == 1  # other errors are not retried


def test_sqlite_store_is_switched_to_wal(tmp_path):
    import sqlite3

    path = tmp_path / "store" / "mlflow.db"
    store.prepare_store(f"sqlite:///{path}")
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


@pytest.mark.parametrize(
    "override, expected",
    [
        ("tracking.log_every_n_steps=-1", "tracking.log_every_n_steps must be an integer >= 0"),
        ("tracking.enabled=maybe", "tracking.enabled must be true or false"),
        ("tracking.system_metrics=1", "tracking.system_metrics must be true or false. Received: tracking.system_metrics=1"),
        ("tracking.uri=mlflow.db", "tracking.uri must be an MLflow tracking URI"),
        ("tracking.experiment=''", "tracking.experiment must be a non-empty experiment name"),
        ("sweep.direction=up", "sweep.direction must be one of maximize, minimize. Received: sweep.direction=up"),
    ],
)
def test_bad_tracking_and_sweep_settings_are_one_line(make_cfg, override, expected):
    with pytest.raises(ConfigError, match=expected.replace(".", r"\.").replace("(", r"\(")):
        validate(make_cfg(override))


def test_git_state_is_unknown_outside_a_checkout(tmp_path):
    from trainer.tracking.provenance import git_state

    assert git_state(str(tmp_path)) == ("unknown", "unknown")  # no crash, an honest tag


def test_step_logger_logs_at_global_steps_across_blocks_and_a_resumed_epoch():
    class Recorder:
        def __init__(self):
            self.steps = []

        def log_metrics(self, metrics, step=0):
            self.steps.append(step)

    recorder = Recorder()
    logger = tracking.StepLogger(recorder, every=4)
    logger.set_params({"steps": 10, "epochs": 3})
    for epoch in (1, 2):  # a run resumed after epoch 1, steps_per_execution=3: blocks end at 2, 5, 8, 9
        logger.on_epoch_begin(epoch)
        for end in (2, 5, 8, 9):
            logger.on_train_batch_end(end, {"loss": 1.0})
    # At the end of each block that reaches a multiple of 4: 13 (12), 16, 20; 26 (24), 29 (28).
    assert recorder.steps == [13, 16, 20, 26, 29]


def test_no_tracker_has_every_public_tracker_method_and_records_nothing():
    """NoTracker is not written out method by method: a method added to Tracker is a no-op there
    at once, and a name Tracker does not have is still an AttributeError."""
    disabled = tracking.NoTracker()
    public = [n for n, v in vars(tracking.Tracker).items() if callable(v) and not n.startswith("_")]
    assert {"start", "log_metrics", "log_text", "log_model", "end"} <= set(public)
    for name in public:
        assert callable(getattr(disabled, name)), name
    assert disabled.start(params={"a": 1}, tags={}, run_name="x") is None
    assert disabled.log_model(object(), input_example=None) is None
    assert (disabled.enabled, disabled.run_id, disabled.unconfirmed(), disabled.ui_command()) == (False, None, [], "")
    with pytest.raises(AttributeError):
        disabled.no_such_method()
