"""The search space of an Optuna sweep, read from Hydra's override grammar, the grammar
hydra-optuna-sweeper used: `interval(a, b)`, `int(interval(a, b))`, `tag(log, interval(a, b))`,
`choice(a, b, ...)` or `a,b,...`, and `range(start, stop[, step])` (stop excluded, as in Hydra's
grid). Each dimension is a plain description (a dict) here, so the fast path can check it without
Optuna; `distribution` turns one into an Optuna distribution when the sweep runs.
"""

from __future__ import annotations

import itertools
import math

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep, Transformer

# Values a grid sampler or the range check tries per dimension at most.
MAX_VALUES = 1000


class SpaceError(ValueError):
    """A dimension the sweep cannot sample; the message names the override."""


def arguments(params, task_overrides) -> list[str]:
    """The overrides a sweep reads its space from: hydra.sweeper.params, then the command line's."""
    return [f"{k}={v}" for k, v in (params or {}).items()] + list(task_overrides)


def parse(args: list[str]) -> tuple[dict[str, dict], dict[str, str]]:
    """({key: dimension}, {key: fixed value as typed}) of a sweep's overrides; a later override of
    a key replaces an earlier one (the command line wins over hydra.sweeper.params)."""
    space, fixed = {}, {}
    for override in OverridesParser.create().parse_overrides(args):
        key = override.get_key_element()
        space.pop(key, None)
        fixed.pop(key, None)
        if override.is_sweep_override():
            space[key] = _dimension(override)
        else:
            fixed[key] = override.get_value_element_as_str()
    return space, fixed


def _dimension(override) -> dict:
    value = override.value()
    line = override.input_line
    if override.is_choice_sweep() or (override.is_range_sweep() and value.shuffle):
        choices = list(override.sweep_iterator(transformer=Transformer.encode))
        for choice in choices:
            if not isinstance(choice, (str, int, float, bool, type(None))):
                raise SpaceError(f"{line}: a choice must be a string, number, bool or null, not {choice!r}")
        return {"type": "categorical", "choices": choices}
    if override.is_range_sweep():
        assert isinstance(value, RangeSweep)
        values = list(itertools.islice(override.sweep_iterator(), MAX_VALUES + 1))
        if not values:
            raise SpaceError(f"{line}: the range holds no value")
        kind = "float" if any(isinstance(v, float) for v in (value.start, value.stop, value.step)) else "int"
        return {"type": kind, "low": values[0], "high": values[-1], "step": value.step, "log": False}
    if override.is_interval_sweep():
        assert isinstance(value, IntervalSweep)
        log = "log" in value.tags
        kind = "int" if isinstance(value.start, int) and isinstance(value.end, int) else "float"
        if not value.start < value.end:
            raise SpaceError(f"{line}: an interval needs low < high")
        if log and value.start <= 0:
            raise SpaceError(f"{line}: a log-scale interval needs low > 0")
        return {"type": kind, "low": value.start, "high": value.end, "step": None, "log": log}
    raise SpaceError(f"{line}: not a sweep Optuna can sample (choice, range or interval)")


def describe(dimension: dict) -> str:
    """A dimension as the grammar writes it: what a changed search space names."""
    if dimension["type"] == "categorical":
        return f"choice({', '.join(map(str, dimension['choices']))})"
    if dimension["step"] is not None:
        return f"range({dimension['low']}, {dimension['high']}, step {dimension['step']})"
    inner = f"interval({dimension['low']}, {dimension['high']})"
    inner = f"int({inner})" if dimension["type"] == "int" else inner
    return f"tag(log, {inner})" if dimension["log"] else inner


def describe_all(space: dict[str, dict]) -> dict[str, str]:
    return {key: describe(d) for key, d in sorted(space.items())}


def difference(old: dict[str, str], new: dict[str, str]) -> str:
    """The change between two described spaces, for one line ("" when they are the same)."""
    parts = [f"{k}: {old[k]} -> {new[k]}" for k in sorted(old.keys() & new.keys()) if old[k] != new[k]]
    parts += [f"{k} added ({new[k]})" for k in sorted(new.keys() - old.keys())]
    parts += [f"{k} removed (was {old[k]})" for k in sorted(old.keys() - new.keys())]
    return "; ".join(parts)


def extremes(dimension: dict) -> list:
    """The values the range check composes a job with: both ends of a range or interval, every
    choice (a rule broken inside a numeric range but not at its ends is found when a trial starts)."""
    if dimension["type"] == "categorical":
        return list(dimension["choices"])
    return [dimension["low"], dimension["high"]]


def grid_values(dimension: dict) -> list:
    """Every value a grid sampler visits on a dimension: choices and ranges only."""
    if dimension["type"] == "categorical":
        return list(dimension["choices"])
    if dimension["step"] is None:
        raise SpaceError("an interval has no grid of values")
    count = int(math.floor((dimension["high"] - dimension["low"]) / dimension["step"] + 1e-9)) + 1
    return [dimension["low"] + i * dimension["step"] for i in range(count)]


def distribution(dimension: dict):
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if dimension["type"] == "categorical":
        return CategoricalDistribution(dimension["choices"])
    kind = IntDistribution if dimension["type"] == "int" else FloatDistribution
    if dimension["step"] is not None:
        return kind(dimension["low"], dimension["high"], step=dimension["step"])
    return kind(dimension["low"], dimension["high"], log=dimension["log"])
