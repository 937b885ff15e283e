"""Pruning an Optuna sweep's trials (`hydra.sweeper.pruner`): the checks of its settings, the Optuna
pruner they make, and, in the process that runs a trial's job, the reporter that sends each epoch's
`sweep.metric` to the trial and says when the trial is pruned.

A job finds its trial from its own Hydra config: the sweeper names the study (and its storage, when
the config leaves it to the default) in the Hydra overrides of every trial it launches
(`trial_overrides`), and a trial's number is its job's number (over `repeats`, replicates.py). A pruned job stops training after that epoch, ends its run FINISHED as any run, and
records the epoch in the trial (PRUNED_ATTR); the sweeper, which tells the study how each trial
ended, tells it PRUNED (optuna_sweep.py). Both launchers work alike: the job may run in the
sweeper's process or in a joblib worker, on this machine or another one sharing the storage.

Nothing here imports Optuna or TensorFlow at module level: the command line's checks run before
either loads.
"""

from __future__ import annotations

import logging

from omegaconf import OmegaConf

from hydra_plugins.trainer_sweeper.config import PRUNERS
from trainer.config.checks import is_int

PRUNED_ATTR = "sweep.pruned_after_epoch"  # a trial's user attr: the epochs its job trained before it was pruned
log = logging.getLogger(__name__)


def settings(sweeper) -> tuple[str, dict]:
    """(pruner name, the parameters set) of a `hydra.sweeper` node."""
    args = OmegaConf.to_container(sweeper.pruner_args)
    return str(sweeper.pruner), {k: v for k, v in args.items() if v is not None}


def problem(name: str, args: dict) -> tuple[str, str] | None:
    """(key, what it must be) for the first setting of `name` and `args` that no pruner takes."""
    if name not in PRUNERS:
        return "hydra.sweeper.pruner", f"one of {', '.join(PRUNERS)}"
    takes = PRUNERS[name][1]
    for key, value in args.items():
        if key not in takes:
            allowed = ", ".join(takes) or "none"
            return f"hydra.sweeper.pruner_args.{key}", f"null with pruner={name}, whose parameters are: {allowed}"
        least, auto = takes[key]
        if not (is_int(value) and value >= least) and not (auto and value == "auto"):
            return f"hydra.sweeper.pruner_args.{key}", f"an integer >= {least}{' or auto' if auto else ''}"
    return None


def build(name: str, args: dict):
    """The Optuna pruner of these settings (checked by `problem`); ValueError for a combination
    Optuna refuses."""
    import optuna

    return getattr(optuna.pruners, PRUNERS[name][0])(**args)


def trial_overrides(sweeper, storage: str, study_name: str) -> list[str]:
    """Hydra overrides that tell each trial's job where its study is, when its study prunes: the
    study's name (new_study=true makes `<name>-2`, which no config holds) and, when the config
    leaves it null, the storage (the default journal file). A storage the config names resolves
    the same in the job, and is not written out again resolved (a database URL may hold a
    password). They are Hydra's settings, so the run's name, params and resume checkpoint are the
    same without them."""
    if str(sweeper.pruner) == "none":
        return []
    where = [] if sweeper.storage else [f"hydra.sweeper.storage={_quoted(storage)}"]
    return [*where, f"hydra.sweeper.study_name={_quoted(study_name)}"]


def _quoted(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace("'", "\\'")
    return f"'{escaped}'"


def was_pruned(study, number: int) -> bool:
    """Whether trial `number`'s job stopped because the trial was pruned (read from the storage, so
    from whatever process ran the job)."""
    return PRUNED_ATTR in study._storage.get_trial(_trial_id(study, number)).user_attrs


def _trial_id(study, number: int) -> int:
    return study._storage.get_trial_id_from_study_id_trial_number(study._study_id, number)


class Reporter:
    """Reports `metric` after every epoch to an Optuna trial; `__call__` says whether to stop."""

    def __init__(self, trial, metric: str, pruner: str, epochs: int) -> None:
        self.trial, self.metric, self.pruner, self.epochs = trial, metric, pruner, epochs

    def __call__(self, epoch: int, logs: dict) -> bool:
        value = logs.get(self.metric)
        if value is None:  # preflight allows only epoch metrics; a run without validation has no val_*
            return False
        # The step is the epoch's index, as in the run's MLflow metrics: n_warmup_steps=k never
        # prunes within the first k epochs.
        self.trial.report(float(value), epoch)
        if epoch + 1 >= self.epochs or not self.trial.should_prune():
            return False
        self.trial.set_user_attr(PRUNED_ATTR, epoch + 1)
        log.warning("trial %d pruned by the %s pruner after epoch %d of %d (%s=%.4f): training stops here",
                    self.trial.number, self.pruner, epoch + 1, self.epochs, self.metric, float(value))
        return True


def job_reporter(metric: str, epochs: int) -> Reporter | None:
    """The reporter of this job's trial when the job is a trial of an Optuna study that prunes;
    otherwise None, without importing Optuna."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    hydra = HydraConfig.get()
    sweeper = hydra.sweeper
    if not str(sweeper.get("_target_", "")).endswith(".OptunaSweeper") or str(sweeper.pruner) == "none":
        return None
    import optuna

    from trainer.sweeps import study as studies

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    name, args = settings(sweeper)
    study = optuna.load_study(study_name=str(sweeper.study_name), storage=studies.open_storage(str(sweeper.storage)),
                              pruner=build(name, args))
    # A trial's K seed replicates are jobs n*K .. n*K+K-1 (replicates.py); they report to one trial,
    # the first to finish an epoch reporting it (Optuna keeps one value per step), and all stop once it is pruned.
    number = int(hydra.job.num) // int(sweeper.get("repeats") or 1)
    trial = optuna.trial.Trial(study, _trial_id(study, number))
    return Reporter(trial, metric, name, epochs)
