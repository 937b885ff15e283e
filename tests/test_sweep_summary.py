"""What a sweep leaves to read: seed replicates summarized per configuration (a grid over `seed`,
through the real command line), an Optuna study whose trials each train two seeds (runs, tags, the
mean told to the study, the table and plot artifacts), the summary's counts and best epoch on a
store of hand-made child runs (a pruned one among them), and optuna-dashboard serving a study."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mlflow
import optuna
import pytest
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from tests.conftest import free_port, tracking_uri


def _family(root):
    client = MlflowClient(tracking_uri(root))
    experiment = client.get_experiment_by_name("trainer").experiment_id
    runs = client.search_runs([experiment])
    (parent,) = [r for r in runs if r.data.tags.get("sweep.role") == "parent"]
    return client, experiment, parent, [r for r in runs if r.info.run_id != parent.info.run_id]


def _table(client, experiment: str, run_id: str, name: str):
    mlflow.set_tracking_uri(client.tracking_uri)  # load_table searches the default store's runs
    return client.load_table(experiment, name, run_ids=[run_id])


def test_a_grid_over_seeds_is_summarized_per_configuration_ranked_by_its_mean(cli, tmp_path):
    result = cli("-m", "model=dynamic", "seed=1,2", "depth=1,2", "width=8", "epochs=2", "callbacks.progress=none")
    assert result.returncode == 0, result.stderr[-3000:]
    client, experiment, parent, children = _family(tmp_path)
    assert len(children) == 4 and all(c.info.status == "FINISHED" for c in children)
    by_config: dict[str, list[float]] = {}
    for child in children:
        depth = child.data.params["model.knobs.depth"]
        assert child.data.tags["sweep.config"] == f"depth={depth}"  # the run's overrides without its seed
        by_config.setdefault(f"depth={depth}", []).append(child.data.metrics["val_accuracy"])
    expected = sorted(((statistics.fmean(v), statistics.stdev(v), k) for k, v in by_config.items()), reverse=True)

    table = _table(client, experiment, parent.info.run_id, "configurations.json")
    assert list(table["configuration"]) == [k for _, _, k in expected]
    assert list(table["mean"]) == pytest.approx([m for m, _, _ in expected])
    assert list(table["std"]) == pytest.approx([s for _, s, _ in expected])
    assert list(table["finished"]) == [2, 2]
    assert parent.data.tags["best_configuration"] == expected[0][2]
    assert parent.data.metrics["best_configuration_val_accuracy_mean"] == pytest.approx(expected[0][0])
    mean, std, name = expected[0]
    assert f"    1. {mean:.4f} ± {std:.4f}   (2 of 2)  {name}" in result.stdout.splitlines()
    assert "## By configuration (mean over seeds)" in Path(
        client.download_artifacts(parent.info.run_id, "sweep_summary.md", str(tmp_path / "d"))).read_text()


def test_optuna_repeats_train_each_trial_with_seeds_and_tell_the_study_their_mean(cli, tmp_path):
    search = ["-m", "hparams_search=optuna", "hydra.sweeper.repeats=2", "hydra.sweeper.n_trials=2", "epochs=2",
              "callbacks.progress=none", "seed=7", "hydra.sweeper.study_name=seeds",
              "hydra.sweeper.params.depth='choice(1,2)'", "hydra.sweeper.params.width='choice(8)'",
              "hydra.sweeper.params.batch_size='choice(64)'"]
    result = cli(*search)
    assert result.returncode == 0, result.stderr[-3000:]
    journal = tmp_path / "outputs" / "studies" / "seeds.journal"
    assert f"sweep seeds: a new study of 2 trials, stored in {journal}" in result.stdout.splitlines()
    client, experiment, parent, children = _family(tmp_path)
    # Each trial is two runs, children of the sweep's parent, tagged with their trial and replicate.
    assert len(children) == 4
    runs = {(c.data.tags["sweep.trial"], c.data.tags["sweep.replicate"]): c for c in children}
    assert set(runs) == {("0", "0"), ("0", "1"), ("1", "0"), ("1", "1")}
    study = optuna.load_study(study_name="seeds", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(journal))))
    for trial in study.trials:
        pair = [runs[(str(trial.number), str(r))] for r in (0, 1)]
        assert [c.data.tags["sweep.job"] for c in pair] == [str(2 * trial.number), str(2 * trial.number + 1)]
        assert [c.data.params["seed"] for c in pair] == ["7", "8"]
        assert all(c.data.tags["mlflow.parentRunId"] == parent.info.run_id for c in pair)
        assert all(c.info.run_name.endswith(f"seed={7 + r}") for r, c in enumerate(pair))
        # The configuration the seeds are averaged over: the trial's sampled values, its name without the seed.
        assert {c.data.tags["sweep.config"] for c in pair} == {pair[0].info.run_name.removesuffix(" seed=7")}
        values = [c.data.metrics["val_accuracy"] for c in pair]
        assert trial.value == pytest.approx(statistics.fmean(values))
        assert trial.user_attrs["sweep.replicate_values"] == pytest.approx(values)
    # The summary's tables and the study's plots (importances need two finished trials).
    jobs = _table(client, experiment, parent.info.run_id, "jobs.json")
    assert list(jobs.columns) == ["job", "overrides", "status", "val_accuracy", "best_val_accuracy", "best_epoch", "run_id"]
    assert sorted(jobs["job"]) == [0, 1, 2, 3] and set(jobs["status"]) == {"FINISHED"}
    plots = {a.path for a in client.list_artifacts(parent.info.run_id, "study_plots")}
    assert plots == {f"study_plots/{n}.png" for n in ("optimization_history", "parallel_coordinate", "param_importances")}
    png = Path(client.download_artifacts(parent.info.run_id, "study_plots/optimization_history.png", str(tmp_path / "d")))
    assert png.read_bytes().startswith(b"\x89PNG") and png.stat().st_size > 5000
    assert parent.data.metrics["sweep_finished_jobs"] == 4 and parent.data.metrics["sweep_pruned_jobs"] == 0
    # A study keeps one `repeats`: another value is another objective, refused before any trial.
    again = cli(*[a.replace("repeats=2", "repeats=3") for a in search])
    assert again.returncode == 2
    assert "objective val_accuracy maximize, mean of 2 seeds -> val_accuracy maximize, mean of 3 seeds" in again.stderr


def test_the_summary_counts_pruned_runs_finds_the_best_epoch_and_rewrites_its_tables(tmp_path):
    from trainer.tracking import sweep, sweep_summary

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.create_experiment("trainer", artifact_location=(tmp_path / "artifacts").as_uri())
    parent = client.create_run(experiment, tags={"sweep.role": "parent"}).info.run_id

    def child(job: int, history: list[float], status: str, **tags) -> str:
        run = client.create_run(experiment, run_name=f"depth={job}",
                                tags={"mlflow.parentRunId": parent, "sweep.job": str(job), **tags}).info.run_id
        client.log_batch(run, metrics=[Metric("val_accuracy", v, 0, step) for step, v in enumerate(history)])
        client.set_terminated(run, status=status)
        return run

    peaked = child(0, [0.5, 0.9, 0.7], "FINISHED")  # best at epoch 1, not at its last epoch
    steady = child(1, [0.6, 0.75, 0.8], "FINISHED")  # best at its last epoch
    child(2, [0.95], "FINISHED", **{"sweep.trial_state": "PRUNED"})  # stopped early: never the best
    child(3, [0.2], "FAILED")

    masked = sweep._MaskedClient(uri)
    jobs = sweep._children(masked, parent)
    histories = {j["run_id"]: [(m.step, m.value) for m in client.get_metric_history(j["run_id"], "val_accuracy")]
                 for j in jobs if j["status"] == "FINISHED"}
    summary = sweep_summary.summarize(jobs, "val_accuracy", "maximize", histories)
    assert summary["counts"] == {"FINISHED": 2, "PRUNED": 1, "FAILED": 1}
    assert summary["best"]["run_id"] == steady and summary["best"]["last"] == pytest.approx(0.8)
    assert summary["best_epoch_job"]["run_id"] == peaked
    assert (summary["best_epoch_job"]["best"], summary["best_epoch_job"]["best_epoch"]) == (pytest.approx(0.9), 1)
    assert summary["text"].splitlines()[1:4] == [
        "sweep: 4 jobs, 2 finished, 1 failed, 1 pruned",
        f"  best val_accuracy=0.8000 (maximize) at the last epoch: depth=1  run {steady}",
        f"  best val_accuracy=0.9000 at its best epoch, epoch 1: depth=0  run {peaked}"]
    # A continued sweep ends again and writes its summary again: its tables are replaced, not appended to.
    for _ in range(2):
        sweep_summary.log_summary(masked, parent, summary, str(tmp_path))
    run = client.get_run(parent)
    assert run.data.metrics["sweep_pruned_jobs"] == 1 and run.data.metrics["best_epoch"] == 1
    assert run.data.tags["best_epoch_run_id"] == peaked and run.data.tags["best_run_id"] == steady
    assert json.loads(run.data.tags["mlflow.loggedArtifacts"]) == [{"path": "jobs.json", "type": "table"}]
    table = _table(client, experiment, parent, "jobs.json")
    assert list(table["status"]) == ["FINISHED", "FINISHED", "PRUNED", "FAILED"]
    assert list(table["best_epoch"].astype(str)) == ["1", "2", "", ""]
    # A study of one trial has no parameter importances: that plot is skipped, the others drawn.
    study = optuna.create_study(direction="maximize")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    assert sweep_summary.log_study_plots(masked, parent, study) == ["optimization_history", "parallel_coordinate"]
    assert {a.path for a in client.list_artifacts(parent, "study_plots")} == {
        "study_plots/optimization_history.png", "study_plots/parallel_coordinate.png"}


def test_optuna_dashboard_serves_a_finished_study_over_http(tmp_path):
    journal = tmp_path / "studies" / "demo.journal"
    journal.parent.mkdir()
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
    study = optuna.create_study(study_name="demo", storage=storage, direction="maximize")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    port = free_port()
    dashboard = Path(sys.executable).with_name("optuna-dashboard")
    process = subprocess.Popen([str(dashboard), str(journal), "--host", "127.0.0.1", "--port", str(port), "--quiet"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, process.communicate()[0][-3000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=5) as response:
                    studies = json.load(response)["study_summaries"]
                break
            except OSError:
                assert time.monotonic() < deadline, "optuna-dashboard did not answer in time"
                time.sleep(0.3)
        (summary,) = studies
        assert summary["study_name"] == "demo"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies/{summary['study_id']}", timeout=5) as response:
            trials = json.load(response)["trials"]
        assert sorted(t["values"][0] for t in trials) == pytest.approx(sorted(t.value for t in study.trials))
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_a_resumed_trial_trains_only_its_replicates_that_did_not_finish(make_cfg, tmp_path, monkeypatch):
    """The Optuna sweeper's own code on a real study and a real MLflow store, with a launcher that
    records what it is given instead of training (the CLI resume is tests/test_sweep_resume.py):
    trial 0 of a repeats=2 study was killed after its first replicate (job 0) finished."""
    import os
    import socket

    from hydra.core.utils import JobReturn, JobStatus

    from trainer.sweeps import optuna_sweep, replicates
    from trainer.sweeps import space as spaces
    from trainer.sweeps import study as studies
    from trainer.tracking import provenance

    cfg = make_cfg("hparams_search=optuna", "hydra.sweeper.repeats=2", "hydra.sweeper.n_trials=1", "seed=7",
                   f"hydra.sweeper.storage={tmp_path / 'study.journal'}", f"hydra.sweep.dir={tmp_path / 'sweep'}")
    study = optuna_sweep.prepare(cfg)[1]
    space, fixed = studies.search(cfg)
    trial = study.ask({k: spaces.distribution(d) for k, d in space.items()})
    overrides = [f"{k}={v}" for k, v in trial.params.items()] + [f"{k}={v}" for k, v in fixed.items()]
    trial.set_user_attr(studies.OVERRIDES_ATTR, json.dumps(overrides))
    trial.set_user_attr(studies.OWNER_ATTR, f"{socket.gethostname()}:{os.getpid()}:1.00")  # a process that is gone

    client = MlflowClient(cfg.tracking.uri)
    experiment = client.create_experiment("trainer", artifact_location=(tmp_path / "artifacts").as_uri())
    parent = client.create_run(experiment, tags={"sweep.role": "parent"}).info.run_id
    done = client.create_run(experiment, tags={"mlflow.parentRunId": parent, "sweep.job": "0"}).info.run_id
    client.log_metric(done, "val_accuracy", 0.5)
    client.set_terminated(done)
    monkeypatch.setenv(provenance.PARENT_RUN_ENV, parent)

    launched = []

    class Recorder:
        def launch(self, job_overrides, initial_job_idx):
            launched.extend(enumerate(job_overrides, initial_job_idx))
            return [JobReturn(overrides=o, status=JobStatus.COMPLETED, _return_value=0.7) for o in job_overrides]

    optuna_sweep.run(cfg, Recorder())
    assert launched == [(1, replicates.replicate_overrides(overrides, 2, 7)[1])]
    assert launched[0][1][-1] == "seed=8"
    (told,) = study.get_trials()
    assert told.value == pytest.approx(0.6) and told.user_attrs["sweep.replicate_values"] == pytest.approx([0.5, 0.7])
