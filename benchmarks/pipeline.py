"""pipeline: training step time with the real tf.data pipeline vs what a Keras user writes instead.

The reference is `model.fit(x, y, batch_size=..., shuffle=True)` on NumPy arrays holding the same
training split: like the real pipeline, it makes a new, reshuffled batch every step. For every
registry model, on digits and on mock CIFAR-10 sized data (32x32x3, 10 classes, from
`tfds.testing.mock_data`), `train(cfg)` trains the model for one epoch and keeps the training split
it loaded; that one compiled model then trains one epoch at a time on each arm, in turn, in this
process: the arms share the process, the model and its traced step, and adjacent epochs share the
machine's load. Target: at most 1.00, with augmentation off so that all arms train on the same
examples. Beside it, without a target: the same batches held in memory as tensors and served again
each epoch (no reading, shuffling or batching left, and no new batch made), and `data=cifar10`'s
flip+crop against those.

Why not two processes: in lockstep (as `loops` runs) two processes training the same thing
differed by a few percent of their own, which three rings of new processes did not average out.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time

from benchmarks.results import compare, median, say, section

TARGET = 1.00
NO_AUGMENT = ("data.augment.flip=false", "data.augment.crop=0", "data.augment.translate=0.0")
ITERATORS = 20  # training iterators created per case to time `iter(dataset)`


def in_memory(dataset):
    """The batches of one pass over `dataset`, served from memory in the same order, two ahead.

    tf.data's autotuning is off here: with it on, destroying the previous epoch's iterator (which
    Model.fit does as each epoch starts) waited, idle, for the autotuning thread, 0.1-1.7 s at about
    one epoch in four for cnn on mock CIFAR-10 (py-spy: RootDataset::Iterator::~Iterator), which made
    the reference slower than the real pipeline. A fixed prefetch of two is the cheapest feed."""
    import tensorflow as tf

    batches = list(dataset)
    size = lambda batch: int(tf.nest.flatten(batch)[0].shape[0])
    full = [b for b in batches if size(b) == size(batches[0])]
    stacked = tf.nest.map_structure(lambda *parts: tf.stack(parts), *full)
    served = tf.data.Dataset.from_tensor_slices(stacked)
    for batch in batches[len(full):]:  # the last, partial batch
        served = served.concatenate(tf.data.Dataset.from_tensors(batch))
    options = tf.data.Options()
    options.autotune.enabled = False
    return served.prefetch(2).with_options(options)


def numpy_fit_dataset(dataset):
    """What `model.fit(x, y, batch_size=B, shuffle=True, epochs=N)` iterates, with x and y one pass
    over `dataset` as NumPy arrays (B its batch size): Keras's own array adapter, built once as that
    one `fit` call builds it, each epoch a new iterator and a new permutation of the examples.
    Calling `fit(x, y)` once per epoch instead would build the adapter (and convert the arrays)
    every epoch, which a user's single `fit` call does not."""
    import numpy as np
    import tensorflow as tf
    from keras.src.trainers.data_adapters.array_data_adapter import ArrayDataAdapter

    xs, ys = zip(*((x.numpy(), y.numpy()) for x, y in dataset))
    x, y = np.concatenate(xs), np.concatenate(ys)
    adapter = ArrayDataAdapter(x, y, batch_size=len(ys[0]), shuffle=True)
    # fit(x, y) knows the adapter's batch count; its dataset alone would not tell Keras (unknown
    # cardinality), which would then end each epoch with one more call that finds no data.
    return adapter.get_tf_dataset().apply(tf.data.experimental.assert_cardinality(adapter.num_batches))


@contextlib.contextmanager
def batches_in_memory(loaded: list | None = None):
    """While active, the framework's data loader hands out in-memory training batches (`in_memory`);
    the last (real, in-memory) pair of training datasets it made is kept in `loaded`."""
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
    """CPU time of `iter(dataset)`, which both loops call once per epoch (Model.fit, given
    steps_per_epoch as the framework gives it; without it, twice: keras/src/trainers/epoch_iterator.py)."""
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

# (case, dataset, overrides, models, target): like with like under the target, each model against
# `fit(x, y, shuffle=True)` and, as a diagnostic, the same batches in memory; then, on the model
# where it shows most (one model keeps the benchmark to a few minutes), what per-batch augmentation
# adds, against one augmented pass replayed from memory (no target: the arms differ in work).
# models=None: every registry model.
CASES = (
    ("digits", "digits", NO_AUGMENT, None, TARGET),
    ("mock CIFAR-10", "mock CIFAR-10", NO_AUGMENT, None, TARGET),
    ("mock CIFAR-10, flip+crop", "mock CIFAR-10", (), ("mlp",), None),
)


