"""loops: steady-state training step time of `loop=custom` over `loop=fit`, per registry model.

On digits, tracking off, the first epoch (tracing) excluded; `python -m trainer loop=custom` and
`loop=fit` run as two processes in lockstep, one epoch each in turn (benchmarks/probe.py), so the
shared machine's waves of load fall on both alike. Target: at most 1.05 for every model.
"""

from __future__ import annotations

from benchmarks.results import compare, median, section

TARGET = 1.05


def run(session) -> dict:
    if not session.has_option("loop", "custom"):
        return section("loops", "Training loops: `loop=custom` vs `loop=fit`", "loop=custom", "loop=fit", [],
                       ["Not measured: this checkout has no `loop=custom` (conf/loop/custom.yaml)."])
    epochs = session.sizes.epochs
    rows = []
    for name in session.model_names():
        a, b = session.lockstep_rings(
            [session.trainer_command(f"model={name}", f"loop={loop}", f"epochs={epochs}", *session.untracked())
             for loop in ("custom", "fit")], session.sizes.repeats, f"loops {name} custom/fit")
        rows.append(compare(name, "steady-state step time", "s", [median(r.steady("step_seconds")) for r in a],
                            [median(r.steady("step_seconds")) for r in b], target=TARGET))
        rows.append(compare(name, "steady-state step CPU time", "s", [median(r.steady("step_cpu_seconds")) for r in a],
                            [median(r.steady("step_cpu_seconds")) for r in b]))
        rows.append(compare(name, "steady-state epoch time", "s", [median(r.steady("span_seconds")) for r in a],
                            [median(r.steady("span_seconds")) for r in b]))
    notes = [
        f"Digits, default knobs and batch size, {epochs} epochs per run (first excluded), tracking off;"
        f" {session.sizes.repeats} pairs of processes in lockstep, each loop leading in turn.",
        "Step time: from the start of an epoch to the end of its last training step, over the steps;"
        " epoch time adds validation and the epoch-end callbacks.",
    ]
    return section("loops", "Training loops: `loop=custom` vs `loop=fit`", "loop=custom", "loop=fit", rows, notes)
