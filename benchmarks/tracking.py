"""tracking: epoch time with MLflow tracking on vs off, and the time a run spends after its
last epoch (test evaluation, model logging, plots, flush). Target for epoch time: at most 1.03.

Runs the defaults (resume on: the per-epoch checkpoint keeps the metrics the store has not
confirmed, so logging never waits for the store) and, as a second pair, `resume.enabled=false`.
"""

from __future__ import annotations

from benchmarks.results import compare, interleave, median, say, section

TARGET = 1.03
NO_RESUME = "resume.enabled=false"


def _run_count(session) -> int:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{session.root / 'outputs' / 'mlflow.db'}")
    return sum(len(client.search_runs(e.experiment_id)) for e in client.search_experiments())


def run(session) -> dict:
    epochs = max(session.sizes.cli_epochs, session.sizes.epochs)
    common = ("model=mlp", "loop=fit", f"epochs={epochs}")
    honored = []

    def arm(label: str, *extra: str, tracked: bool):
        def go(i):
            before = _run_count(session)
            r = session.train(*common, *extra)
            if not tracked:
                honored.append(_run_count(session) == before)
            say(f"  tracking {label:22s} {i + 1}: epoch {median(r.steady()) * 1000:.1f} ms,"
                f" after {r.after_last_epoch:.2f} s")
            return r
        return go

    on, off, on_nr, off_nr = interleave([
        arm("on", tracked=True), arm("off", *session.untracked(), tracked=False),
        arm(f"on, {NO_RESUME}", NO_RESUME, tracked=True),
        arm(f"off, {NO_RESUME}", NO_RESUME, *session.untracked(), tracked=False),
    ], session.sizes.repeats)

    def pair(case, a, b, target):
        return [
            compare(case, "steady-state epoch time", "s", [median(r.steady()) for r in a],
                    [median(r.steady()) for r in b], target=target),
            compare(case, "steady-state epoch CPU time", "s", [median(r.steady("cpu_seconds")) for r in a],
                    [median(r.steady("cpu_seconds")) for r in b]),
        ]

    case = f"mlp, digits, {epochs} epochs"
    rows = pair(case, on, off, TARGET) + [
        compare(case, "time after the last epoch", "s", [r.after_last_epoch for r in on],
                [r.after_last_epoch for r in off]),
        compare(case, "whole `train(cfg)` call", "s", [r.wall for r in on], [r.wall for r in off]),
    ] + pair(f"same, {NO_RESUME}", on_nr, off_nr, None)
    notes = [
        f"`trainer.train.train` in this process, {session.sizes.repeats} runs of each arm, interleaved;"
        " default local SQLite store.",
        "Time after the last epoch: from the end of the last epoch to `train` returning (test evaluation"
        " in both; model logging, plots and the final flush only with tracking on).",
    ]
    if not all(honored):
        notes.append("`tracking.enabled=false` still created MLflow runs in this checkout, so B is not"
                     " tracking-free and the ratio does not measure tracking.")
        for row in rows:
            row["met"] = None
    return section("tracking", "Tracking: MLflow on vs off", "tracking on", "tracking off", rows, notes)
