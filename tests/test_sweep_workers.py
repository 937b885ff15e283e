"""Optuna sweeps that keep their workers busy, through the real command line: with the real joblib
launcher a new trial starts as soon as one ends (no batch barrier), and two worker processes started
at once against one study on a real PostgreSQL server and one real MLflow server (PostgreSQL
backend) run n_trials in total, none twice, all children of one parent run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import optuna
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from tests.conftest import serve_mlflow, tracking_uri
from tests.postgres import postgres  # noqa: F401 (the fixture)


def test_joblib_optuna_sweep_starts_a_trial_as_soon_as_one_ends(cli, tmp_path):
    # A grid over epochs (seed 5 orders it 1, 400, 2): trials 0 and 1 start together; trial 2 must
    # start when the 1-epoch trial ends, while the 400-epoch one still trains. A batch of two would
    # start it only after both.
    result = cli("-m", "hparams_search=optuna", "hydra.sweeper.sampler=grid", "epochs=1,400,2", "seed=5",
                 "depth=1", "width=8", "batch_size=64", "dropout=0", "optimizer.learning_rate=0.01",
                 "hydra.sweeper.n_trials=3", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2")
    assert result.returncode == 0, result.stderr[-3000:]

    client = MlflowClient(tracking_uri(tmp_path))
    runs = client.search_runs(client.get_experiment_by_name("trainer").experiment_id)
    (parent,) = [r for r in runs if r.data.tags.get("sweep.role") == "parent"]
    trials = {int(r.data.tags["sweep.job"]): r for r in runs if r is not parent}
    assert sorted(trials) == [0, 1, 2] and parent.info.status == "FINISHED"
    epochs = {n: int(r.data.params["epochs"]) for n, r in trials.items()}
    assert epochs == {0: 1, 1: 400, 2: 2}, epochs  # the premise: the grid's order for seed 5
    fast, slow, third = trials[0].info, trials[1].info, trials[2].info
    assert third.start_time >= fast.end_time - 1000  # it waited for a free worker ...
    timeline = {n: (r.info.start_time - fast.start_time, r.info.end_time - fast.start_time) for n, r in trials.items()}
    assert third.start_time < slow.end_time, f"trial 2 waited for the slowest of the first two: {timeline}"
    assert parent.data.tags["sweep.launcher"] == "JoblibLauncher"

    # Each trial ran as its own job: its folder is <sweep dir>/<trial number>, with its overrides.
    sweep_dir = Path(result.stdout.split("outputs: ")[1].split()[0]).parent
    for number, run in trials.items():
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        overrides = OmegaConf.load(sweep_dir / str(number) / ".hydra" / "overrides.yaml")
        assert f"epochs={epochs[number]}" in overrides


def _worker(root: Path, tfds_dir: str, storage: str, server: str) -> subprocess.Popen:
    root.mkdir()
    command = [sys.executable, "-m", "trainer", "-m", "hparams_search=optuna", "hydra.sweeper.sampler=random",
               "hydra.sweeper.n_trials=4", f"hydra.sweeper.storage={storage}", f"tracking.uri={server}",
               "epochs=1", "depth=1", "width=8,16", "batch_size=64", "dropout=0", "seed=3",
               f"data.data_dir={tfds_dir}"]
    env = {**os.environ, "TRAINER_ROOT": str(root), "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.Popen(command, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_workers_share_one_postgres_study_and_one_parent_run(postgres, tmp_path, tfds_dir):
    storage = postgres("optuna")
    with serve_mlflow(tmp_path, backend=postgres("mlflow")) as server:
        # Two machines, say: each its own project folder, one study and one tracking server.
        workers = [_worker(tmp_path / name, tfds_dir, storage, server) for name in ("a", "b")]
        outputs = [w.communicate(timeout=900) for w in workers]
        for worker, (out, err) in zip(workers, outputs):
            assert worker.returncode == 0, err[-3000:]
        client = MlflowClient(server)
        runs = client.search_runs(client.get_experiment_by_name("trainer").experiment_id)

    (study_summary,) = optuna.get_all_study_summaries(storage)
    study = optuna.load_study(study_name=study_summary.study_name, storage=storage)
    trials = study.get_trials()
    assert len(trials) == 4 and all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    owners = {t.user_attrs["sweep.owner"] for t in trials}
    assert len(owners) == 2, owners  # both workers ran trials

    (parent,) = [r for r in runs if r.data.tags.get("sweep.role") == "parent"]
    assert parent.info.run_id == study.user_attrs["sweep.parent_run_id"]
    children = [r for r in runs if r is not parent]
    # Every trial ran once, as one child run of the one parent.
    assert sorted(int(r.data.tags["sweep.job"]) for r in children) == [t.number for t in trials]
    assert all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in children)
    assert all(r.info.status == "FINISHED" for r in children)
    # The parent ended FINISHED once the last worker ended, with the study's best trial.
    assert parent.info.status == "FINISHED"
    best = max(r.data.metrics["val_accuracy"] for r in children)
    assert parent.data.metrics["best_val_accuracy"] == best
    # The worker that ended last printed the summary of the whole study.
    assert any("sweep: 4 jobs, 4 finished, 0 failed" in out for out, _ in outputs), outputs[0][0][-2000:]
