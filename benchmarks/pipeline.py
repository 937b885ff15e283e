"""pipeline: training step time with the real tf.data pipeline vs the same batches in memory.

For every registry model, on digits and on mock CIFAR-10 sized data (32x32x3, 10 classes, from
`tfds.testing.mock_data`), `train(cfg)` trains the model for one epoch and keeps the training
split it loaded and the same batches materialized as tensors (no reading, decoding, shuffling or
batching left to do). That one compiled model then trains for one epoch at a time on each, in
turn (real, memory, memory, real, ...), in this process: both arms share the process, the model
and its traced step, and adjacent epochs share the machine's load. Target: at most 1.05, with
augmentation off in both arms so that they train on the same kind of batches; `data=cifar10`'s
flip+crop is measured beside it with no target, and so is the real pipeline against in-memory batches
copied as they are served: the reference serves the same tensors every epoch, while any pipeline that
reshuffles examples must make a new batch every step.

Why not two processes: in lockstep (as `loops` runs) two processes training the same thing
differed by a few percent of their own, which three rings of new processes did not average out.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time

from benchmarks.results import compare, median, say, section

TARGET = 1.05
NO_AUGMENT = ("data.augment.flip=false", "data.augment.crop=0", "data.augment.translate=0.0")
ITERATORS = 20  # training iterators created per case to time `iter(dataset)`


def in_memory(dataset, copy: bool = False):
    """The batches of one pass over `dataset`, served from memory in the same order, two ahead;
    with `copy`, each batch is copied as it is served (a new tensor per step, as a pipeline that
    reshuffles examples every epoch must make).

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
    if copy:
        served = served.map(lambda *batch: tuple(tf.raw_ops.DeepCopy(x=part) for part in batch))
    options = tf.data.Options()
    options.autotune.enabled = False
    return served.prefetch(2).with_options(options)


@contextlib.contextmanager
def batches_in_memory(loaded: list | None = None, copy: bool = False):
    """While active, the framework's data loader hands out in-memory training batches (`in_memory`);
    the last (real, in-memory) pair of training datasets it made is kept in `loaded`."""
    from trainer.data import loading

    real = loading.load

    def load(**kwargs):
        data = real(**kwargs)
        served = dataclasses.replace(data, train=in_memory(data.train, copy))
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

# (case, dataset, overrides, models, target, copy): like with like under the target; then, on the
# tiny models where they show most (few models keep the benchmark to a few minutes), what per-batch
# augmentation adds, which the in-memory arm (one augmented pass, replayed) cannot show as equal,
# and the real pipeline against batches in memory that are copied as they are served (what is left
# once both arms make a new batch every step). models=None: every registry model.
CASES = (
    ("digits", "digits", NO_AUGMENT, None, TARGET, False),
    ("mock CIFAR-10", "mock CIFAR-10", NO_AUGMENT, None, TARGET, False),
    ("mock CIFAR-10, flip+crop", "mock CIFAR-10", (), ("mlp",), None, False),
    ("mock CIFAR-10, in-memory batches copied", "mock CIFAR-10", NO_AUGMENT, ("mlp", "conditional"), None, True),
)


def alternate_epochs(session, model, real, memory, label: str) -> tuple[list[dict], list[dict]]:
    """Epochs of `model` on each split, alternately (real, memory, memory, real, ...), as Model.fit
    runs them (a new iterator per epoch): at least `pipeline_epochs` each, and more until each arm
    has trained `pipeline_seconds`, so a model with 30 ms epochs gets as many samples of the
    machine's waves as one with 1 s epochs. The first pair is left out (the in-memory split's
    first iterator)."""
    from benchmarks import probe

    def epoch(dataset) -> dict:
        with session.quiet(), probe.clock() as clock:
            model.fit(dataset, epochs=1, verbose=0, shuffle=False)
        result = clock.epochs()[0]
        later = result["step_durations"][1:]
        result["later_step_seconds"] = sum(later) / len(later) if later else None
        return result

    sizes = session.sizes
    a, b = [], []
    while len(a) < sizes.pipeline_epochs or sum(e["train_seconds"] for e in a) < sizes.pipeline_seconds:
        if len(a) % 2 == 0:
            a.append(epoch(real))
            b.append(epoch(memory))
        else:
            b.append(epoch(memory))
            a.append(epoch(real))
    a, b = a[1:], b[1:]
    say(f"  pipeline {label}: {len(a)} epochs each, step {median(e['step_seconds'] for e in a) * 1000:.2f} ms"
        f" real, {median(e['step_seconds'] for e in b) * 1000:.2f} ms in memory")
    return a, b


