"""The Sweeper classes Hydra instantiates; the work is in trainer/sweeps (imported when a sweep
starts, not when Hydra scans its plugins)."""

from __future__ import annotations

from typing import Any, List, Optional

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class OptunaSweeper(Sweeper):
    def __init__(self, **settings: Any) -> None:
        self.settings = settings
        self.config: Optional[DictConfig] = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            config=config, hydra_context=hydra_context, task_function=task_function)

    def sweep(self, arguments: List[str]) -> None:
        from trainer.sweeps import optuna_sweep

        optuna_sweep.run(self.config, self.launcher)


class GridSweeper(BasicSweeper):
    """Hydra's basic sweeper (every value of comma lists and ranges, in batches), whose rerun after an
    interruption skips the jobs that finished (trainer/sweeps/grid_sweep.py)."""

    def __init__(self, max_batch_size: Optional[int] = None, params: Optional[dict] = None,
                 new_study: bool = False) -> None:
        super().__init__(max_batch_size=max_batch_size, params=params)

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from trainer.sweeps import grid_sweep

        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)
        self.launcher = grid_sweep.SkipFinished(self.launcher, config)
