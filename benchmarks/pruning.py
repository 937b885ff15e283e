"""pruning: what `hydra.sweeper.pruner=median` saves on an Optuna search, and what it costs.

The same search as whole `python -m trainer -m hparams_search=optuna` processes: without a pruner
(B) and with a pruner at Optuna's defaults (A), at several seeds, each seed's arms one after the
other. Measured: the epochs every trial trained (each trial's MLflow run logs one `loss` per
epoch), the best value the study reached (its best COMPLETE trial's `sweep.metric`), and the wall
time of the whole sweep. Every sweep trains with `deterministic=true`, so a seed gives the same
trials and the same pruning decisions every time: the seeds, not the machine, are what varies.
Target (issue 18): at most 0.6 of the epochs, for a best value within 0.005 of the unpruned one.
"""

from __future__ import annotations

import subprocess
import sys
import time

from benchmarks.results import compare, say, section, value
from benchmarks.session import QUICK

EPOCHS_TARGET = 0.6
BEST_VALUE_TARGET = 0.005
# (label, overrides): the arm first (median at Optuna's defaults), then candidates for a
# setting that saves more; --quick runs only the first.
ARMS = (
    ("median", ("hydra.sweeper.pruner=median",)),
    ("median, n_startup_trials=2", ("hydra.sweeper.pruner=median", "hydra.sweeper.pruner_args.n_startup_trials=2")),
    ("successive_halving", ("hydra.sweeper.pruner=successive_halving",)),
)


def _store(session) -> str:
    """An MLflow store of this benchmark's own: its sweeps' runs are all it holds."""
    return f"sqlite:///{session.workdir / 'pruning-mlflow.db'}"


def _sizes(session) -> tuple[int, int]:
    """(trials, epochs per trial): the issue's 20-trial search, or a tiny one for --quick."""
    return (2, 1) if session.sizes == QUICK else (20, 10)


def _sweep(session, arm: int, overrides: tuple, trials: int, epochs: int, seed: int) -> dict:
    """Run one arm's search at one seed; its wall time, epochs trained per trial, and the study's best value."""
    study = f"pruning-{arm}-{trials}x{epochs}-seed{seed}"
    storage = session.workdir / f"{study}.journal"
    command = [sys.executable, "-m", "trainer", "-m", "hparams_search=optuna", f"hydra.sweeper.n_trials={trials}",
               f"epochs={epochs}", f"seed={seed}", "deterministic=true", "callbacks.progress=none",
               f"hydra.sweeper.storage={storage}", f"hydra.sweeper.study_name={study}",
               f"tracking.uri={_store(session)}", *overrides, f"data.data_dir={session.tfds_dir}"]
    with open(session.log_path, "a") as log:
        print(f"\n=== {' '.join(command[1:])}", file=log, flush=True)
        start = time.time()
        proc = subprocess.run(command, cwd=session.workdir, env=session.env(), stdout=log, stderr=subprocess.STDOUT,
                              timeout=7200)
        wall = time.time() - start
    if proc.returncode != 0:
        raise RuntimeError(f"the {arm} sweep at seed {seed} exited {proc.returncode}; see {session.log_path}")
    return {"wall": wall, **_read(session, study, storage)}


def _read(session, study_name: str, storage) -> dict:
    import optuna
    from mlflow.tracking import MlflowClient
    from optuna.storages.journal import JournalFileBackend
    from optuna.trial import TrialState

    study = optuna.load_study(study_name=study_name,
                              storage=optuna.storages.JournalStorage(JournalFileBackend(str(storage))))
    client = MlflowClient(_store(session))
    experiment = client.get_experiment_by_name("trainer").experiment_id
    (parent,) = client.search_runs([experiment], filter_string=f"tags.`sweep.study` = '{study_name}'")
    children = client.search_runs([experiment], filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'",
                                  max_results=1000)
    children.sort(key=lambda run: int(run.data.tags["sweep.job"]))  # in trial order
    return {
        "epochs": [len(client.get_metric_history(run.info.run_id, "loss")) for run in children],
        "best": study.best_value,
        "best_trial": study.best_trial.number,
        "pruned": len(study.get_trials(deepcopy=False, states=(TrialState.PRUNED,))),
        "direction": study.direction.name.lower(),
    }


def run(session) -> dict:
    trials, epochs = _sizes(session)
    seeds = list(range(session.sizes.repeats))
    arms = ARMS[:1] if session.sizes == QUICK else ARMS
    plain, pruned = [], {label: [] for label, _ in arms}
    for seed in seeds:
        say(f"  pruning: seed {seed}: {trials} trials of {epochs} epochs, without a pruner ...")
        plain.append(_sweep(session, 0, (), trials, epochs, seed))
        for i, (label, overrides) in enumerate(arms, start=1):
            say(f"  pruning: seed {seed}: the same with {' '.join(overrides)} ...")
            pruned[label].append(_sweep(session, i, overrides, trials, epochs, seed))
    rows, notes = [], []
    for label, overrides in arms:
        case = f"{trials} trials of {epochs} epochs, {label}"
        # What pruning lost at each seed: how much worse its best value is, in the study's direction
        # (0 or below: nothing). The row shows the worst seed.
        lost = [(b["best"] - a["best"]) if b["direction"] == "maximize" else (a["best"] - b["best"])
                for a, b in zip(pruned[label], plain)]
        rows += [
            compare(case, "epochs trained", "count", [sum(r["epochs"]) for r in pruned[label]],
                    [sum(r["epochs"]) for r in plain], target=EPOCHS_TARGET),
            value(case, "best value lost to pruning", "accuracy", [max(lost)], target=BEST_VALUE_TARGET),
            compare(case, "sweep wall time", "s", [r["wall"] for r in pruned[label]], [r["wall"] for r in plain]),
            value(case, "trials pruned", "count", [r["pruned"] for r in pruned[label]]),
        ]
        per_seed = "; ".join(f"seed {seed}: {r['epochs']} (best {r['best']:.4f}, trial {r['best_trial']})"
                             for seed, r in zip(seeds, pruned[label]))
        notes.append(f"{label} (`{' '.join(overrides)}`), epochs trained per trial in trial order, {per_seed}.")
    unpruned = ", ".join(f"{r['best']:.4f} (trial {r['best_trial']})" for r in plain)
    notes = [
        f"B: `python -m trainer -m hparams_search=optuna hydra.sweeper.n_trials={trials} epochs={epochs} seed=S"
        " deterministic=true` (the default search space on the `dynamic` model, TPE seeded by `seed`, digits,"
        " tracking on); A: the same with a pruner (the case names it; parameters not named are Optuna's defaults:"
        " median n_startup_trials=5, n_warmup_steps=0; successive_halving min_resource=auto, reduction_factor=4)."
        f" Seeds {', '.join(map(str, seeds))}; each seed's sweeps one after the other. Epochs trained and wall time:"
        " the ratio of the medians over the seeds, each seed's ratio in brackets; trials pruned: the median over"
        " the seeds; best value lost: the worst seed's.",
        f"Best value: the study's best COMPLETE trial's `sweep.metric` (val_accuracy). Without a pruner, by seed:"
        f" {unpruned}. One validation example of digits moves val_accuracy by 1/144, about 0.0069, more than the"
        " 0.005 target: within 0.005 means the same best value.",
        *notes,
        "A study parts from the unpruned one after its first pruned trial: TPE then samples from other trials' values.",
    ]
    return section("pruning", "Pruning: the same Optuna search with a pruner vs without",
                   "with the pruner", "no pruner", rows, notes)
