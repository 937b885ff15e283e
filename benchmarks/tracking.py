"""tracking: epoch time with MLflow tracking on vs off, and the time a run spends after its
last epoch (test evaluation, model logging, plots, flush). Target for epoch time: at most 1.03.
"""

from __future__ import annotations

from benchmarks.results import alternate, compare, median, say, section

TARGET = 1.03


def _run_count(session) -> int:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{session.root / 'outputs' / 'mlflow.db'}")
    return sum(len(client.search_runs(e.experiment_id)) for e in client.search_experiments())


def run(session) -> dict:
    epochs = max(session.sizes.cli_epochs, session.sizes.epochs)
    common = ("model=mlp", "loop=fit", f"epochs={epochs}")
    honored = []

    def on(i):
        r = session.train(*common)
        say(f"  tracking on  {i + 1}: epoch {median(r.steady()) * 1000:.1f} ms, after {r.after_last_epoch:.2f} s")
        return r

    def off(i):
        before = _run_count(session)
        r = session.train(*common, *session.untracked())
        honored.append(_run_count(session) == before)
        say(f"  tracking off {i + 1}: epoch {median(r.steady()) * 1000:.1f} ms, after {r.after_last_epoch:.2f} s")
        return r

    a, b = alternate(on, off, session.sizes.repeats)
    case = f"mlp, digits, {epochs} epochs"
    rows = [
        compare(case, "steady-state epoch time", "s", [median(r.steady()) for r in a],
                [median(r.steady()) for r in b], target=TARGET),
        compare(case, "steady-state epoch CPU time", "s", [median(r.steady("cpu_seconds")) for r in a],
                [median(r.steady("cpu_seconds")) for r in b]),
        compare(case, "time after the last epoch", "s", [r.after_last_epoch for r in a],
                [r.after_last_epoch for r in b]),
        compare(case, "whole `train(cfg)` call", "s", [r.wall for r in a], [r.wall for r in b]),
    ]
    notes = [
        f"`trainer.train.train` in this process, {session.sizes.repeats} runs each, alternately;"
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
