"""The sweepers' settings, stored in Hydra's ConfigStore under hydra/sweeper (every field is a
documented `hydra.sweeper.<name>`; trainer/cli/hydra_guard.py lets the command line set them)."""


from dataclasses import dataclass
from typing import Dict, Optional

from hydra.core.config_store import ConfigStore


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
    params: Optional[Dict[str, str]] = None  # the search space, in Hydra's override grammar


@dataclass
class GridSweeperConf:
    _target_: str = "hydra_plugins.trainer_sweeper.sweepers.GridSweeper"
    max_batch_size: Optional[int] = None
    params: Optional[Dict[str, str]] = None
    new_study: bool = False         # true: run every job again in a new sweep instead of resuming


ConfigStore.instance().store(group="hydra/sweeper", name="optuna", node=OptunaSweeperConf, provider="trainer")
ConfigStore.instance().store(group="hydra/sweeper", name="grid", node=GridSweeperConf, provider="trainer")
