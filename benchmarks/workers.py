"""workers: an Optuna sweep of the same 8 trials with two trials in flight against one
(`hydra/launcher=joblib`, `hydra.launcher.n_jobs=2` vs `1`): wall time of the whole command and
from the first trial's start to the last trial's end. No target: on a 2-core machine two trials at
once share the cores, so the ratio shows what the second worker is worth here.

The trials are the points of a grid (grid sampler, one seed), so both arms train the same 8
configurations whatever order they finish in; each arm's sweep is a new study. Arms alternate.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
import time

from benchmarks.results import compare, interleave, say, section
from benchmarks.session import QUICK

# 2 x 2 x 2 = 8 grid points; the quick size keeps 2 of them.
GRID = ("depth=1,2", "width=32,64", "batch_size=32,64")
QUICK_GRID = ("depth=1,2", "width=32", "batch_size=64")
FIXED = ("dropout=0", "optimizer.learning_rate=0.003", "seed=0", "hydra.sweeper.sampler=grid", "hydra/launcher=joblib")
_studies = itertools.count()


def _store(session) -> str:
    """An MLflow store of this benchmark's own, as pruning's: in a whole `--quick` session, this
    process's reads of the session's store (which the `tracking` section had opened) did not see
    the sweep's parent run."""
    return f"sqlite:///{session.workdir / 'workers-mlflow.db'}"


def _sweep(session, grid: tuple, trials: int, epochs: int, n_jobs: int) -> dict:
    """Run one sweep as `python -m trainer -m ...`; its wall time and its trials' span in MLflow."""
    from mlflow.tracking import MlflowClient

    study = f"bench-workers-{n_jobs}-{next(_studies)}"
    command = [sys.executable, *session.trainer_command(
        "-m", "hparams_search=optuna", *grid, *FIXED, f"epochs={epochs}", f"hydra.sweeper.n_trials={trials}",
        f"hydra.launcher.n_jobs={n_jobs}", f"hydra.sweeper.study_name={study}", f"tracking.uri={_store(session)}")]
    with open(session.log_path, "a") as log:
        print(f"\n=== {' '.join(command[2:])}", file=log, flush=True)
        start = time.time()
        proc = subprocess.run(command, cwd=session.workdir, env=session.env(), stdout=log, stderr=subprocess.STDOUT,
                              timeout=3600)
        wall = time.time() - start
    if proc.returncode != 0:
        raise RuntimeError(f"the sweep of {n_jobs} worker(s) exited {proc.returncode}; see {session.log_path}")
    client = MlflowClient(_store(session))
    experiment = client.get_experiment_by_name("trainer").experiment_id
    # The study records its sweep's parent run (trainer/sweeps/study.py PARENT_ATTR).
    import optuna

    from trainer.sweeps import study as studies

    storage = studies.open_storage(str(session.root / "outputs" / "studies" / f"{study}.journal"))
    parent = optuna.load_study(study_name=study, storage=storage).user_attrs[studies.PARENT_ATTR]
    runs = client.search_runs([experiment], filter_string=f"tags.`mlflow.parentRunId` = '{parent}'")
    if len(runs) != trials or any(r.info.status != "FINISHED" for r in runs):
        raise RuntimeError(f"the sweep of {n_jobs} worker(s) ran {len(runs)} trials, not {trials} finished ones")
    span = (max(r.info.end_time for r in runs) - min(r.info.start_time for r in runs)) / 1000
    say(f"  workers={n_jobs}: {wall:.1f} s, trials {span:.1f} s")
    return {"wall": wall, "span": span}


def run(session) -> dict:
    quick = session.sizes == QUICK
    grid, epochs = (QUICK_GRID, 1) if quick else (GRID, 4)
    trials = 2 if quick else 8
    two, one = interleave([lambda i: _sweep(session, grid, trials, epochs, 2),
                           lambda i: _sweep(session, grid, trials, epochs, 1)], session.sizes.repeats)
    case = f"dynamic on digits, {trials} grid trials of {epochs} epochs"
    rows = [
        compare(case, "whole sweep wall time", "s", [r["wall"] for r in two], [r["wall"] for r in one]),
        compare(case, "first trial's start to last trial's end", "s", [r["span"] for r in two],
                [r["span"] for r in one]),
    ]
    notes = [
        f"`python -m trainer -m hparams_search=optuna {' '.join(grid)} {' '.join(FIXED)} epochs={epochs}"
        f" hydra.sweeper.n_trials={trials} hydra.launcher.n_jobs=2` (A) and `=1` (B), each a new study, arms"
        f" alternating, {session.sizes.repeats} sweep(s) each. With two in flight a trial starts as soon as"
        " either running trial ends (no batch barrier). The whole sweep includes starting the launcher's"
        " worker processes (each imports TensorFlow once); the trials' span is read from their MLflow runs.",
    ]
    return section("workers", "Sweep workers: two trials in flight vs one", "2 workers", "1 worker", rows, notes)
