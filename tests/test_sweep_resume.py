"""Sweeps that persist and resume, through the real command line: an Optuna study stopped by
SIGTERM and then by SIGKILL in the middle of a trial, continued by rerunning the same command (the
same study, the same MLflow parent run, the interrupted trial resumed in its own run), then rerun
with a changed search space (refused in one line, then a new study); and a grid sweep killed in the
middle of a job."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
from mlflow.tracking import MlflowClient

from tests.conftest import tracking_uri

# A small, fast search: every trial trains the dynamic model on digits for EPOCHS epochs, with a
# checkpoint at every epoch so a kill always leaves one to resume from, and enough epochs that the
# kill lands before the last one on a loaded machine.
EPOCHS = 60
OPTUNA = ["-m", "hparams_search=optuna", "hydra.sweeper.n_trials=2", f"epochs={EPOCHS}", "resume.every_seconds=0",
          "callbacks.progress=none", "hydra.sweeper.params.depth='choice(1,2)'", "hydra.sweeper.params.width='choice(4,8)'",
          "hydra.sweeper.params.batch_size='choice(64)'"]


def _start(root: Path, tfds_dir: str, *args: str) -> subprocess.Popen:
    env = {**os.environ, "TRAINER_ROOT": str(root), "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.Popen([sys.executable, "-m", "trainer", *args, f"data.data_dir={tfds_dir}"], cwd=root, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _runs(root: Path):
    client = MlflowClient(tracking_uri(root))
    experiment = client.get_experiment_by_name("trainer")
    return client, ([] if experiment is None else client.search_runs([experiment.experiment_id]))


def _stop_in_job(root: Path, process: subprocess.Popen, job: int, sig: int) -> str:
    """Send `sig` once job `job` has a checkpoint (an epoch done); the id of that job's run."""
    deadline = time.monotonic() + 300
    while True:
        assert process.poll() is None, process.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "the job wrote no checkpoint in time"
        if list(Path(root, "outputs", "checkpoints").glob("*/state.ckpt")):
            running = [r for r in _runs(root)[1] if r.data.tags.get("sweep.job") == str(job)
                       and r.info.status == "RUNNING"]
            if running:
                break
        time.sleep(0.2)
    process.send_signal(sig)
    process.communicate(timeout=120)
    return running[0].info.run_id


def _family(root: Path):
    client, runs = _runs(root)
    (parent,) = [r for r in runs if r.data.tags.get("sweep.role") == "parent"]
    return client, parent, {int(r.data.tags["sweep.job"]): r for r in runs if r is not parent}


def _one_value_per_epoch(client, run_id: str) -> None:
    steps = [m.step for m in client.get_metric_history(run_id, "loss")]
    assert sorted(steps) == list(range(EPOCHS)), steps


