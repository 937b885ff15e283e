"""`hparams_search=optuna`: an Optuna study through its ask-and-tell interface, one Hydra job per
trial, in the study that persists across runs of the command (trainer/sweeps/study.py).

A trial's job number is its trial number, so its folder (<sweep dir>/<number>) and its MLflow
run's `sweep.job` tag name the trial; with `hydra.sweeper.repeats=K` a trial is K jobs, one per
seed (trainer/sweeps/replicates.py). Each trial records the overrides it ran and the process that
runs it; a rerun of the command runs a trial whose process is gone again, as the same trial with
the same overrides, so the run's own resume (trainer/run/resume.py) continues it from its
checkpoint in the same MLflow run. `n_trials` counts every trial of the study.
"""

from __future__ import annotations

import json
import logging
import math
import os

from omegaconf import OmegaConf

from trainer.sweeps import grid_sweep, pruning, replicates
from trainer.sweeps import space as spaces
from trainer.sweeps import study as studies
from trainer.tracking import provenance

log = logging.getLogger(__name__)
RESULTS = "optimization_results.yaml"

# The study of each multirun in this process, by its sweep folder: the sweep's MLflow callback opens
# it first (to find the study's parent run), the sweeper then uses the same one.
_opened: dict[str, tuple] = {}


def prepare(config):
    """(plan, study) of this multirun, created or loaded once."""
    sweep_dir = str(config.hydra.sweep.dir)
    if sweep_dir not in _opened:
        try:
            plan = studies.plan(config)
        except studies.StudyError as err:  # preflight refuses it first; a study changed since then
            from trainer.cli.command import fail

            fail(str(err))
        _opened[sweep_dir] = (plan, studies.create_or_load(config, plan))
    return _opened[sweep_dir]


def trials_wanted(config, space: dict[str, dict]) -> int:
    n_trials = int(config.hydra.sweeper.n_trials)
    if config.hydra.sweeper.sampler == "grid":  # a grid is done once every point has run
        size = 1
        for dimension in space.values():
            size *= len(spaces.grid_values(dimension))
        n_trials = min(n_trials, size)
    return n_trials


def run(config, launcher) -> None:
    from optuna.trial import TrialState

    plan, study = prepare(config)
    sweeper = config.hydra.sweeper
    space, fixed = studies.search(config)
    distributions = {k: spaces.distribution(d) for k, d in space.items()}
    n_trials = trials_wanted(config, space)
    counts = studies.counts(study)
    stale = studies.interrupted(study)
    study.sampler = studies.sampler(str(sweeper.sampler), sweeper.seed, space, len(study.get_trials(deepcopy=False)))
    if plan.exists:
        again = f"; trial {', '.join(str(t.number) for t in stale)} interrupted, running it again" if stale else ""
        print(f"resuming sweep {plan.name}: {counts['done']} of {n_trials} trials done{again}", flush=True)
    else:
        print(f"sweep {plan.name}: a new study of {n_trials} trials, stored in {plan.storage}", flush=True)
    me = studies.owner()
    extra = pruning.trial_overrides(sweeper, plan.storage, study.study_name)
    for trial in stale:
        recorded = trial.user_attrs.get(studies.OVERRIDES_ATTR)
        if recorded is None:  # killed between asking and recording the trial: it never started
            study.tell(trial.number, state=TrialState.FAIL)
            continue
        study._storage.set_trial_user_attr(trial._trial_id, studies.OWNER_ATTR, me)
        # Replicates of the trial that finished before the interruption are not trained again.
        _launch_and_tell(config, study, grid_sweep.SkipFinished(launcher, config, announce=False),
                         [(trial.number, json.loads(recorded))], extra)
    while True:
        counts = studies.counts(study)
        to_go = n_trials - counts["done"] - counts["running"]
        if to_go <= 0 or _too_many_failures(counts, float(sweeper.max_failure_rate)):
            break
        jobs = []
        for _ in range(min(int(sweeper.n_jobs), to_go)):
            trial = study.ask(distributions)
            overrides = [f"{k}={v}" for k, v in trial.params.items()] + [f"{k}={v}" for k, v in fixed.items()]
            trial.set_user_attr(studies.OWNER_ATTR, me)
            trial.set_user_attr(studies.OVERRIDES_ATTR, json.dumps(overrides))
            jobs.append((trial.number, overrides))
        _launch_and_tell(config, study, launcher, jobs, extra)
    _save_results(config, study)


def _too_many_failures(counts: dict, rate: float) -> bool:
    if counts["failed"] == 0 or counts["failed"] / counts["done"] <= rate:
        return False
    print(f"sweep stopped: {counts['failed']} of {counts['done']} trials failed, more than"
          f" hydra.sweeper.max_failure_rate={rate}", flush=True)
    return True


def _launch_and_tell(config, study, launcher, jobs: list[tuple[int, list[str]]], extra: list[str]) -> None:
    """Launch the trials (trial number, overrides; `extra` Hydra overrides for every job), each as its
    seed replicates (trainer/sweeps/replicates.py), tell the study how each one ended, and tag the
    trial's runs with that state."""
    repeats = int(config.hydra.sweeper.repeats)
    launched = replicates.launch(launcher, [(n, overrides + extra) for n, overrides in jobs], repeats=repeats,
                                 default_seed=config.seed)
    for number, values in launched.items():
        if repeats > 1:  # each seed's value, for the study's dashboard
            trial_id = study._storage.get_trial_id_from_study_id_trial_number(study._study_id, number)
            study._storage.set_trial_user_attr(trial_id, studies.REPLICATES_ATTR,
                                               [v if math.isfinite(v) else None for v in values])
        state = _tell(study, number, replicates.trial_value(values))
        if config.tracking.enabled and os.environ.get(provenance.PARENT_RUN_ENV):
            from trainer.tracking import sweep

            for job in range(number * repeats, (number + 1) * repeats):
                sweep.tag_trial_state(config.tracking.uri, os.environ[provenance.PARENT_RUN_ENV], job,
                                      "FAILED" if state == "FAIL" else state)


def _tell(study, number: int, value: float) -> str:
    """Tell the study how trial `number` ended: PRUNED when its job says it was pruned (its value is
    then the last one it reported), else COMPLETE with a finite value, else FAIL; the state's name."""
    from optuna.trial import TrialState

    if math.isfinite(value) and pruning.was_pruned(study, number):
        state = TrialState.PRUNED
    else:
        state = TrialState.COMPLETE if math.isfinite(value) else TrialState.FAIL
    try:
        if state == TrialState.COMPLETE:
            study.tell(number, value)
        else:
            study.tell(number, state=state)
    except RuntimeError as err:
        # The grid sampler stops its study once every point was asked, which ask-and-tell has no
        # loop to stop; the trial's state is stored before that (optuna/study/_tell.py).
        if "Study.stop" not in str(err):
            raise
    return state.name


def _save_results(config, study) -> None:
    from optuna.trial import TrialState

    results = {"name": "optuna", "study_name": study.study_name}
    if study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        results |= {"best_params": study.best_trial.params, "best_value": study.best_value,
                    "best_trial": study.best_trial.number}
    sweep_dir = str(config.hydra.sweep.dir)
    os.makedirs(sweep_dir, exist_ok=True)
    OmegaConf.save(OmegaConf.create(results), os.path.join(sweep_dir, RESULTS))