def run(session) -> dict:
    rows, iterator_rows = [], []
    for case, dataset, extra, models, target, copy in CASES:
        overrides, context = DATASETS[dataset]
        names = [n for n in session.model_names() if models is None or n in models]
        if not names:
            continue
        for name in names:
            loaded: list = []
            with context(session), batches_in_memory(loaded, copy):
                trained = session.train(f"model={name}", *overrides(session), *extra, "epochs=1",
                                        *session.untracked(), "resume.enabled=false")
                real_train, memory_train = loaded[-1]
                a, b = alternate_epochs(session, trained.model, real_train, memory_train, f"{case} {name}")
            later = ("later_step_seconds", "step time after each epoch's first step", None)
            measures = (("step_seconds", "steady-state step time", target),
                        ("step_cpu_seconds", "steady-state step CPU time", None), later)
            if copy:  # per-step cost only: the copying `map` is instantiated anew each epoch, the real split has none
                measures = (later,)
            for key, measure, row_target in measures:
                rows.append(compare(f"{name}, {case}", measure, "s", [e[key] for e in a], [e[key] for e in b],
                                    target=row_target))
        if copy:  # the same real split as the case above
            continue
        with context(session):
            iterator_rows.append(compare(case, "creating a training iterator, CPU time", "s",
                                         iterator_cpu_seconds(real_train, ITERATORS),
                                         iterator_cpu_seconds(memory_train, ITERATORS)))
    notes = [
        "Default batch size, tracking off. `train(cfg)` trains each model for one epoch; then that model"
        f" trains at least {session.sizes.pipeline_epochs} epochs on each split, and until each split has"
        f" had {session.sizes.pipeline_seconds:g} s of training, alternately (real, memory, memory, real, ...)"
        " with `Model.fit`, the first of each left out; medians over the epochs, pairs epoch by epoch."
        f" Mock CIFAR-10 has {session.sizes.cifar_examples} random examples per split.",
        "Step time: from the start of an epoch to the end of its last training step, over the steps; so it"
        " includes the epoch's new iterator and the wait for its first batch. Step time after each epoch's"
        " first step: each step from its start to its end, the epoch's first step and the gaps between steps"
        " (Keras's per-step Python, the same in both arms) left out: what the pipeline costs per step.",
        "Rows with a target run both arms with augmentation off (`" + " ".join(NO_AUGMENT) + "`), so both"
        " train on the same batches. The `flip+crop` rows keep `data=cifar10`'s augmentation and have no"
        " target: the real pipeline augments every batch anew each epoch while the in-memory arm replays"
        " one augmented pass, so their ratio is what augmentation costs on this machine (shown for mlp only,"
        " the model that hides it least, to keep the benchmark short).",
        "The `in-memory batches copied` rows have no target either: their in-memory arm copies each batch as"
        " it serves it (`tf.raw_ops.DeepCopy` in a `map`), so every step gets a new batch tensor, as it must"
        " from a pipeline that reshuffles examples every epoch; their ratio is what the real pipeline costs"
        " beyond making that new batch. They show only the step time after each epoch's first step: the"
        " copying `map` is instantiated again with each epoch's iterator, which the real split has no need of.",
        "Creating a training iterator: `iter()` on the training split, as both loops do once per epoch."
        " TensorFlow instantiates (and Grappler-optimizes) every `map` function after the cache again for"
        " each new iterator, so the augmentation costs that once per epoch on top of its per-batch work:"
        " a fixed cost that shows on the tens-of-steps epochs here, not on full-size datasets. Here each"
        " epoch is its own `Model.fit` call, so the iterator is made as the epoch starts and counts in its"
        " step time in both arms; in a run the loops make it as the previous epoch's training ends.",
    ]
    return section("pipeline", "Input pipeline: real tf.data vs batches in memory", "real pipeline",
                   "in memory", rows + iterator_rows, notes)
