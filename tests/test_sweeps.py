"""Sweeps and run statuses through the real command line: a grid multirun as a parent run with
tagged children (one of which fails), an Optuna search, a joblib sweep of 4 jobs 2 at a time
against one SQLite file, a sweep that stops at its first failing job
(`sweep.continue_on_failure=false`), a sweep stopped by SIGTERM, an unreachable study database, and
a grid-sampled study in a journal file of its own. Resuming a sweep: tests/test_sweep_resume.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from mlflow.tracking import MlflowClient

from tests.conftest import REPO, free_port, tracking_uri, without_tensorflow

FAULTS = str(REPO / "tests" / "faults")


def _family(root):
    """(client, parent run, {run name: child run}) of the one sweep in the store."""
    client = MlflowClient(tracking_uri(root))
    runs = client.search_runs(client.get_experiment_by_name("trainer").experiment_id)
    (parent,) = [r for r in runs if r.data.tags.get("sweep.role") == "parent"]
    children = {r.info.run_name: r for r in runs if r.info.run_id != parent.info.run_id}
    return client, parent, children


def _fail_after_epoch(epoch: int, when: str | None = None) -> dict:
    env = {"PYTHONPATH": os.pathsep.join([FAULTS, os.environ.get("PYTHONPATH", "")]),
           "TRAINER_TEST_FAIL_AFTER_EPOCH": str(epoch)}
    return env | ({"TRAINER_TEST_FAIL_WHEN": when} if when else {})


def test_grid_sweep_is_a_parent_with_tagged_children_and_survives_a_failing_job(cli, tmp_path):
    result = cli("-m", "model=dynamic", "depth=1,2", "width=8", "epochs=2",
                 extra_env=_fail_after_epoch(0, when="depth=2"))
    assert result.returncode == 1, result.stderr[-3000:]
    assert "1 job(s) of the sweep did not finish: #1 depth=2" in result.stderr

    client, parent, children = _family(tmp_path)
    assert set(children) == {"depth=1", "depth=2"}
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["sweep.overrides"].startswith("model=dynamic depth=1,2 width=8 epochs=2")
    for job, (name, child) in enumerate(sorted(children.items())):
        tags = child.data.tags
        assert tags["mlflow.parentRunId"] == parent.info.run_id
        assert tags["sweep"] == parent.data.tags["sweep"] and tags["sweep.job"] == str(job)
        assert tags["model"] == "dynamic" and tags["loop"] == "fit" and tags["dataset"] == "digits"
        assert child.data.params["model.knobs.depth"] == name[-1]

    ok, failed = children["depth=1"], children["depth=2"]
    assert ok.info.status == "FINISHED" and failed.info.status == "FAILED"
    # The failing job keeps the epoch it logged and says why it failed.
    assert len(client.get_metric_history(failed.info.run_id, "loss")) == 1
    traceback = Path(client.download_artifacts(failed.info.run_id, "traceback.txt")).read_text()
    assert "injected failure after epoch 0" in traceback

    assert parent.data.tags["best_overrides"] == "depth=1"
    assert parent.data.metrics["best_val_accuracy"] == ok.data.metrics["val_accuracy"]
    assert parent.data.metrics["sweep_failed_jobs"] == 1
    table = Path(client.download_artifacts(parent.info.run_id, "jobs.csv")).read_text().splitlines()
    assert table[0] == "job,overrides,status,val_accuracy,best_val_accuracy,best_epoch,run_id" and len(table) == 3
    assert "best overrides: depth=1" in Path(client.download_artifacts(parent.info.run_id, "sweep_summary.md")).read_text()


def test_optuna_search_runs_its_trials_as_children_and_survives_a_failing_trial(cli, tmp_path):
    result = cli("-m", "hparams_search=optuna", "hydra.sweeper.n_trials=3", "epochs=1",
                 extra_env=_fail_after_epoch(0, when="job=0"))
    assert result.returncode == 1, result.stderr[-3000:]
    assert "1 job(s) of the sweep did not finish: #0" in result.stderr

    client, parent, children = _family(tmp_path)
    assert parent.data.tags["sweep.sweeper"] == "OptunaSweeper" and len(children) == 3
    statuses = {c.data.tags["sweep.job"]: c.info.status for c in children.values()}
    assert statuses == {"0": "FAILED", "1": "FINISHED", "2": "FINISHED"}
    # Each run says how its study recorded the trial (docs/sweeps.md#pruning).
    assert {c.data.tags["sweep.job"]: c.data.tags["sweep.trial_state"] for c in children.values()} == {
        "0": "FAILED", "1": "COMPLETE", "2": "COMPLETE"}
    children = {name: c for name, c in children.items() if c.info.status == "FINISHED"}
    for child in children.values():
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        # The trial's sampled values are its params and its name.
        for key in ("optimizer.learning_rate", "batch_size"):
            assert f"{key}={child.data.params[key]}" in child.info.run_name
    best = max(c.data.metrics["val_accuracy"] for c in children.values())
    assert parent.data.metrics["best_val_accuracy"] == best
    results = Path(client.download_artifacts(parent.info.run_id, "optimization_results.yaml")).read_text()
    assert "best_value" in results


def test_parallel_joblib_sweep_on_one_sqlite_file_loses_nothing(cli, tmp_path):
    result = cli("-m", "model=mlp", "width=4,8,16,32", "epochs=2", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "database is locked" not in result.stderr + result.stdout

    client, parent, children = _family(tmp_path)
    assert parent.data.tags["sweep.launcher"] == "JoblibLauncher"
    assert parent.data.tags["mlflow.source.name"] == "python -m trainer"
    assert set(children) == {"width=4", "width=8", "width=16", "width=32"}
    for child in children.values():
        assert child.info.status == "FINISHED"
        for name in ("loss", "accuracy", "val_loss", "val_accuracy", "epoch_time_s", "examples_per_second"):
            assert [m.step for m in client.get_metric_history(child.info.run_id, name)] == [0, 1], name
        system = client.get_metric_history(child.info.run_id, "system/cpu_utilization_percentage")
        assert sorted(m.step for m in system) == list(range(len(system))) and system  # parallel writers lose none
        assert {"test_loss", "test_accuracy"} <= set(child.data.metrics)
    job_dirs = {c.data.tags["sweep.job"] for c in children.values()}
    assert job_dirs == {"0", "1", "2", "3"}


def test_continue_on_failure_false_stops_the_sweep_at_its_first_failing_job(cli, tmp_path):
    result = cli("-m", "model=mlp", "width=4,8", "epochs=1", "sweep.continue_on_failure=false",
                 extra_env=_fail_after_epoch(0, when="job=0"))
    assert result.returncode == 1, result.stderr[-3000:]
    assert result.stderr.strip().splitlines()[-1] == (
        "error: a job failed (RuntimeError: injected failure after epoch 0) and sweep.continue_on_failure=false"
        " stops the sweep; its MLflow run holds the traceback")
    client, parent, children = _family(tmp_path)
    assert set(children) == {"width=4"}  # the second job never started
    assert children["width=4"].info.status == "FAILED"
    assert parent.info.status == "FAILED"  # stopped by a failing job: neither RUNNING, nor FINISHED, nor KILLED


def test_sigterm_ends_a_sweep_its_parent_and_running_job_killed_and_starts_no_other_job(tmp_path, tfds_dir):
    env = {**os.environ, "TRAINER_ROOT": str(tmp_path), "TF_CPP_MIN_LOG_LEVEL": "2"}
    process = subprocess.Popen([sys.executable, "-m", "trainer", "-m", "model=mlp", "width=4,8", "epochs=1000",
                                f"data.data_dir={tfds_dir}"], cwd=tmp_path, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        run_id = _wait_for_an_epoch(tmp_path, process)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 128 + signal.SIGTERM, stderr[-3000:]
    assert stderr.strip().splitlines()[-1] == "error: stopped: received signal SIGTERM; the MLflow run is recorded KILLED"
    client, parent, children = _family(tmp_path)
    assert parent.info.status == "KILLED"
    assert set(children) == {"width=4"} and children["width=4"].info.run_id == run_id
    assert children["width=4"].info.status == "KILLED"
    assert len(client.get_metric_history(run_id, "loss")) >= 1


def _wait_for_an_epoch(root, process, timeout: float = 300) -> str:
    """The id of the first job's run, once it has logged an epoch."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[1][-3000:]
        # Written once the parent run exists, so the store's tables are made: reading the store
        # while its first process still creates them would race it.
        if list(Path(root, "outputs", "multiruns").glob("*/*/mlflow_parent_run_id")):
            client = MlflowClient(tracking_uri(root))
            experiment = client.get_experiment_by_name("trainer").experiment_id
            for run in client.search_runs(experiment):
                if client.get_metric_history(run.info.run_id, "loss"):
                    return run.info.run_id
        time.sleep(0.5)
    raise AssertionError("the run logged no epoch in time")


