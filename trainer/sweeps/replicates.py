"""Seed replicates of Optuna trials (`hydra.sweeper.repeats=K`): each trial's configuration trains
K times, with seeds `seed`, `seed+1`, ..., `seed+K-1` (its `seed`: sampled, set on the command line,
or the config's), and the study is told the mean of the K values.

Job numbers say which trial and which replicate a job is: replicate r of trial n is job n*K + r,
so its folder (<sweep dir>/<job>) and its MLflow run's `sweep.job` tag are the same on every run
of the command, and a resumed sweep finds the replicates that finished (trainer/sweeps/grid_sweep.py
SkipFinished) instead of training them again. With K=1 a job's number is its trial's number.
"""

from __future__ import annotations

import math
import statistics

from hydra.core.utils import JobStatus

SEED_KEY = "seed"


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def replicate_overrides(overrides: list[str], repeats: int, default_seed: int) -> list[list[str]]:
    """The overrides of each of a trial's replicates; a single replicate runs the trial as it is."""
    if repeats == 1:
        return [list(overrides)]
    seeds = [o.split("=", 1)[1] for o in overrides if _key(o) == SEED_KEY]
    base = int(seeds[-1]) if seeds else int(default_seed)
    others = [o for o in overrides if _key(o) != SEED_KEY]
    return [others + [f"{SEED_KEY}={base + r}"] for r in range(repeats)]


def jobs(trials: list[tuple[int, list[str]]], repeats: int, default_seed: int) -> list[tuple[int, int, list[str]]]:
    """(job number, trial number, overrides) of every replicate of the trials (trial number, overrides)."""
    return [(number * repeats + r, number, replicate)
            for number, overrides in trials
            for r, replicate in enumerate(replicate_overrides(overrides, repeats, default_seed))]


def trial_value(values: list[float]) -> float:
    """What the study is told: the mean over the replicates; NaN (the trial fails) when any replicate
    failed, since a mean over the seeds that happened to work would flatter the configuration."""
    if not values or not all(math.isfinite(v) for v in values):
        return math.nan
    return statistics.fmean(values)


def launch(launcher, trials: list[tuple[int, list[str]]], *, repeats: int, default_seed: int) -> dict[int, list[float]]:
    """Launch every replicate of the trials and return {trial number: the replicates' values} (NaN for
    a replicate that failed). Consecutive job numbers go to the launcher together, so a trial's
    replicates (and consecutive trials) run at once under hydra/launcher=joblib."""
    groups: list[list[tuple[int, int, list[str]]]] = []
    for job in sorted(jobs(trials, repeats, default_seed)):
        if groups and groups[-1][-1][0] + 1 == job[0]:
            groups[-1].append(job)
        else:
            groups.append([job])
    values: dict[int, list[float]] = {number: [] for number, _ in trials}
    for group in groups:
        returns = launcher.launch([overrides for _, _, overrides in group], initial_job_idx=group[0][0])
        for (_, number, _), ret in zip(group, returns):
            values[number].append(_value(ret))
    return values


def _value(ret) -> float:
    value = ret._return_value if ret.status == JobStatus.COMPLETED else None
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan
