"""levers: what each speed lever does to the steady-state epoch, per registry model on digits.

Every arm is `python -m trainer model=NAME` with one lever moved, against the reference arm with
every lever off (`loop=fit loop.steps_per_execution=1 loop.jit_compile=auto`: what `Model.fit` does
out of the box on a CPU). The arms run as processes in lockstep, one epoch each in turn
(benchmarks/probe.py), so the shared machine's waves of load fall on all of them alike. Target: the
default arm (the conf/ defaults, whatever they choose) at most 1.00 of the reference for every
model: a default must never be slower. Beside the times, each lever's largest difference in the
final metrics from the reference, with `deterministic=true` (in process): a default must not change
results either.
"""

from __future__ import annotations

from benchmarks.results import compare, median, section, value

TARGET = 1.00
OFF = ("loop=fit", "loop.steps_per_execution=1", "loop.jit_compile=auto")
# (label, overrides): the default arm first, then one lever at a time against OFF.
ARMS = (
    ("default", ()),
    ("steps_per_execution=16", ("loop=fit", "loop.steps_per_execution=16", "loop.jit_compile=auto")),
    ("jit_compile=true", ("loop=fit", "loop.steps_per_execution=1", "loop.jit_compile=true")),
    ("loop=custom", ("loop=custom", "loop.steps_per_execution=1", "loop.jit_compile=auto")),
    ("loop=custom, steps_per_execution=auto", ("loop=custom", "loop.steps_per_execution=auto",
                                               "loop.jit_compile=auto")),
)
RESULT_EPOCHS = 2


def _metric_difference(session, name: str, overrides: tuple, reference: dict) -> float:
    run = session.train(f"model={name}", *overrides, f"epochs={RESULT_EPOCHS}", "deterministic=true",
                        *session.untracked(), "resume.enabled=false")
    return max(abs(run.metrics[k] - reference[k]) for k in reference)


def run(session) -> dict:
    epochs = session.sizes.epochs
    rows, missing = [], []
    for name in session.model_names():
        commands = [session.trainer_command(f"model={name}", *overrides, f"epochs={epochs}", *session.untracked())
                    for overrides in (OFF, *(o for _, o in ARMS))]
        try:
            reference, *arms = session.lockstep_rings(commands, session.sizes.repeats, f"levers {name}")
        except RuntimeError as err:  # one model's broken ring must not lose the others' rows
            missing.append(f"{name} not measured: {err}")
            continue
        off = session.train(f"model={name}", *OFF, f"epochs={RESULT_EPOCHS}", "deterministic=true",
                            *session.untracked(), "resume.enabled=false").metrics
        for (label, overrides), runs in zip(ARMS, arms):
            case = f"{name}, {label}"
            rows.append(compare(case, "steady-state epoch time", "s", [median(r.steady("span_seconds")) for r in runs],
                                [median(r.steady("span_seconds")) for r in reference],
                                target=TARGET if label == "default" else None))
            rows.append(compare(case, "steady-state step time", "s", [median(r.steady("step_seconds")) for r in runs],
                                [median(r.steady("step_seconds")) for r in reference]))
            rows.append(value(case, "largest final-metric difference from levers off", "",
                              [_metric_difference(session, name, overrides, off)]))
    notes = [
        "B (levers off): `python -m trainer model=NAME " + " ".join(OFF) + "`; A: the same with one lever"
        " moved (the `default` arm: no loop overrides, the conf/ defaults). Digits, default batch size,"
        f" tracking off, {epochs} epochs per run (first excluded); the {len(ARMS) + 1} arms in lockstep,"
        f" {session.sizes.repeats} rings, each arm leading in turn.",
        "Epoch time: from an epoch's start to the moment the process is idle after its epoch-end callbacks"
        " (validation included); step time: from the start of an epoch to the end of its last training step,"
        " over the steps.",
        f"Largest final-metric difference: `train(cfg)` in process, {RESULT_EPOCHS} epochs with"
        " `deterministic=true`, the largest absolute difference of any final metric (loss, accuracy, their"
        " `val_` and `test_` values) from the same run with the levers off; 0 means the same numbers.",
    ]
    notes += missing
    return section("levers", "Speed levers: one lever moved vs all off (`loop=fit`, one step per call, no XLA)",
                   "lever moved", "levers off", rows, notes)