def test_identical_jobs_of_a_parallel_sweep_the_second_is_refused_and_the_sweep_goes_on(cli, tmp_path):
    # Both jobs start together and train long enough to overlap: one holds the command's
    # checkpoint folder, the other is refused before it opens a run and counts as a failed job.
    result = cli("-m", "model=mlp", "width=4,4", "epochs=150", "callbacks.progress=none",
                 "hydra/launcher=joblib", "hydra.launcher.n_jobs=2")
    assert result.returncode == 1, result.stderr[-3000:]  # as for any sweep with a failed job
    assert "1 job(s) of the sweep did not finish" in result.stderr and "(no run: see" in result.stderr
    (failed,) = Path(tmp_path, "outputs", "multiruns").glob("*/*/*/job_failed.txt")
    assert "FolderInUse: pid " in failed.read_text()
    assert "is running this same command and holds its resume checkpoint folder" in failed.read_text()
    client, parent, children = _family(tmp_path)
    assert parent.info.status == "FINISHED"
    assert [c.info.status for c in children.values()] == ["FINISHED"]  # and no half-made run of the other
    assert "sweep: 2 jobs, 1 finished, 1 failed" in result.stdout
    assert parent.data.metrics["sweep_jobs"] == 2 and parent.data.metrics["sweep_failed_jobs"] == 1


