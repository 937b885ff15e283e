"""variants: the functional and the subclassed variant of every registry model, side by side.

Per model: training step time and final test accuracy on digits with the same seed (through
`train(cfg)`, tracking off), build time, `.keras` save and load time, file size and parameter
count. Nothing here has a target: the table is the answer to "functional or subclassed?".
"""

from __future__ import annotations

import os
import tempfile
import time

from benchmarks.results import alternate, compare, median, say, section


def _knobs(session, name: str) -> dict:
    """The model's default knobs as the framework hands them to the builder (plain values)."""
    from trainer.config.validate import validate

    return validate(session.compose(f"model={name}"))["model"]["knobs"]


def _build_save_load(name: str, variant: str, knobs: dict, folder: str) -> dict:
    """Build, save and load one model in a clean Keras session, timing each part."""
    import keras

    from models import net

    keras.backend.clear_session(free_memory=True)
    start = time.perf_counter()
    model = net.build(name, variant, input_shape=(8, 8, 1), num_classes=10, **knobs)
    built = time.perf_counter()
    path = os.path.join(folder, f"{name}-{variant}.keras")
    model.save(path)
    saved = time.perf_counter()
    keras.saving.load_model(path)
    loaded = time.perf_counter()
    return {"build": built - start, "save": saved - built, "load": loaded - saved,
            "bytes": os.path.getsize(path), "params": model.count_params()}


def _model_rows(session, name: str) -> list[dict]:
    s = session.sizes
    knobs = _knobs(session, name)
    with tempfile.TemporaryDirectory() as folder:
        _build_save_load(name, "functional", knobs, folder)  # first-use costs (imports, op registration)
        f, c = alternate(lambda i: _build_save_load(name, "functional", knobs, folder),
                         lambda i: _build_save_load(name, "subclassed", knobs, folder), s.repeats + 2)

    def training(variant):
        def go(i):
            r = session.train(f"model={name}", f"model.variant={variant}", f"epochs={s.accuracy_epochs}",
                              *session.untracked())
            say(f"  variants {name} {variant} {i + 1}: step {median(r.steady('step_seconds')) * 1000:.2f} ms,"
                f" test accuracy {r.metrics['test_accuracy']:.4f}")
            return r
        return go

    tf_runs, tc_runs = alternate(training("functional"), training("subclassed"), s.repeats)
    step = lambda runs: [median(r.steady("step_seconds")) for r in runs]
    accuracy = lambda runs: [r.metrics["test_accuracy"] for r in runs]
    return [
        compare(name, "training step time", "s", step(tc_runs), step(tf_runs)),
        compare(name, f"test accuracy after {s.accuracy_epochs} epochs", "accuracy", accuracy(tc_runs),
                accuracy(tf_runs)),
        compare(name, "build time", "s", [x["build"] for x in c], [x["build"] for x in f]),
        compare(name, "save time (.keras)", "s", [x["save"] for x in c], [x["save"] for x in f]),
        compare(name, "load time (.keras)", "s", [x["load"] for x in c], [x["load"] for x in f]),
        compare(name, ".keras file size", "bytes", [x["bytes"] for x in c], [x["bytes"] for x in f]),
        compare(name, "parameters", "count", [x["params"] for x in c], [x["params"] for x in f]),
    ]


def run(session) -> dict:
    rows = []
    for name in session.model_names():
        rows += _model_rows(session, name)
    notes = [
        f"Digits, default knobs, batch size and seed; training through `train(cfg)` with tracking off,"
        f" {session.sizes.repeats} runs per variant, alternately; step time excludes the first epoch.",
        "Build, save and load: one model in a fresh Keras session each time, input shape (8, 8, 1);"
        " load is `keras.saving.load_model` in safe mode.",
    ]
    return section("variants", "Functional vs subclassed", "subclassed", "functional", rows, notes)
