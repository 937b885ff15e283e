"""A grid sweep (`-m depth=1,2,3`) that resumes: rerunning the command after an interruption runs
only the jobs whose MLflow child run did not finish, with their own job numbers, so the job that
was interrupted resumes from its checkpoint in its own run (trainer/run/resume.py).

The sweep's MLflow callback (trainer/tracking/sweep.py) finds the interrupted sweep's parent run;
its FINISHED children are the jobs done. A job's number is its place in the grid, the same on
every run of the command. Without tracking (tracking=none) nothing records which jobs finished, and
every job runs again (each still resumes from its own checkpoint, and a finished one trains anew).
"""

from __future__ import annotations

import os

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import OmegaConf

from trainer.tracking import provenance


class SkipFinished:
    """The sweep's launcher, launching only the jobs not finished in the sweep being resumed (an
    Optuna sweep's too, for the replicates of an interrupted trial: `announce=False`, it says itself)."""

    def __init__(self, launcher, config, announce: bool = True) -> None:
        self.launcher = launcher
        self.config = config
        self.announce = announce
        self.done: dict[int, float | None] | None = None

    def _finished(self) -> dict[int, float | None]:
        if self.done is None:
            self.done = {}
            parent = os.environ.get(provenance.PARENT_RUN_ENV)
            if parent and self.config.tracking.enabled:
                from trainer.tracking import sweep

                self.done = sweep.finished_jobs(self.config.tracking.uri, parent, str(self.config.sweep.metric))
            if self.done and self.announce:
                print(f"resuming sweep {os.environ.get(provenance.SWEEP_ENV)}: {len(self.done)} of {_job_count(self.config)}"
                      " jobs done", flush=True)
        return self.done

    def launch(self, job_overrides, initial_job_idx: int):
        done = self._finished()
        returns: list[JobReturn | None] = [None] * len(job_overrides)
        start = None
        for i in range(len(job_overrides) + 1):
            todo = i < len(job_overrides) and initial_job_idx + i not in done
            if todo and start is None:
                start = i
            if not todo and start is not None:  # launch each run of consecutive jobs to do at once
                launched = self.launcher.launch(job_overrides[start:i], initial_job_idx=initial_job_idx + start)
                returns[start:i] = launched
                start = None
            if i < len(job_overrides) and not todo:
                value = done[initial_job_idx + i]
                returns[i] = JobReturn(overrides=list(job_overrides[i]), status=JobStatus.COMPLETED,
                                       _return_value=float("nan") if value is None else value)
        return returns


def _job_count(config) -> int:
    params = OmegaConf.select(config, "hydra.sweeper.params") or {}
    arguments = [f"{k}={v}" for k, v in params.items()] + [str(o) for o in config.hydra.overrides.task]
    batches = BasicSweeper.split_arguments(OverridesParser.create().parse_overrides(arguments), None)
    return sum(len(batch) for batch in batches)
