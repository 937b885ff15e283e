"""compute: achieved FLOP/s of a compute-bound training run over a large matmul's FLOP/s.

The run is `python -m trainer`'s own path (`train(cfg)`, tracking off) for a wide `dynamic` MLP
at a large batch on digits; its FLOPs are counted analytically (benchmarks/flops.py) and divided
by the median time of a full training step. The baseline is an NxN float32 `tf.matmul` compiled
with `tf.function`, timed in the same process, alternately with the training runs.
Target: at least 0.6.
"""

from __future__ import annotations

import time

from benchmarks import flops
from benchmarks.results import alternate, compare, median, say, section

TARGET = 0.6
MATMUL_REPS = 10


def matmul_flops_per_second(n: int) -> float:
    import tensorflow as tf

    a = tf.random.uniform((n, n), dtype=tf.float32)
    b = tf.random.uniform((n, n), dtype=tf.float32)

    @tf.function
    def reps():
        # A data dependency between repetitions stops the runtime from running them concurrently
        # or dropping them; the scalar result means no large copy back to Python.
        c = a
        for _ in range(MATMUL_REPS):
            c = tf.matmul(c, b) * (1.0 / n)
        return tf.reduce_sum(c)

    reps().numpy()  # trace and warm up
    start = time.perf_counter()
    reps().numpy()
    return 2 * n**3 * MATMUL_REPS / (time.perf_counter() - start)


def _model_flops(session, knobs: dict) -> int:
    import keras

    from models import net

    model = net.build("dynamic", "functional", input_shape=(8, 8, 1), num_classes=10, **knobs)
    count = flops.training_flops_per_example(model)
    del model
    keras.backend.clear_session()
    return count


def run(session) -> dict:
    s = session.sizes
    overrides = ("model=dynamic", "depth=4", f"width={s.compute_width}", f"batch_size={s.compute_batch}",
                 "loop=fit", "loop.steps_per_execution=1", f"epochs={s.compute_epochs}")  # one timed step per call
    from trainer.config.validate import validate

    knobs = validate(session.compose(*overrides))["model"]["knobs"]
    per_example = _model_flops(session, knobs)

    def training(i):
        r = session.train(*overrides, *session.untracked())
        # Median over steady-epoch steps: the last step of an epoch is a partial batch.
        step = median([d for e in r.epochs[1:] for d in e["step_durations"]])
        achieved = per_example * s.compute_batch / step
        say(f"  compute training {i + 1}: {achieved / 1e9:.1f} GFLOP/s")
        return achieved

    def matmul(i):
        rate = matmul_flops_per_second(s.matmul_size)
        say(f"  compute matmul {i + 1}: {rate / 1e9:.1f} GFLOP/s")
        return rate

    a, b = alternate(training, matmul, max(s.repeats, 2) if s.repeats > 1 else 1)
    case = f"dynamic depth=4 width={s.compute_width}, batch {s.compute_batch}"
    rows = [compare(case, "FLOP/s", "FLOP/s", a, b, target=TARGET, kind="min")]
    notes = [
        f"Training: `python -m trainer {' '.join(overrides)} tracking.enabled=false` in process;"
        f" {per_example / 1e6:.1f} MFLOP per example (forward + backward of the Dense layers, counted"
        " analytically), divided by the median full-batch step time of the steady epochs.",
        f"Baseline: a {s.matmul_size}x{s.matmul_size} float32 `tf.matmul` chain under `tf.function`"
        f" ({MATMUL_REPS} dependent products per timing).",
    ]
    return section("compute", "Compute efficiency: training vs a large matmul", "training", "matmul", rows, notes)
