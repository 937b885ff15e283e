"""tracking: epoch time with MLflow tracking on vs off, and the time a run spends after its
last epoch (test evaluation, model logging, plots, flush). Target for epoch time: at most 1.03.

Runs the defaults and, as a second pair, `resume.every_seconds=0`: a resume checkpoint after every
epoch, each holding the metrics the store has not confirmed yet (so logging never waits for it).
Epoch rows: the four arms as `python -m trainer` processes in lockstep, one epoch each in turn
(benchmarks/probe.py), so the shared machine's waves of load fall on all alike. The rows about
the end of a run: `train(cfg)` in this process, tracking on and off alternately.
"""

from __future__ import annotations

from benchmarks.results import compare, interleave, median, say, section

TARGET = 1.03
EVERY_EPOCH = "resume.every_seconds=0"


def _run_count(session) -> int:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{session.root / 'outputs' / 'mlflow.db'}")
    return sum(len(client.search_runs(e.experiment_id)) for e in client.search_experiments())


def run(session) -> dict:
    epochs = max(session.sizes.cli_epochs, session.sizes.epochs)
    common = ("model=mlp", "loop=fit", f"epochs={epochs}")
    arms = [(), tuple(session.untracked()), (EVERY_EPOCH,), (EVERY_EPOCH, *session.untracked())]
    before = _run_count(session)
    on, off, on_ee, off_ee = session.lockstep_rings([session.trainer_command(*common, *extra) for extra in arms],
                                                    session.sizes.repeats, "tracking on/off/on,ee/off,ee")
    # Only the two tracked arms may have made runs: otherwise tracking.enabled=false is not honoured.
    honored = [_run_count(session) - before == 2 * session.sizes.repeats]

    def arm(label: str, *extra: str):
        def go(i):
            r = session.train(*common, *extra)
            say(f"  tracking {label} {i + 1}: after the last epoch {r.after_last_epoch:.2f} s")
            return r
        return go

    end_on, end_off = interleave([arm("on"), arm("off", *session.untracked())], session.sizes.repeats)

    def pair(case, a, b, target):
        return [
            compare(case, "steady-state epoch time", "s", [median(r.steady("span_seconds")) for r in a],
                    [median(r.steady("span_seconds")) for r in b], target=target),
            compare(case, "steady-state epoch CPU time", "s", [median(r.steady("span_cpu_seconds")) for r in a],
                    [median(r.steady("span_cpu_seconds")) for r in b]),
        ]

    case = f"mlp, digits, {epochs} epochs"
    rows = pair(case, on, off, TARGET) + [
        compare(f"{case}, in process", "time after the last epoch", "s", [r.after_last_epoch for r in end_on],
                [r.after_last_epoch for r in end_off]),
        compare(f"{case}, in process", "whole `train(cfg)` call", "s", [r.wall for r in end_on],
                [r.wall for r in end_off]),
    ] + pair(f"same, {EVERY_EPOCH}", on_ee, off_ee, None)
    notes = [
        f"Epoch rows: `python -m trainer`, the four arms in lockstep, {session.sizes.repeats} rings, each arm"
        " leading in turn; an epoch runs from its start to the moment the process is idle after its"
        " epoch-end callbacks (MLflow logging and the resume checkpoint included). Default local SQLite store.",
        f"In-process rows: `trainer.train.train`, {session.sizes.repeats} runs with tracking on and off,"
        " alternately. Time after the last epoch: from the end of the last epoch to `train` returning (test"
        " evaluation in both; model logging, plots and the final flush only with tracking on).",
    ]
    if not all(honored):
        notes.append("`tracking.enabled=false` still created MLflow runs in this checkout, so B is not"
                     " tracking-free and the ratio does not measure tracking.")
        for row in rows:
            row["met"] = None
    return section("tracking", "Tracking: MLflow on vs off", "tracking on", "tracking off", rows, notes)
