"""Time epochs and steps of any Keras training, in this process or in a `python -m` child.

Both loops drive their callbacks through `keras.callbacks.CallbackList`, so timestamps taken
around its methods time `fit`, the GradientTape loop and a plain Keras script the same way,
without adding a callback (which would change Keras's async batch dispatch) and without any
benchmark-only option in the framework.

In process:   with probe.clock() as clock: train(cfg)        -> clock.epochs()
As a wrapper: python -m benchmarks.probe OUT.json -- -m trainer epochs=3
              python -m benchmarks.probe OUT.json -- benchmarks/plain_keras.py --epochs 3
The wrapper writes the epochs, the wall-clock time of the first training step and of exit,
and whether TensorFlow was ever imported, to OUT.json. It imports no Keras itself: Keras is
patched the moment the target imports it, so start-up times are the target's own.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import importlib.abc
import importlib.util
import json
import os
import runpy
import sys
import time

_TARGET = "keras.src.callbacks.callback_list"


class Clock:
    """Events of the training loop: wall clock (`time.time()`, so a parent process can compare)
    and this process's CPU time (all threads), which a busy shared machine disturbs less."""

    def __init__(self):
        self.events: list[tuple[str, int, float, float]] = []
        self.first_step_begin: float | None = None
        self.first_step_end: float | None = None

    def record(self, kind: str, index: int) -> None:
        now, cpu = time.time(), time.process_time()
        if kind == "batch_begin" and self.first_step_begin is None:
            self.first_step_begin = now
        if kind == "batch_end" and self.first_step_end is None:
            self.first_step_end = now
        self.events.append((kind, int(index), now, cpu))

    def epochs(self) -> list[dict]:
        """One dict per epoch of the last training call: begin, end of its last training step,
        end (after every epoch-end callback), training steps and each step's duration (batch
        begin to batch end), and `seconds` = time since the previous epoch ended (since this one
        began, for the first); `cpu_seconds` and `train_cpu_seconds` are the same spans in CPU time."""
        out: list[dict] = []
        current, step_begin = None, 0.0
        for kind, index, t, cpu in self.events:
            if kind == "train_begin":
                out, current = [], None
            elif kind == "epoch_begin":
                current = {"epoch": index, "begin": t, "train_end": None, "end": None, "steps": 0,
                           "step_durations": [], "cpu_begin": cpu, "cpu_train_end": cpu}
            elif kind == "batch_begin":
                step_begin = t
            elif kind == "batch_end" and current is not None:
                current["train_end"], current["steps"], current["cpu_train_end"] = t, index + 1, cpu
                current["step_durations"].append(t - step_begin)
            elif kind == "epoch_end" and current is not None:
                current["end"], current["cpu_end"] = t, cpu
                previous = out[-1] if out else {"end": current["begin"], "cpu_end": current["cpu_begin"]}
                current["seconds"] = t - previous["end"]
                current["cpu_seconds"] = cpu - previous["cpu_end"]
                out.append(current)
                current = None
        for epoch in out:
            train_end = epoch["train_end"] or epoch["begin"]
            epoch["train_seconds"] = train_end - epoch["begin"]
            epoch["step_seconds"] = epoch["train_seconds"] / epoch["steps"] if epoch["steps"] else None
            epoch["train_cpu_seconds"] = epoch["cpu_train_end"] - epoch["cpu_begin"]
            epoch["step_cpu_seconds"] = epoch["train_cpu_seconds"] / epoch["steps"] if epoch["steps"] else None
        return out


_active: list[Clock] = []


def _timed(method, kind: str, after: bool):
    @functools.wraps(method)
    def wrapper(self, index=0, logs=None, *args, **kwargs):
        if not after:
            for c in _active:
                c.record(kind, index)
        result = method(self, index, logs, *args, **kwargs)
        if after:
            for c in _active:
                c.record(kind, index)
        return result

    wrapper.__benchmarks_probe__ = True
    return wrapper


def _timed_train_begin(method):
    @functools.wraps(method)
    def wrapper(self, logs=None, *args, **kwargs):
        for c in _active:
            c.record("train_begin", 0)
        return method(self, logs, *args, **kwargs)

    wrapper.__benchmarks_probe__ = True
    return wrapper


def _patch(module) -> None:
    cls = module.CallbackList
    if getattr(cls.on_epoch_end, "__benchmarks_probe__", False):
        return
    cls.on_train_begin = _timed_train_begin(cls.on_train_begin)
    cls.on_epoch_begin = _timed(cls.on_epoch_begin, "epoch_begin", after=False)
    cls.on_train_batch_begin = _timed(cls.on_train_batch_begin, "batch_begin", after=False)
    # After the original: the step (and, for epochs, every epoch-end callback such as MLflow
    # logging) is part of the time measured.
    cls.on_train_batch_end = _timed(cls.on_train_batch_end, "batch_end", after=True)
    cls.on_epoch_end = _timed(cls.on_epoch_end, "epoch_end", after=True)


class _PatchOnImport(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname != _TARGET:
            return None
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            sys.meta_path.insert(0, self)
        original = spec.loader.exec_module

        def exec_module(module):
            original(module)
            _patch(module)

        spec.loader.exec_module = exec_module
        return spec


def install() -> None:
    """Patch CallbackList now if Keras is loaded, else the moment it is imported."""
    if _TARGET in sys.modules:
        _patch(sys.modules[_TARGET])
    elif not any(isinstance(f, _PatchOnImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _PatchOnImport())


@contextlib.contextmanager
def clock():
    install()
    c = Clock()
    _active.append(c)
    try:
        yield c
    finally:
        _active.remove(c)


def _main(argv: list[str]) -> None:
    if len(argv) < 3 or argv[1] != "--":
        sys.exit("usage: python -m benchmarks.probe OUT.json -- (-m MODULE | SCRIPT) [ARGS...]")
    out_path, target = argv[0], argv[2:]
    c = Clock()
    _active.append(c)
    install()

    def dump():
        record = {
            "epochs": c.epochs(),
            "first_step_begin": c.first_step_begin,
            "first_step_end": c.first_step_end,
            "exit": time.time(),
            "tensorflow_imported": "tensorflow" in sys.modules,
        }
        with open(out_path, "w") as f:
            json.dump(record, f)

    # Registered first, so it runs last: after MLflow's and TensorFlow's own exit handlers.
    atexit.register(dump)
    if target[0] == "-m":
        sys.argv = [target[1], *target[2:]]
        runpy.run_module(target[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = list(target)
        sys.path.insert(0, os.path.dirname(os.path.abspath(target[0])))
        runpy.run_path(target[0], run_name="__main__")


if __name__ == "__main__":
    _main(sys.argv[1:])
