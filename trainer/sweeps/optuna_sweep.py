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
import threading

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


def in_flight(config) -> int:
    """`hydra.sweeper.n_jobs`: how many trials run at once. null is the joblib launcher's n_jobs
    (-1: one per CPU), else 1: Hydra's basic launcher runs each job in this process, one at a time."""
    n_jobs = config.hydra.sweeper.get("n_jobs")
    if n_jobs is not None:
        return int(n_jobs)
    launcher = config.hydra.launcher
    if "n_jobs" in launcher and str(launcher.get("_target_", "")).endswith("JoblibLauncher"):
        import joblib

        return joblib.effective_n_jobs(int(launcher.n_jobs))
    return 1


def run(config, launcher) -> None:
    """Keep `in_flight(config)` trials running until the study has `n_trials`: each of that many
    threads asks a trial, launches it as a job of its own and tells its value, then asks the next,
    so a slow trial holds up no other (no batch barrier). The threads only wait: the jobs run in
    the launcher's processes (joblib's loky workers, one reusable pool for every call).

    Other workers of the same study (the same command in another terminal or on another machine,
    on a shared storage) take trials from the same study: each ask is made under the study's lock
    (study.locked) after counting every trial, so the study gets `n_trials` in total."""
    plan, study = prepare(config)
    space, fixed = studies.search(config)
    n_trials = trials_wanted(config, space)
    counts = studies.counts(study)
    stale = studies.interrupted(study)
    if plan.exists:
        again = f"; trial {', '.join(str(t.number) for t in stale)} interrupted, running it again" if stale else ""
        others = f", {counts['running'] - len(stale)} running in other workers" if counts["running"] > len(stale) else ""
        print(f"resuming sweep {plan.name}: {counts['done']} of {n_trials} trials done{others}{again}", flush=True)
    else:
        print(f"sweep {plan.name}: a new study of {n_trials} trials, stored in {plan.storage}", flush=True)
    source = _Trials(config, plan, study, space, fixed, n_trials)
    extra = pruning.trial_overrides(config.hydra.sweeper, plan.storage, study.study_name)

    def keep_running() -> None:
        while (job := source.next()) is not None:
            number, overrides, resumed = job
            # An interrupted trial's replicates that finished before the interruption are not trained again.
            runs = grid_sweep.SkipFinished(launcher, config, announce=False) if resumed else launcher
            _launch_and_tell(config, study, runs, [(number, overrides)], extra)

    threads = in_flight(config)
    if threads == 1:  # Hydra's basic launcher runs the job in this thread, as Hydra runs it
        keep_running()
    else:
        _in_threads(keep_running, threads, source)
    _save_results(config, study)


class _Trials:
    """The next trial for this worker to run, taken under the study's lock: an interrupted trial of
    this host first (the same trial again, which resumes from its checkpoint), else a new one while
    the study has fewer than `n_trials` (ended and running, every worker's) and failures stay
    within `max_failure_rate`."""

    def __init__(self, config, plan, study, space, fixed, n_trials: int) -> None:
        self.plan, self.study, self.fixed, self.n_trials = plan, study, fixed, n_trials
        self.sweeper = config.hydra.sweeper
        self.space = space
        self.distributions = {k: spaces.distribution(d) for k, d in space.items()}
        self.me = studies.owner()
        self.stopped = False

    def next(self) -> tuple[int, list[str], bool] | None:
        """(trial number, overrides, whether it is an interrupted trial run again), or None: done."""
        from optuna.trial import TrialState

        with studies.locked(self.plan.storage, self.plan.name):
            if self.stopped:
                return None
            for trial in studies.interrupted(self.study):
                recorded = trial.user_attrs.get(studies.OVERRIDES_ATTR)
                if recorded is None:  # killed between asking and recording the trial: it never started
                    self.study.tell(trial.number, state=TrialState.FAIL)
                    continue
                self.study._storage.set_trial_user_attr(trial._trial_id, studies.OWNER_ATTR, self.me)
                return trial.number, json.loads(recorded), True
            counts = studies.counts(self.study)
            if (self.n_trials - counts["done"] - counts["running"] <= 0
                    or _too_many_failures(counts, float(self.sweeper.max_failure_rate))):
                self.stopped = True
                return None
            # Seeded by the trials the study holds, which no other ask sees again (the lock is
            # held): workers that started together draw different values, one worker the same ones.
            self.study.sampler = studies.sampler(str(self.sweeper.sampler), self.sweeper.seed, self.space,
                                                 len(self.study.get_trials(deepcopy=False)))
            trial = self.study.ask(self.distributions)
            overrides = [f"{k}={v}" for k, v in trial.params.items()] + [f"{k}={v}" for k, v in self.fixed.items()]
            trial.set_user_attr(studies.OWNER_ATTR, self.me)
            trial.set_user_attr(studies.OVERRIDES_ATTR, json.dumps(overrides))
            return trial.number, overrides, False


def _in_threads(work, n: int, source: _Trials) -> None:
    """Run `work` in n threads; the first exception (a failing job with
    sweep.continue_on_failure=false, Ctrl-C, SIGTERM) stops every thread from taking another trial
    and is raised here. On an interrupt the launcher's worker processes are killed, as joblib kills
    them when the call it is in is interrupted."""
    errors: list[BaseException] = []

    def guarded() -> None:
        try:
            work()
        except BaseException as err:  # noqa: BLE001 (handed to the main thread)
            errors.append(err)
            source.stopped = True

    threads = [threading.Thread(target=guarded, name=f"trial-{i}", daemon=True) for i in range(n)]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            while thread.is_alive():
                thread.join(0.5)
    except BaseException:
        source.stopped = True
        _kill_loky_workers()
        raise
    if errors:
        raise errors[0]


def _kill_loky_workers() -> None:
    from joblib.externals.loky import reusable_executor

    executor = reusable_executor._executor  # None when no job was launched through joblib
    if executor is not None:
        executor.shutdown(wait=False, kill_workers=True)


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