def alternate_epochs(session, arms: dict, label: str) -> dict[str, list[dict]]:
    """Epochs on each arm (name -> a function training one epoch under the probe), in turn, forward
    and backward (A B C C B A ...), each a new `Model.fit` call with a new iterator: at least
    `pipeline_epochs` each, and more until each arm has trained `pipeline_seconds`, so a model with
    30 ms epochs gets as many samples of the machine's waves as one with 1 s epochs. The first round
    is left out (each arm's first iterator)."""
    from benchmarks import probe

    def epoch(fit) -> dict:
        with session.quiet(), probe.clock() as clock:
            fit()
        result = clock.epochs()[0]
        later = list(zip(result["step_durations"], result["steps_per_call"]))[1:]
        result["later_step_seconds"] = sum(d for d, _ in later) / sum(n for _, n in later) if later else None
        return result

    sizes = session.sizes
    names = list(arms)
    out: dict[str, list[dict]] = {name: [] for name in names}
    rounds = 0
    while rounds < sizes.pipeline_epochs + 1 or min(
            sum(e["train_seconds"] for e in out[name][1:]) for name in names) < sizes.pipeline_seconds:
        for name in names if rounds % 2 == 0 else reversed(names):
            out[name].append(epoch(arms[name]))
        rounds += 1
    out = {name: epochs[1:] for name, epochs in out.items()}
    say(f"  pipeline {label}: {len(out[names[0]])} epochs each, step " + ", ".join(
        f"{median(e['step_seconds'] for e in out[name]) * 1000:.2f} ms {name}" for name in names))
    return out


def run(session) -> dict:
    rows, iterator_rows = [], []
    for case, dataset, extra, models, target in CASES:
        overrides, context = DATASETS[dataset]
        names = [n for n in session.model_names() if models is None or n in models]
        for name in names:
            loaded: list = []
            with context(session), batches_in_memory(loaded):
                trained = session.train(f"model={name}", *overrides(session), *extra, "epochs=1",
                                        *session.untracked(), "resume.enabled=false")
                real_train, memory_train = loaded[-1]
                model = trained.model
                fit = lambda data, **kw: lambda: model.fit(data, epochs=1, verbose=0, **kw)
                arms = {"real": fit(real_train, shuffle=False), "memory": fit(memory_train, shuffle=False)}
                if target is not None:  # what a Keras user writes: the same examples as NumPy arrays
                    arms["numpy"] = fit(numpy_fit_dataset(real_train), shuffle=False)
                epochs = alternate_epochs(session, arms, f"{case} {name}")
            measures = (("step_seconds", "steady-state step time"), ("step_cpu_seconds", "steady-state step CPU time"),
                        ("later_step_seconds", "step time after each epoch's first step"))
            references = (("numpy", "vs `fit(x, y, shuffle=True)`", target), ("memory", "vs batches in memory", None))
            for reference, label, row_target in references:
                if reference not in epochs:
                    continue
                for key, measure in measures:
                    if any(e[key] is None for arm in ("real", reference) for e in epochs[arm]):
                        continue  # one call per epoch: no step after the epoch's first call
                    rows.append(compare(f"{name}, {case}, {label}", measure, "s",
                                        [e[key] for e in epochs["real"]], [e[key] for e in epochs[reference]],
                                        target=row_target if key == "step_seconds" else None))
        with context(session):
            iterator_rows.append(compare(f"{case}, vs batches in memory", "creating a training iterator, CPU time", "s",
                                         iterator_cpu_seconds(real_train, ITERATORS),
                                         iterator_cpu_seconds(memory_train, ITERATORS)))
    notes = [
        "Default config and batch size (so the default `loop.steps_per_execution`), tracking off. `train(cfg)`"
        " trains each model for one epoch; then that model trains at least"
        f" {session.sizes.pipeline_epochs} epochs on each arm, and until each arm has had"
        f" {session.sizes.pipeline_seconds:g} s of training, in turn (real, NumPy, memory, memory, NumPy,"
        " real, ...), each epoch one `Model.fit` call, the first round left out; medians over the epochs,"
        f" pairs epoch by epoch. Mock CIFAR-10 has {session.sizes.cifar_examples} random examples per split.",
        "`vs fit(x, y, shuffle=True)` rows (the target): the reference is `model.fit(x, y, batch_size=B,"
        " shuffle=True)` on NumPy arrays holding the real split's examples (one pass of it, normalized as"
        " the pipeline serves them): what a Keras user writes instead of a tf.data pipeline, and like the"
        " real pipeline it makes a new batch of reshuffled examples every step. Both arms run with"
        " augmentation off (`" + " ".join(NO_AUGMENT) + "`).",
        "`vs batches in memory` rows have no target: the reference serves one pass of the real split's"
        " batches again each epoch from tensors in memory, so it never makes a new batch, which any"
        " pipeline that reshuffles examples every epoch must. The `flip+crop` rows keep `data=cifar10`'s"
        " augmentation against one augmented pass replayed from memory, so their ratio is what augmentation"
        " costs on this machine (mlp only, the model that hides it least).",
        "Step time: from the start of an epoch to the end of its last training step, over the steps; so it"
        " includes the epoch's new iterator and the wait for its first batch. Step time after each epoch's"
        " first step: the calls of the train function after the epoch's first, from their start to their"
        " end, over the steps they ran (gaps between calls, Keras's per-call Python, left out): what the"
        " input costs per step once the epoch runs.",
        "Creating a training iterator: `iter()` on the training split, as both loops do once per epoch."
        " TensorFlow instantiates (and Grappler-optimizes) every `map` function after the cache again for"
        " each new iterator, so the augmentation costs that once per epoch on top of its per-batch work:"
        " a fixed cost that shows on the tens-of-steps epochs here, not on full-size datasets. Here each"
        " epoch is its own `Model.fit` call, so the iterator is made as the epoch starts and counts in its"
        " step time in all arms; in a run the loops make it as the previous epoch's training ends.",
    ]
    return section("pipeline", "Input pipeline: real tf.data vs `fit(x, y, shuffle=True)` on NumPy arrays",
                   "real pipeline", "reference", rows + iterator_rows, notes)