def test_an_unreachable_study_database_is_one_line_before_tensorflow_and_any_trial(cli, tmp_path):
    # Nothing listens on this port: with the database's driver installed the connection is refused,
    # without it the driver is named; either way before TensorFlow loads and before any run exists.
    url = f"postgresql://optuna@127.0.0.1:{free_port()}/studies"
    result = cli("-m", "hparams_search=optuna", f"hydra.sweeper.storage={url}", extra_env=without_tensorflow(tmp_path))
    assert result.returncode == 2, result.stderr[-3000:]
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: hydra.sweeper.storage must be a database Optuna can reach (") and line.endswith(
        f"). Received: hydra.sweeper.storage={url}"), line
    assert not (tmp_path / "outputs" / "mlflow.db").exists()


def test_a_grid_sampler_runs_each_point_once_in_a_study_kept_in_a_journal_file(cli, tmp_path):
    journal = tmp_path / "my" / "study.journal"
    search = ["-m", "hparams_search=optuna", "hydra.sweeper.sampler=grid", "hydra.sweeper.n_trials=10", "epochs=1",
              f"hydra.sweeper.storage={journal}", "hydra.sweeper.study_name=depths",
              "hydra.sweeper.params.depth='range(1,3)'", "hydra.sweeper.params.width='choice(4)'",
              "hydra.sweeper.params.batch_size='choice(64)'",
              # A key on the command line replaces hydra.sweeper.params' (a dotted one cannot be set there).
              "dropout=0.0", "optimizer.learning_rate=0.001"]
    result = cli(*search)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"sweep depths: a new study of 2 trials, stored in {journal}" in result.stdout.splitlines()
    _, parent, children = _family(tmp_path)
    assert parent.data.tags["sweep.study"] == "depths"
    assert sorted(c.data.params["model.knobs.depth"] for c in children.values()) == ["1", "2"]
    import optuna

    study = optuna.load_study(study_name="depths", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(journal))))
    assert sorted(t.params["depth"] for t in study.trials) == [1, 2]
    again = cli(*search)
    assert again.returncode == 0 and again.stdout.startswith("sweep depths is complete: 2 of 2 trials done")
