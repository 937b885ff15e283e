"""loops: steady-state training step time of `loop=custom` over `loop=fit`, per registry model.

On digits, in this process, alternately, tracking off; the first epoch (tracing) is excluded.
Target: at most 1.05 for every model.
"""

from __future__ import annotations

from benchmarks.results import alternate, compare, median, say, section

TARGET = 1.05


def run(session) -> dict:
    if not session.has_option("loop", "custom"):
        return section("loops", "Training loops: `loop=custom` vs `loop=fit`", "loop=custom", "loop=fit", [],
                       ["Not measured: this checkout has no `loop=custom` (conf/loop/custom.yaml)."])
    epochs = session.sizes.epochs
    rows = []
    for name in session.model_names():
        def one(loop):
            def go(i):
                r = session.train(f"model={name}", f"loop={loop}", f"epochs={epochs}", *session.untracked())
                say(f"  loops {name} {loop} {i + 1}: step {median(r.steady('step_seconds')) * 1000:.2f} ms")
                return r
            return go

        a, b = alternate(one("custom"), one("fit"), session.sizes.repeats)
        rows.append(compare(name, "steady-state step time", "s", [median(r.steady("step_seconds")) for r in a],
                            [median(r.steady("step_seconds")) for r in b], target=TARGET))
        rows.append(compare(name, "steady-state step CPU time", "s", [median(r.steady("step_cpu_seconds")) for r in a],
                            [median(r.steady("step_cpu_seconds")) for r in b]))
        rows.append(compare(name, "steady-state epoch time", "s", [median(r.steady()) for r in a],
                            [median(r.steady()) for r in b]))
    notes = [
        f"Digits, default knobs and batch size, {epochs} epochs per run (first excluded), tracking off;"
        f" {session.sizes.repeats} runs of each loop, alternately.",
        "Step time: from the start of an epoch to the end of its last training step, over the steps;"
        " epoch time adds validation and the epoch-end callbacks.",
    ]
    return section("loops", "Training loops: `loop=custom` vs `loop=fit`", "loop=custom", "loop=fit", rows, notes)
