"""pipeline: training step time with the real tf.data pipeline vs the same batches in memory.

For every registry model, on digits and on mock CIFAR-10 sized data (32x32x3, 10 classes, from
`tfds.testing.mock_data`), `train(cfg)` runs twice alternately: once as configured, once with
the training split replaced by the batches the real pipeline produced, materialized as tensors
before training starts (no reading, decoding, shuffling or batching left to do). The first epoch
is excluded. Target: at most 1.05, with augmentation off in both arms so that they train on the
same kind of batches; `data=cifar10`'s flip+crop is measured beside it with no target.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time

from benchmarks.results import alternate, compare, median, say, section

TARGET = 1.05
NO_AUGMENT = ("data.augment.flip=false", "data.augment.crop=0", "data.augment.translate=0.0")
ITERATORS = 20  # training iterators created per case to time `iter(dataset)`


def in_memory(dataset):
    """The batches of one pass over `dataset`, served from memory in the same order."""
    import tensorflow as tf

    batches = list(dataset)
    size = lambda batch: int(tf.nest.flatten(batch)[0].shape[0])
    full = [b for b in batches if size(b) == size(batches[0])]
    stacked = tf.nest.map_structure(lambda *parts: tf.stack(parts), *full)
    served = tf.data.Dataset.from_tensor_slices(stacked)
    for batch in batches[len(full):]:  # the last, partial batch
        served = served.concatenate(tf.data.Dataset.from_tensors(batch))
    return served


@contextlib.contextmanager
def batches_in_memory(loaded: list | None = None):
    """While active, the framework's data loader hands out in-memory training batches; the last
    (real, in-memory) pair of training datasets it made is kept in `loaded`."""
    from trainer.data import loading

    real = loading.load

    def load(**kwargs):
        data = real(**kwargs)
        served = dataclasses.replace(data, train=in_memory(data.train))
        if loaded is not None:
            loaded[:] = [(data.train, served.train)]
        return served

    loading.load = load
    try:
        yield
    finally:
        loading.load = real


def iterator_cpu_seconds(dataset, times: int) -> list[float]:
    """CPU time of `iter(dataset)`, which Model.fit calls twice per epoch (a fresh iterator at
    the start, and one it makes and drops at the end: keras/src/trainers/epoch_iterator.py)."""
    samples = []
    for _ in range(times):
        start = time.process_time()
        iter(dataset)
        samples.append(time.process_time() - start)
    return samples


@contextlib.contextmanager
def mock_cifar(session):
    """CIFAR-10's real metadata (written from its TFDS builder, nothing downloaded) with random
    examples: every split yields `cifar_examples` of them."""
    import tensorflow_datasets as tfds

    data_dir = session.workdir / "mock_cifar10"
    builder = tfds.builder("cifar10", data_dir=str(data_dir))
    if not (data_dir / "cifar10").exists():
        builder.data_path.mkdir(parents=True, exist_ok=True)
        builder.info.write_to_directory(builder.data_dir)
    with tfds.testing.mock_data(num_examples=session.sizes.cifar_examples, data_dir=str(data_dir)):
        yield


DATASETS = {
    "digits": (lambda session: (), lambda session: contextlib.nullcontext()),
    "mock CIFAR-10": (lambda session: ("data=cifar10", f"data.data_dir={session.workdir / 'mock_cifar10'}"),
                      mock_cifar),
}

# (case, dataset, overrides, models, target): like with like under the target; then what
# per-batch augmentation adds, which the in-memory arm (one augmented pass, replayed) cannot show
# as equal, on the tiny dense model where it shows most (one model keeps the benchmark to a
# few minutes). models=None: every registry model.
CASES = (
    ("digits", "digits", NO_AUGMENT, None, TARGET),
    ("mock CIFAR-10", "mock CIFAR-10", NO_AUGMENT, None, TARGET),
    ("mock CIFAR-10, flip+crop", "mock CIFAR-10", (), ("mlp",), None),
)


def run(session) -> dict:
    epochs = session.sizes.pipeline_epochs
    rows, iterator_rows = [], []
    for case, dataset, extra, models, target in CASES:
        overrides, context = DATASETS[dataset]
        names = [n for n in session.model_names() if models is None or n in models]
        if not names:
            continue
        loaded: list = []
        for name in names:
            args = (f"model={name}", *overrides(session), *extra, f"epochs={epochs}", *session.untracked())

            def real(i):
                with context(session):
                    r = session.train(*args)
                say(f"  pipeline {case} {name} real {i + 1}: step {median(r.steady('step_seconds')) * 1000:.2f} ms")
                return r

            def memory(i):
                with context(session), batches_in_memory(loaded):
                    r = session.train(*args)
                say(f"  pipeline {case} {name} memory {i + 1}: step {median(r.steady('step_seconds')) * 1000:.2f} ms")
                return r

            a, b = alternate(real, memory, session.sizes.pipeline_repeats)
            # Every steady epoch of every run is a sample, so the median stands with one run (or
            # a few epochs of each) slowed by a neighbour.
            steady = lambda runs, key: [v for r in runs for v in r.steady(key)]
            rows.append(compare(f"{name}, {case}", "steady-state step time", "s",
                                steady(a, "step_seconds"), steady(b, "step_seconds"), target=target))
            rows.append(compare(f"{name}, {case}", "steady-state step CPU time", "s",
                                steady(a, "step_cpu_seconds"), steady(b, "step_cpu_seconds")))
        real_train, memory_train = loaded[-1]
        with context(session):
            iterator_rows.append(compare(case, "creating a training iterator, CPU time", "s",
                                         iterator_cpu_seconds(real_train, ITERATORS),
                                         iterator_cpu_seconds(memory_train, ITERATORS)))
    notes = [
        f"`train(cfg)` with tracking off, default batch size, {epochs} epochs per run (first excluded),"
        f" {session.sizes.pipeline_repeats} runs each, alternately; medians over every steady epoch of those runs."
        f" Mock CIFAR-10 has {session.sizes.cifar_examples} random examples per split.",
        "Step time: from the start of an epoch to the end of its last training step, over the steps; so it"
        " includes the epoch's new iterator and the wait for its first batch.",
        "Rows with a target run both arms with augmentation off (`" + " ".join(NO_AUGMENT) + "`), so both"
        " train on the same batches. The `flip+crop` rows keep `data=cifar10`'s augmentation and have no"
        " target: the real pipeline augments every batch anew each epoch while the in-memory arm replays"
        " one augmented pass, so their ratio is what augmentation costs on this machine (shown for mlp only,"
        " the model that hides it least, to keep the benchmark short).",
        "Creating a training iterator: `iter()` on the training split, as Model.fit does twice per epoch."
        " TensorFlow instantiates (and Grappler-optimizes) every `map` function after the cache again for"
        " each new iterator, so the augmentation costs that once per iterator on top of its per-batch work:"
        " a fixed cost per epoch that shows on the tens-of-steps epochs here, not on full-size datasets.",
    ]
    return section("pipeline", "Input pipeline: real tf.data vs batches in memory", "real pipeline",
                   "in memory", rows + iterator_rows, notes)
