"""The sweepers' settings, stored in Hydra's ConfigStore under hydra/sweeper (every field is a
documented `hydra.sweeper.<name>`; trainer/cli/hydra_guard.py lets the command line set them)."""


from dataclasses import dataclass, field, make_dataclass
from typing import Any, Dict, Optional

from hydra.core.config_store import ConfigStore


# `hydra.sweeper.pruner`: each pruner's Optuna class and its parameters (Optuna's names), each with
# the least value it takes and whether it also takes `auto`; trainer/sweeps/pruning.py builds the
# pruner from this and trainer/cli/command.py checks the settings against it.
PRUNERS: Dict[str, tuple] = {
    "none": ("NopPruner", {}),
    "median": ("MedianPruner", {"n_startup_trials": (0, False), "n_warmup_steps": (0, False),
                                "interval_steps": (1, False), "n_min_trials": (1, False)}),
    "hyperband": ("HyperbandPruner", {"min_resource": (1, False), "max_resource": (1, True),
                                      "reduction_factor": (2, False), "bootstrap_count": (0, False)}),
    "successive_halving": ("SuccessiveHalvingPruner", {"min_resource": (1, True), "reduction_factor": (2, False),
                                                       "min_early_stopping_rate": (0, False),
                                                       "bootstrap_count": (0, False)}),
}
# hydra.sweeper.pruner_args: every pruner's parameters, each null (Optuna's default) unless set, so the
# command line sets one without a `+` and a misspelt one is refused by Hydra itself.
PrunerArgs = make_dataclass("PrunerArgs", [(name, Any, field(default=None))
                                           for name in dict.fromkeys(k for _, p in PRUNERS.values() for k in p)])


@dataclass
class OptunaSweeperConf:
    _target_: str = "hydra_plugins.trainer_sweeper.sweepers.OptunaSweeper"
    sampler: str = "tpe"            # tpe | random | cmaes | grid
    seed: Optional[int] = None      # the sampler's seed (hparams_search=optuna: ${seed})
    direction: str = "maximize"     # or minimize
    storage: Optional[str] = None   # null: <outputs>/studies/<study>.journal; or a database URL, or a journal file
    study_name: Optional[str] = None  # null: optuna-<hash of the command's overrides>
    new_study: bool = False         # true: start <study>-2 (-3, ...) instead of continuing the study
    n_trials: int = 20              # trials of the whole study, over every run of the command
    n_jobs: Optional[int] = None    # trials running at once; null: hydra.launcher.n_jobs with joblib, else 1
    max_failure_rate: float = 0.0   # the study stops once more than this share of its trials failed
    pruner: str = "none"            # none | median | hyperband | successive_halving (docs/sweeps.md#pruning)
    pruner_args: PrunerArgs = field(default_factory=PrunerArgs)  # its parameters; null: Optuna's default
    repeats: int = 1                # seeds each sampled configuration trains with; the study gets their mean
    params: Optional[Dict[str, str]] = None  # the search space, in Hydra's override grammar


@dataclass
class GridSweeperConf:
    _target_: str = "hydra_plugins.trainer_sweeper.sweepers.GridSweeper"
    max_batch_size: Optional[int] = None
    params: Optional[Dict[str, str]] = None
    new_study: bool = False         # true: run every job again in a new sweep instead of resuming


ConfigStore.instance().store(group="hydra/sweeper", name="optuna", node=OptunaSweeperConf, provider="trainer")
ConfigStore.instance().store(group="hydra/sweeper", name="grid", node=GridSweeperConf, provider="trainer")
