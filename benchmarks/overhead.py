"""overhead: `python -m trainer` (loop=fit) against benchmarks/plain_keras.py, whole processes.

Both train the default model (mlp) on digits with the same batch size, epochs, seed and learning
rate, each in a fresh process, interleaved. Steady-state epoch time (first epoch excluded) has a
target of at most 1.03; whole-process wall time, start-up included, is reported. A third arm,
the same command with `resume.enabled=false`, shows what the per-epoch resume checkpoint costs.
"""

from __future__ import annotations

from benchmarks.results import compare, interleave, median, say, section
from benchmarks.session import REPO

TARGET = 1.03
NO_RESUME = "resume.enabled=false"


def commands(session) -> tuple[list[str], list[str]]:
    """The two command lines, with every shared setting taken from the composed config."""
    epochs = session.sizes.cli_epochs
    cfg = session.compose("model=mlp", "loop=fit")
    trainer = ["-m", "trainer", "model=mlp", "loop=fit", f"epochs={epochs}", f"data.data_dir={session.tfds_dir}"]
    plain = [str(REPO / "benchmarks" / "plain_keras.py"), "--epochs", str(epochs),
             "--batch-size", str(cfg.batch_size), "--seed", str(cfg.seed),
             "--learning-rate", str(cfg.optimizer.learning_rate), "--width", str(cfg.width),
             "--data-dir", str(session.tfds_dir)]
    return trainer, plain


def _check(runs, label: str, epochs: int) -> None:
    for r in runs:
        if r.returncode != 0 or len(r.epochs) != epochs:
            raise RuntimeError(f"{label} exited {r.returncode} after {len(r.epochs)} of {epochs} epochs;"
                               " see the log in the output folder")


def _spawner(session, label: str, command: list[str]):
    def go(i):
        r = session.spawn(*command)
        say(f"  overhead {i + 1}: {label:32s} {r.wall:6.2f} s, epoch {median(r.steady()) or 0:.3f} s")
        return r
    return go


def _rows(case: str, a, b, target) -> list[dict]:
    return [
        compare(case, "steady-state epoch time", "s", [median(r.steady()) for r in a],
                [median(r.steady()) for r in b], target=target),
        compare(case, "steady-state epoch CPU time", "s", [median(r.steady("cpu_seconds")) for r in a],
                [median(r.steady("cpu_seconds")) for r in b]),
        compare(case, "training step time", "s", [median(r.steady("step_seconds")) for r in a],
                [median(r.steady("step_seconds")) for r in b]),
    ]


def run(session) -> dict:
    trainer, plain = commands(session)
    no_resume = [*trainer, NO_RESUME]
    epochs = session.sizes.cli_epochs
    a, b, c = interleave([_spawner(session, "python -m trainer", trainer),
                          _spawner(session, "plain_keras.py", plain),
                          _spawner(session, f"python -m trainer {NO_RESUME}", no_resume)],
                         session.sizes.process_repeats)
    _check(a, "python -m trainer", epochs)
    _check(b, "benchmarks/plain_keras.py", epochs)
    _check(c, f"python -m trainer {NO_RESUME}", epochs)
    session.shared["overhead_runs"] = (a, b)

    case = f"mlp, digits, {epochs} epochs"
    rows = _rows(case, a, b, TARGET) + [
        compare(case, "whole-process wall time", "s", [r.wall for r in a], [r.wall for r in b]),
        compare(case, "time after the last epoch", "s", [r.after_last_epoch for r in a],
                [r.after_last_epoch for r in b]),
    ] + _rows(f"same, {NO_RESUME}", c, b, None)
    notes = [
        f"A: `python {' '.join(trainer[:-1])}`; B: `python benchmarks/plain_keras.py` with the same settings;"
        f" the `{NO_RESUME}` rows compare A with the per-epoch resume checkpoint turned off against B.",
        "Epoch time is measured from the end of one epoch to the end of the next (training, validation"
        " and every epoch-end callback, MLflow logging and the resume checkpoint included); medians per"
        f" process, then across {len(a)} processes of each kind, interleaved.",
        "Time after the last epoch: test evaluation, model logging and interpreter exit (B has no tracking).",
    ]
    return section("overhead", "Framework overhead: `python -m trainer` vs plain Keras", "python -m trainer",
                   "plain Keras", rows, notes)