def test_an_optuna_study_stopped_by_sigterm_then_sigkill_resumes_by_rerunning_the_command(tmp_path, tfds_dir):
    # In a database storage (SQLite through Optuna's RDBStorage, as PostgreSQL would be); the
    # default journal file is the other tests' (tests/test_sweeps.py).
    database = f"sqlite:///{tmp_path}/studies.db"
    search = [*OPTUNA, f"hydra.sweeper.storage={database}"]
    first = _start(tmp_path, tfds_dir, *search)
    killed_run = _stop_in_job(tmp_path, first, 0, signal.SIGTERM)
    assert first.returncode == 128 + signal.SIGTERM
    _, parent, children = _family(tmp_path)
    assert parent.info.status == "KILLED" and children[0].info.status == "KILLED"

    second = _start(tmp_path, tfds_dir, *search)
    _stop_in_job(tmp_path, second, 1, signal.SIGKILL)  # a hard kill leaves the trial and the parent RUNNING

    third = _start(tmp_path, tfds_dir, *search)
    stdout, stderr = third.communicate(timeout=600)
    assert third.returncode == 0, stderr[-3000:]
    (study_line,) = [line for line in stdout.splitlines() if line.startswith("resuming sweep ")]
    assert study_line.endswith(": 1 of 2 trials done; trial 1 interrupted, running it again"), study_line
    study_name = study_line.split()[2].rstrip(":")

    client, parent2, children = _family(tmp_path)
    assert parent2.info.run_id == parent.info.run_id and parent2.info.status == "FINISHED"
    assert sorted(children) == [0, 1] and children[0].info.run_id == killed_run
    for child in children.values():
        assert child.info.status == "FINISHED" and child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        _one_value_per_epoch(client, child.info.run_id)  # resumed from its checkpoint, no epoch logged twice
    assert parent2.data.metrics["sweep_jobs"] == 2 and parent2.data.metrics["sweep_failed_jobs"] == 0

    study = optuna.load_study(study_name=study_name, storage=database)
    assert [t.number for t in study.trials] == [0, 1]
    assert {t.state for t in study.trials} == {optuna.trial.TrialState.COMPLETE}
    # Each trial's value is its run's sweep.metric.
    assert {t.number: t.value for t in study.trials} == {n: c.data.metrics["val_accuracy"] for n, c in children.items()}

    # Done: the same command has nothing to run; a larger n_trials would continue the same study.
    done = _cli(tmp_path, tfds_dir, *search)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == (f"sweep {study_name} is complete: 2 of 2 trials done, nothing to run (a larger"
                                   " hydra.sweeper.n_trials continues it; hydra.sweeper.new_study=true starts a new study)")

    # A changed search space is refused in one line, before anything starts ...
    changed = [a.replace("width='choice(4,8)'", "width='choice(4,16)'") for a in search]
    refused = _cli(tmp_path, tfds_dir, *changed)
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [
        f"error: the search changed since study {study_name} was made (width: choice(4, 8) -> choice(4, 16)): a study"
        " keeps one search space; add hydra.sweeper.new_study=true to start a new study, or set"
        f" hydra.sweeper.study_name. Storage: {database}"]
    assert len(_runs(tmp_path)[1]) == 3  # the parent and its two trials: nothing new
    # ... unless a new study is asked for: <study>-2, with a parent run of its own.
    new = _cli(tmp_path, tfds_dir, *changed, "hydra.sweeper.new_study=true", "hydra.sweeper.n_trials=1")
    assert new.returncode == 0, new.stderr[-3000:]
    assert f"sweep {study_name}-2: a new study of 1 trials, stored in {database}" in new.stdout.splitlines()
    assert len([r for r in _runs(tmp_path)[1] if r.data.tags.get("sweep.role") == "parent"]) == 2
    assert sorted(s.study_name for s in optuna.get_all_study_summaries(database)) == [study_name, f"{study_name}-2"]
    assert not (tmp_path / "outputs" / "studies").exists()


def _cli(root: Path, tfds_dir: str, *args: str) -> subprocess.CompletedProcess:
    process = _start(root, tfds_dir, *args)
    stdout, stderr = process.communicate(timeout=600)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def test_a_grid_sweep_killed_in_a_job_reruns_only_the_jobs_that_did_not_finish(tmp_path, tfds_dir):
    grid = ["-m", "model=mlp", "width=4,8", f"epochs={EPOCHS}", "resume.every_seconds=0", "callbacks.progress=none"]
    first = _start(tmp_path, tfds_dir, *grid)
    killed_run = _stop_in_job(tmp_path, first, 1, signal.SIGKILL)
    client, parent, children = _family(tmp_path)
    finished_before = children[0].info.end_time

    second = _start(tmp_path, tfds_dir, *grid)
    stdout, stderr = second.communicate(timeout=600)
    assert second.returncode == 0, stderr[-3000:]
    assert f"resuming sweep {parent.data.tags['sweep']}: 1 of 2 jobs done" in stdout.splitlines()
    client, parent2, children = _family(tmp_path)
    assert parent2.info.run_id == parent.info.run_id and parent2.info.status == "FINISHED"
    assert sorted(children) == [0, 1] and children[1].info.run_id == killed_run
    assert children[0].info.end_time == finished_before  # not run again
    for child in children.values():
        assert child.info.status == "FINISHED"
        _one_value_per_epoch(client, child.info.run_id)
    assert "sweep: 2 jobs, 2 finished, 0 failed" in stdout
    # The rerun's own folder holds only the jobs it ran.
    folders = sorted(Path(tmp_path, "outputs", "multiruns").glob("*/*"))
    assert len(folders) == 2 and not (folders[1] / "0").exists() and (folders[1] / "1").is_dir()
