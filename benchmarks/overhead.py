"""overhead: `python -m trainer` (loop=fit) against benchmarks/plain_keras.py, whole processes.

Both train the default model (mlp) on digits with the same batch size, epochs, seed and learning
rate, each in a fresh process. A third arm, the same command with `resume.every_seconds=0`, shows
what a resume checkpoint after every epoch would cost (the default writes one at most every 10 s).

Steady-state epoch time (first epoch excluded; target at most 1.03) is measured with the three
processes in lockstep, one epoch each in turn (benchmarks/probe.py): on this shared machine a
neighbour's load comes in waves of seconds that moved one whole process's median by 5-20%, more
than the target allows, while epochs taken in turn share the waves. Whole-process wall time,
start-up included, and the epoch time of processes run one after another are reported from
separate runs, one process at a time, interleaved.
"""

from __future__ import annotations

from benchmarks.results import compare, interleave, median, say, section
from benchmarks.session import REPO

TARGET = 1.03
EVERY_EPOCH = "resume.every_seconds=0"


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
    """Epoch and step rows of runs made in lockstep (an epoch is the process's own turn)."""
    return [
        compare(case, "steady-state epoch time", "s", [median(r.steady("span_seconds")) for r in a],
                [median(r.steady("span_seconds")) for r in b], target=target),
        compare(case, "steady-state epoch CPU time", "s", [median(r.steady("span_cpu_seconds")) for r in a],
                [median(r.steady("span_cpu_seconds")) for r in b]),
        compare(case, "training step time", "s", [median(r.steady("step_seconds")) for r in a],
                [median(r.steady("step_seconds")) for r in b]),
    ]


def run(session) -> dict:
    trainer, plain = commands(session)
    every_epoch = [*trainer, EVERY_EPOCH]
    epochs = session.sizes.cli_epochs
    labels = ["python -m trainer", "benchmarks/plain_keras.py", f"python -m trainer {EVERY_EPOCH}"]
    la, lb, lc = session.lockstep_rings([trainer, plain, every_epoch], session.sizes.process_repeats, "overhead")
    a, b, c = interleave([_spawner(session, labels[0], trainer), _spawner(session, labels[1], plain),
                          _spawner(session, labels[2], every_epoch)], session.sizes.process_repeats)
    for runs, label in zip((la, lb, lc, a, b, c), labels * 2):
        _check(runs, label, epochs)
    session.shared["overhead_runs"] = (a, b)

    case = f"mlp, digits, {epochs} epochs"
    rows = _rows(case, la, lb, TARGET) + [
        compare(f"{case}, one process at a time", "steady-state epoch time", "s", [median(r.steady()) for r in a],
                [median(r.steady()) for r in b]),
        compare(f"{case}, one process at a time", "whole-process wall time", "s", [r.wall for r in a],
                [r.wall for r in b]),
        compare(f"{case}, one process at a time", "time after the last epoch", "s", [r.after_last_epoch for r in a],
                [r.after_last_epoch for r in b]),
    ] + _rows(f"same, {EVERY_EPOCH}", lc, lb, None)
    notes = [
        f"A: `python {' '.join(trainer[:-1])}`; B: `python benchmarks/plain_keras.py` with the same settings;"
        f" the `{EVERY_EPOCH}` rows compare A with a resume checkpoint after every epoch against B (A's"
        f" default writes one at most every 10 s, here only after the last of its {epochs} short epochs).",
        f"Epoch rows: the three processes in lockstep, one epoch each in turn, {len(la)} times with each"
        " leading in turn; an epoch runs from its start to the moment the process is idle after every"
        " epoch-end callback (training, validation, MLflow logging and the resume checkpoint's background"
        " write included); medians per process, then across processes.",
        f"\"One process at a time\" rows: {len(a)} separate processes of each kind, interleaved; their epoch"
        " time runs from the end of one epoch to the end of the next.",
        "Time after the last epoch: test evaluation, model logging and interpreter exit (B has no tracking).",
    ]
    return section("overhead", "Framework overhead: `python -m trainer` vs plain Keras", "python -m trainer",
                   "plain Keras", rows, notes)
