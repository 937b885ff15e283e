"""startup: time to the first training step, and time to reject a bad config.

The first-step times come from the `overhead` processes when that benchmark ran in the same
session (otherwise one-epoch processes are started here). A bad config must be rejected before
TensorFlow is imported: target under 2 seconds, and the probe checks TensorFlow was never loaded.
"""

from __future__ import annotations

from benchmarks import overhead
from benchmarks.results import alternate, compare, say, section, value

REJECT_TARGET = 2.0
BAD = ("model=dynamic", "depth=0")


def _first_step_runs(session):
    if "overhead_runs" in session.shared:
        return session.shared["overhead_runs"]
    trainer, plain = overhead.commands(session)
    trainer = [arg for arg in trainer if not arg.startswith("epochs=")] + ["epochs=1"]
    plain = plain[:plain.index("--epochs")] + ["--epochs", "1"] + plain[plain.index("--epochs") + 2:]
    return alternate(lambda i: session.spawn(*trainer), lambda i: session.spawn(*plain),
                     session.sizes.process_repeats)


def run(session) -> dict:
    a, b = _first_step_runs(session)
    rejects = []
    for i in range(session.sizes.reject_repeats):
        r = session.spawn("-m", "trainer", *BAD)
        say(f"  startup {i + 1}: rejected {' '.join(BAD)} in {r.wall:.2f} s (exit {r.returncode})")
        if r.returncode != 2:
            raise RuntimeError(f"`python -m trainer {' '.join(BAD)}` exited {r.returncode}, expected 2")
        rejects.append(r)
    imported = any(r.tensorflow_imported for r in rejects)
    rows = [
        compare("mlp, digits", "time to the first training step", "s", [r.first_step for r in a],
                [r.first_step for r in b]),
        value(f"`{' '.join(BAD)}`", "time to reject a bad config", "s", [r.wall for r in rejects],
              target=REJECT_TARGET),
    ]
    notes = [
        "Times are from process start (as the parent spawns it) to the end of the first training step"
        " (so they include imports, data loading, model building and tracing the train step).",
        f"TensorFlow imported before the bad config was rejected: {'yes' if imported else 'no'}.",
    ]
    return section("startup", "Start-up", "python -m trainer", "plain Keras", rows, notes)
