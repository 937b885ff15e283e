"""pipeline: training step time with the real tf.data pipeline vs the same batches in memory.

For every registry model, on digits and on mock CIFAR-10 sized data (32x32x3, 10 classes, from
`tfds.testing.mock_data`), `train(cfg)` runs twice alternately: once as configured, once with
the training split replaced by the batches the real pipeline produced, materialized as tensors
before training starts (no reading, decoding, shuffling or batching left to do). The first epoch
is excluded. Target: at most 1.05.
"""

from __future__ import annotations

import contextlib
import dataclasses

from benchmarks.results import alternate, compare, median, say, section

TARGET = 1.05


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
def batches_in_memory():
    """While active, the framework's data loader hands out in-memory training batches."""
    from trainer.data import loading

    real = loading.load

    def load(**kwargs):
        data = real(**kwargs)
        return dataclasses.replace(data, train=in_memory(data.train))

    loading.load = load
    try:
        yield
    finally:
        loading.load = real


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


def run(session) -> dict:
    epochs = session.sizes.epochs
    rows = []
    for dataset, (overrides, context) in DATASETS.items():
        for name in session.model_names():
            args = (f"model={name}", *overrides(session), f"epochs={epochs}", *session.untracked())

            def real(i):
                with context(session):
                    r = session.train(*args)
                say(f"  pipeline {dataset} {name} real {i + 1}: step {median(r.steady('step_seconds')) * 1000:.2f} ms")
                return r

            def memory(i):
                with context(session), batches_in_memory():
                    r = session.train(*args)
                say(f"  pipeline {dataset} {name} memory {i + 1}: step {median(r.steady('step_seconds')) * 1000:.2f} ms")
                return r

            a, b = alternate(real, memory, session.sizes.repeats)
            rows.append(compare(f"{name}, {dataset}", "steady-state step time", "s",
                                [median(r.steady("step_seconds")) for r in a],
                                [median(r.steady("step_seconds")) for r in b], target=TARGET))
            rows.append(compare(f"{name}, {dataset}", "steady-state step CPU time", "s",
                                [median(r.steady("step_cpu_seconds")) for r in a],
                                [median(r.steady("step_cpu_seconds")) for r in b]))
    notes = [
        f"`train(cfg)` with tracking off, default batch size, {epochs} epochs per run (first excluded),"
        f" {session.sizes.repeats} runs each, alternately; mock CIFAR-10 has"
        f" {session.sizes.cifar_examples} random examples.",
        "Step time: from the start of an epoch to the end of its last training step, over the steps.",
    ]
    return section("pipeline", "Input pipeline: real tf.data vs batches in memory", "real pipeline",
                   "in memory", rows, notes)
