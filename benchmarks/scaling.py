"""scaling: what an epoch costs as the work grows, through `python -m trainer`.

Against the training-set size: `model=mlp` on 32x32x3 images in 10 classes (a CIFAR-10 shaped TFDS
dataset of random pixels, written once per session under the name cifar10, nothing downloaded),
every size its own process, with validation and test splits a tenth of its training set as
`data=cifar10`'s are. Targets: once the cache is warm (first epoch left out), the epoch time per
training example within 10% of the largest size's; and the memory the data adds to the process
within what the `data.cache=auto` rule budgets (trainer/data/pipeline.py: the float32 examples of
all splits cached in memory when they take at most a quarter of RAM, so a process that holds more
than 1/share bytes per cached byte could run out of memory at the rule's limit).

Against the model's size: `dynamic` widths and `cnn` filters at one training-set size, the
training time per example beside what linear scaling in FLOPs (benchmarks/flops.py) from the
largest model of its kind predicts; the issue sets no target there.

The processes of a sweep run in lockstep (one epoch each in turn, see docs/performance.md),
so the machine's waves fall on every size alike; each reports its own peak resident memory.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow_datasets as tfds
from tensorflow_datasets.core.dataset_builders import adhoc_builder

from benchmarks import flops
from benchmarks.results import compare, median, say, section, value
from models import net
from trainer.config.validate import validate
from trainer.data import pipeline

BAND = 0.10             # per-example epoch time within 1 ± this of the largest size's
HELD_OUT_SHARE = 10     # validation and test splits: 1/10 of the training set each, as data=cifar10 carves
NO_AUGMENT = ("data.augment.flip=false", "data.augment.crop=0")  # per-example work the same at every size
FIGURE = "scaling.png"
# Processes in one lockstep ring at most: the first waits for all the others to start and train an
# epoch, which with many on a busy 2-core machine outlasts the probe's wait for its turn. Both
# sweeps share a ring when they fit in one; otherwise each has its own.
MAX_RING = 4


def held_out(examples: int) -> int:
    return max(1, examples // HELD_OUT_SHARE)


def write_dataset(session, examples: int):
    """A TFDS dataset named cifar10 (CIFAR-10's own features) with `examples` random training
    images and a tenth as many validation and test images; returns its data dir."""
    data_dir = session.workdir / "scaling_cifar10"
    info = tfds.builder("cifar10", data_dir=str(data_dir)).info  # metadata from the builder's code
    rng = np.random.default_rng(0)

    def split(n: int, first_id: int):
        images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
        labels = rng.integers(0, 10, n)
        return [(i, {"image": images[i], "label": int(labels[i]), "id": f"{first_id + i}"}) for i in range(n)]

    tfds.disable_progress_bar()
    with session.quiet():
        adhoc_builder.store_as_tfds_dataset(
            name="cifar10", version=str(info.version), features=info.features, data_dir=str(data_dir),
            split_datasets={"train": split(examples, 0), "validation": split(held_out(examples), examples),
                            "test": split(held_out(examples), 2 * examples)},
            description="random 32x32x3 images for python -m benchmarks", disable_shuffling=True)
    return data_dir


def command(data_dir, examples: int, epochs: int, *model: str) -> list[str]:
    """`python -m trainer` on the first `examples` training images (and a tenth as many to
    validate and test on), no augmentation, tracking and resume checkpoints off (neither is the
    subject here, and the checkpoint comes every 10 s, not every so many examples)."""
    return ["-m", "trainer", *model, "data=cifar10", f"data.data_dir={data_dir}", "data.download=false",
            f"data.train_split='train[:{examples}]'", f"data.validation_split='validation[:{held_out(examples)}]'",
            f"data.test_split='test[:{held_out(examples)}]'", *NO_AUGMENT, f"epochs={epochs}",
            "tracking.enabled=false", "resume.enabled=false"]


def cached_bytes(examples: int) -> tuple[bool, int]:
    """What the `data.cache=auto` rule decides for a run on `examples` training images (and its
    held-out splits), and the bytes it counts for them."""
    total = examples + 2 * held_out(examples)
    size = total * 32 * 32 * 3 * pipeline._CACHED_BYTES_PER_VALUE
    return pipeline.should_cache("auto", examples=total, input_shape=(32, 32, 3)), size


def per_example(runs, key: str, examples: int) -> list[float]:
    """Every steady epoch's `key` over the training examples, ring after ring (so the i-th samples
    of two arms come from the same ring and epoch)."""
    return [seconds / examples for run in runs for seconds in run.steady(key)]


def data_arms(session, data_dir) -> list[list[str]]:
    return [command(data_dir, n, session.sizes.epochs, "model=mlp") for n in session.sizes.scaling_examples]


def data_rows(session, runs) -> tuple[list[dict], dict]:
    sizes = session.sizes.scaling_examples
    share = pipeline._AUTO_CACHE_SHARE
    ref = sizes[-1]
    epoch = {n: per_example(r, "span_seconds", n) for n, r in zip(sizes, runs)}
    cpu = {n: per_example(r, "span_cpu_seconds", n) for n, r in zip(sizes, runs)}
    peak = {n: [run.peak_rss_bytes for run in r] for n, r in zip(sizes, runs)}
    cache = {n: cached_bytes(n) for n in sizes}
    # What the process holds without the data: the smallest size's peak less its (small) cache.
    base = [p - cache[sizes[0]][1] for p in peak[sizes[0]]]
    adds = {n: [p - b for p, b in zip(peak[n], base)] for n in sizes}
    rows = []
    for n in sizes:
        cached, nbytes = cache[n]
        case = f"mlp, {n:,} examples ({'cached in memory' if cached else 'not cached'}: {nbytes / 2**20:,.0f} MiB)"
        if n == ref:
            rows.append(value(case, "steady-state epoch time per example", "s/example", epoch[n]))
            rows.append(value(case, "steady-state epoch CPU time per example", "s/example", cpu[n]))
        else:
            rows.append(compare(case, "steady-state epoch time per example", "s/example", epoch[n], epoch[ref],
                                target=BAND, kind="band"))
            rows.append(compare(case, "steady-state epoch CPU time per example", "s/example", cpu[n], cpu[ref]))
        rows.append(value(case, "peak resident memory", "memory", peak[n]))
        if n != sizes[0]:
            rows.append(compare(case, "memory the data adds vs bytes cached", "memory", adds[n],
                                [nbytes] * len(adds[n]), target=1 / share))
    plot = {"sizes": list(sizes), "epoch": [median(epoch[n]) for n in sizes], "band": median(epoch[ref]),
            "cpu": [median(cpu[n]) for n in sizes],
            "peak": [median(peak[n]) for n in sizes], "base": median(base),
            "cache": [cache[n][1] for n in sizes]}
    say("  scaling data: " + ", ".join(f"{n}: {median(epoch[n]) * 1e6:.1f} us/example, peak"
                                       f" {median(peak[n]) / 2**20:.0f} MiB" for n in sizes))
    return rows, plot


def model_facts(session, overrides: str) -> tuple[str, int, int]:
    """(model name, parameters, training FLOPs per example) of the model `overrides` select."""
    model = validate(session.compose(*overrides.split()))["model"]
    built = net.build(model["name"], "functional", input_shape=(32, 32, 3), num_classes=10, **model["knobs"])
    facts = model["name"], built.count_params(), flops.training_flops_per_example(built)
    del built
    keras.backend.clear_session()
    return facts


def model_arms(session, data_dir) -> list[list[str]]:
    s = session.sizes
    return [command(data_dir, s.scaling_model_examples, s.epochs, *m.split()) for m in s.scaling_models]


def model_rows(session, runs) -> tuple[list[dict], dict]:
    examples, models = session.sizes.scaling_model_examples, session.sizes.scaling_models
    facts = [model_facts(session, m) for m in models]
    train = [per_example(r, "train_seconds", examples) for r in runs]
    rows, plot = [], {"models": [], "flops": [], "train": [], "predicted": []}
    for overrides, (name, params, count), samples in zip(models, facts, train):
        # Linear in FLOPs from the largest model of the same kind: its time per FLOP, times these FLOPs.
        largest = max((i for i, f in enumerate(facts) if f[0] == name), key=lambda i: facts[i][2])
        predicted = median(train[largest]) / facts[largest][2] * count
        case = f"{overrides.removeprefix('model=')} ({params:,} parameters, {count / 1e6:.2f} MFLOP per example)"
        rows.append(compare(case, "steady-state training time per example", "s/example", samples,
                            [predicted] * len(samples)))
        plot["models"].append(overrides.removeprefix("model="))
        plot["flops"].append(count)
        plot["train"].append(median(samples))
        plot["predicted"].append(predicted)
    say("  scaling models: " + ", ".join(f"{m}: {t * 1e6:.1f} us/example" for m, t in zip(plot["models"], plot["train"])))
    return rows, plot


def figure(path, data: dict, models: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, (cost, memory, size) = plt.subplots(1, 3, figsize=(15, 4.2))
    sizes = data["sizes"]
    cost.axhspan(data["band"] * (1 - BAND) * 1e6, data["band"] * (1 + BAND) * 1e6, color="tab:green", alpha=0.2,
                 label=f"target: ±{BAND:.0%} of the {sizes[-1]:,}-example size's")
    cost.plot(sizes, [e * 1e6 for e in data["epoch"]], "o-", label="mlp, steady epoch (wall)")
    cost.plot(sizes, [e * 1e6 for e in data["cpu"]], "s--", label="mlp, steady epoch (CPU time)")
    cost.set(xscale="log", xlabel="training examples", ylabel="epoch time per example (µs)", ylim=(0, None),
             title="Epoch time per example")
    cost.legend(fontsize=8, loc="lower right")
    memory.plot(sizes, [p / 2**20 for p in data["peak"]], "o-", label="peak resident memory")
    memory.plot(sizes, [(data["base"] + c) / 2**20 for c in data["cache"]], "--",
                label="without data + bytes cached (data.cache=auto)")
    memory.set(xscale="log", xlabel="training examples", ylabel="MiB", title="Peak memory")
    memory.legend(fontsize=8)
    kinds = sorted({m.split()[0] for m in models["models"]})
    for kind in kinds:
        idx = [i for i, m in enumerate(models["models"]) if m.split()[0] == kind]
        line, = size.plot([models["flops"][i] / 1e6 for i in idx], [models["train"][i] * 1e6 for i in idx], "o-",
                          label=f"{kind}, measured")
        size.plot([models["flops"][i] / 1e6 for i in idx], [models["predicted"][i] * 1e6 for i in idx], "--",
                  color=line.get_color(), label=f"{kind}, linear in FLOPs")
        for i in idx:
            size.annotate(models["models"][i].split()[1], (models["flops"][i] / 1e6, models["train"][i] * 1e6),
                          fontsize=7, textcoords="offset points", xytext=(4, -8))
    size.set(xscale="log", yscale="log", xlabel="training MFLOP per example",
             ylabel="training time per example (µs)", title="Model size")
    size.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(session) -> dict:
    s = session.sizes
    data_dir = write_dataset(session, max(max(s.scaling_examples), s.scaling_model_examples))
    sizes, models = data_arms(session, data_dir), model_arms(session, data_dir)
    if len(sizes) + len(models) <= MAX_RING:  # one ring: the processes start once, together
        runs = session.lockstep_rings(sizes + models, s.repeats, "scaling")
        size_runs, model_runs = runs[:len(sizes)], runs[len(sizes):]
    else:
        size_runs = session.lockstep_rings(sizes, s.repeats, "scaling data")
        model_runs = session.lockstep_rings(models, s.repeats, "scaling models")
    by_size, by_model = data_rows(session, size_runs), model_rows(session, model_runs)
    path = session.out / FIGURE
    figure(path, by_size[1], by_model[1])
    rings = f"{s.repeats} ring{'s' if s.repeats > 1 else ''}"
    notes = [
        f"`python -m trainer model=mlp data=cifar10 {' '.join(NO_AUGMENT)} epochs={s.epochs}"
        " tracking.enabled=false resume.enabled=false` on the first N images of a CIFAR-10 shaped dataset of"
        f" random pixels, validating and testing on N/{HELD_OUT_SHARE} each; the sizes' processes in lockstep,"
        f" {rings}; per example: each steady epoch (the first, which reads and caches the data, left"
        " out) over N, from its start to the moment the process is idle after its validation and callbacks.",
        f"Epoch time per example: the ratio is to the {s.scaling_examples[-1]:,}-example size's, target"
        f" {1 - BAND:g}–{1 + BAND:g}.",
        "Memory the data adds: a process's peak resident memory less that of the smallest size's process of the"
        " same ring (plus the smallest size's own cache); beside it the bytes `data.cache=auto` counts for the"
        f" run (float32 images of all three splits), cached in memory when they are at most"
        f" {pipeline._AUTO_CACHE_SHARE:g} of RAM ({pipeline.memory_bytes() / 2**30:.1f} GiB here). Target: at most"
        f" {1 / pipeline._AUTO_CACHE_SHARE:g} bytes per byte cached, so that a dataset at the rule's limit still"
        " fits in RAM.",
        f"Model size rows: the same command with the model's overrides, {s.scaling_model_examples:,} training"
        f" images, {rings} of the models in lockstep; training time per example: each steady epoch's"
        " time from its start to the end of its last training step, over N. B is what linear scaling in FLOPs"
        " (forward + backward of the Dense and Conv2D layers, counted analytically) predicts from the largest"
        " model of the same kind; no target.",
        f"Plotted in [{FIGURE}]({FIGURE}).",
    ]
    result = section("scaling", "Cost as work grows: training-set and model size", "measured", "reference",
                     by_size[0] + by_model[0], notes)
    result["figures"] = [str(path)]
    return result
