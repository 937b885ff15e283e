"""startup: time to the first training step, and time to reject a bad config.

The first-step times are the default run's against the plain script's (target: at most 0.5 s
more), from the `overhead` processes when that benchmark ran in the same session (otherwise from
processes started here). A bad config must be rejected before TensorFlow is imported: target
under 2 seconds, and the probe checks TensorFlow was never loaded.
"""

from __future__ import annotations

from benchmarks import overhead
from benchmarks.results import alternate, compare, say, section, value

REJECT_TARGET = 2.0
BAD = ("model=dynamic", "depth=0")


def _first_step_runs(session):
    if "overhead_runs" in session.shared:
        return session.shared["overhead_runs"]
    trainer, plain, _ = overhead.default_run(session)
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
        compare("default run", "time to the first training step", "s", [r.first_step for r in a],
                [r.first_step for r in b]),
        overhead.over("default run", "time to the first training step", a, b, "first_step"),
        value(f"`{' '.join(BAD)}`", "time to reject a bad config", "s", [r.wall for r in rejects],
              target=REJECT_TARGET),
    ]
    notes = [
        "A: `python -m trainer` as it comes (conf/config.yaml, tracking on); B: benchmarks/plain_keras.py with"
        " the same settings. Times are from process start (as the parent spawns it) to the end of the first"
        " training step (so they include imports, data loading, model building and tracing the train step);"
        " \"more than plain Keras\" is the difference of the medians.",
        f"TensorFlow imported before the bad config was rejected: {'yes' if imported else 'no'}.",
    ]
    return section("startup", "Start-up", "python -m trainer", "plain Keras", rows, notes)
