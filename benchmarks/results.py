"""The shape of every benchmark's result, and side-by-side measurement.

A benchmark returns a `section()`: rows that each compare A with B (medians and the ratio of
medians, every sample kept) or state one measured value, each with its target if it has one.
`alternate` runs A and B in A B B A A B ... order within one process tree, so slow drift of a
shared machine (another job starting, the CPU warming) falls on both sides equally.
"""

from __future__ import annotations

import statistics
import sys
from typing import Callable


def interleave(fns: list[Callable[[int], object]], repeats: int) -> list[list]:
    """Call every fn(i) `repeats` times, in forward order on even repeats and backward on odd."""
    outs: list[list] = [[] for _ in fns]
    for i in range(repeats):
        order = list(zip(fns, outs))
        for fn, out in order if i % 2 == 0 else reversed(order):
            out.append(fn(i))
    return outs


def alternate(a: Callable[[int], object], b: Callable[[int], object], repeats: int) -> tuple[list, list]:
    """Call a(i) and b(i) `repeats` times each, alternating which goes first."""
    a_out, b_out = interleave([a, b], repeats)
    return a_out, b_out


def median(values) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def _met(value: float | None, target: float | None, kind: str) -> bool | None:
    if value is None or target is None:
        return None
    if kind == "band":  # a ratio within 1 ± target
        return abs(value - 1) <= target
    return value <= target if kind == "max" else value >= target


def compare(case: str, measure: str, unit: str, a_samples: list, b_samples: list, *,
            target: float | None = None, kind: str = "max") -> dict:
    """A row comparing A with B: medians, ratio A/B of the medians, and whether the ratio
    meets `target` (at most it for kind="max", at least it for kind="min", within 1 ± it for
    kind="band")."""
    a, b = median(a_samples), median(b_samples)
    ratio = a / b if a is not None and b else None
    return {
        "case": case, "measure": measure, "unit": unit, "a": a, "b": b, "ratio": ratio,
        "target": target, "kind": kind, "met": _met(ratio, target, kind),
        "a_samples": list(a_samples), "b_samples": list(b_samples),
        "pair_ratios": pair_ratios(a_samples, b_samples),
    }


def pair_ratios(a_samples: list, b_samples: list) -> list[float]:
    """A/B of each pair of runs made back to back (the i-th of each, from `interleave`). Their
    spread shows how far the shared machine moved one ratio: it is printed beside the ratio of
    the medians, which alone decides a target."""
    if len(a_samples) != len(b_samples) or len(a_samples) < 2:
        return []
    return [x / y for x, y in zip(a_samples, b_samples) if x is not None and y]


def value(case: str, measure: str, unit: str, samples: list, *, target: float | None = None,
          kind: str = "max") -> dict:
    """A row with one measured quantity (median of `samples`), checked against `target` itself."""
    v = median(samples)
    return {
        "case": case, "measure": measure, "unit": unit, "a": v, "b": None, "ratio": None,
        "target": target, "kind": kind, "met": _met(v, target, kind),
        "a_samples": list(samples), "b_samples": [], "pair_ratios": [],
    }


def section(name: str, title: str, a_label: str, b_label: str, rows: list[dict], notes: list[str] = ()) -> dict:
    return {"name": name, "title": title, "a_label": a_label, "b_label": b_label, "rows": rows,
            "notes": list(notes)}


def say(message: str) -> None:
    """Progress on stderr; stdout of in-process training is sent to the log file."""
    print(message, file=sys.__stderr__, flush=True)
