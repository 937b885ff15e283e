"""Time epochs and steps of any Keras training, in this process or in a `python -m` child.

Both loops drive their callbacks through `keras.callbacks.CallbackList`, so timestamps taken
around its methods time `fit`, the GradientTape loop and a plain Keras script the same way,
without adding a callback (which would change Keras's async batch dispatch) and without any
benchmark-only option in the framework.

In process:   with probe.clock() as clock: train(cfg)        -> clock.epochs()
As a wrapper: python -m benchmarks.probe OUT.json -- -m trainer epochs=3
              python -m benchmarks.probe OUT.json -- benchmarks/plain_keras.py --epochs 3
The wrapper writes the epochs, the wall-clock time of the first training step and of exit,
whether TensorFlow was ever imported, and the process's peak resident memory to OUT.json. It imports no Keras itself: Keras is
patched the moment the target imports it, so start-up times are the target's own.

Lockstep (BENCHMARKS_LOCKSTEP="<fifo to wait on>:<fifo to pass to>", set by Session.lockstep):
several wrapped processes train one epoch at a time in turn, A B C A B C ..., so a neighbour's
load, which on a shared machine comes in waves of seconds, falls on all of them alike. A process
passes the turn only once it is idle (its background threads, such as a checkpoint writer or a
metrics sender, have finished), so that work is counted in its own epoch; and after its last epoch
it waits for one more turn, so its test evaluation never overlaps another's epoch.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import importlib.abc
import importlib.util
import json
import os
import resource
import runpy
import select
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
        self.model = None  # the model the last training call trained, for benchmarks that reuse it

    def record(self, kind: str, index: int, now: float | None = None, cpu: float | None = None) -> None:
        if now is None:
            now, cpu = time.time(), time.process_time()
        if kind == "batch_begin" and self.first_step_begin is None:
            self.first_step_begin = now
        if kind == "batch_end" and self.first_step_end is None:
            self.first_step_end = now
        self.events.append((kind, int(index), now, cpu))

    def epochs(self) -> list[dict]:
        """One dict per epoch of the last training call: begin, end of its last training step,
        end (after every epoch-end callback), training steps and each call's duration (batch
        begin to batch end) and steps (`steps_per_call`: more than one with steps_per_execution), and `seconds` = time since the previous epoch ended (since this one
        began, for the first); `cpu_seconds` and `train_cpu_seconds` are the same spans in CPU time.
        `span_seconds`/`span_cpu_seconds`: from this epoch's begin to its end (in lockstep, the
        process's own turn, without the wait for it)."""
        out: list[dict] = []
        current, step_begin, first_index = None, 0.0, 0
        for kind, index, t, cpu in self.events:
            if kind == "train_begin":
                out, current = [], None
            elif kind == "epoch_begin":
                current = {"epoch": index, "begin": t, "train_end": None, "end": None, "steps": 0,
                           "step_durations": [], "steps_per_call": [], "cpu_begin": cpu, "cpu_train_end": cpu}
            elif kind == "batch_begin":
                step_begin, first_index = t, index
            elif kind == "batch_end" and current is not None:
                current["train_end"], current["steps"], current["cpu_train_end"] = t, index + 1, cpu
                current["step_durations"].append(t - step_begin)
                current["steps_per_call"].append(index - first_index + 1)
            elif kind == "epoch_end" and current is not None:
                current["end"], current["cpu_end"] = t, cpu
                previous = out[-1] if out else {"end": current["begin"], "cpu_end": current["cpu_begin"]}
                current["seconds"] = t - previous["end"]
                current["cpu_seconds"] = cpu - previous["cpu_end"]
                out.append(current)
                current = None
        for epoch in out:
            train_end = epoch["train_end"] or epoch["begin"]
            epoch["span_seconds"] = epoch["end"] - epoch["begin"]
            epoch["span_cpu_seconds"] = epoch["cpu_end"] - epoch["cpu_begin"]
            epoch["train_seconds"] = train_end - epoch["begin"]
            epoch["step_seconds"] = epoch["train_seconds"] / epoch["steps"] if epoch["steps"] else None
            epoch["train_cpu_seconds"] = epoch["cpu_train_end"] - epoch["cpu_begin"]
            epoch["step_cpu_seconds"] = epoch["train_cpu_seconds"] / epoch["steps"] if epoch["steps"] else None
        return out


_active: list[Clock] = []
LOCKSTEP = "BENCHMARKS_LOCKSTEP"


class Baton:
    """This process's place in a lockstep ring (see the module docstring)."""

    TIMEOUT_S = 180  # longer than any turn or start-up; after it (a ring member died) run free

    def __init__(self, spec: str):
        wait_path, pass_path = spec.split(":")
        # O_RDWR: opening a FIFO this way never blocks, and a read never sees end-of-file.
        self._wait, self._pass = os.open(wait_path, os.O_RDWR), os.open(pass_path, os.O_RDWR)
        self.broken = False

    def take(self) -> None:
        if not self.broken and select.select([self._wait], [], [], self.TIMEOUT_S)[0]:
            os.read(self._wait, 1)
        else:
            self.broken = True

    def give(self) -> None:
        if not self.broken:
            os.write(self._pass, b".")

    @staticmethod
    def settle(window: float = 0.001, idle_cpu: float = 0.0002, longest: float = 0.5) -> tuple[float, float]:
        """Wait until the whole process has used almost no CPU for one `window`; returns the wall
        and CPU time at which it went idle."""
        deadline = time.time() + longest
        while True:
            now, cpu = time.time(), time.process_time()
            time.sleep(window)
            if time.process_time() - cpu < idle_cpu or now > deadline:
                return now, cpu


_baton: Baton | None = None


def _timed(method, kind: str, after: bool):
    @functools.wraps(method)
    def wrapper(self, index=0, logs=None, *args, **kwargs):
        if not after:
            for c in _active:
                c.record(kind, index)
        result = method(self, index, logs, *args, **kwargs)
        if after:
            # With several steps per call, fit passes a short last call's end as if the call were
            # full (one past the epoch's last step); the epoch's step count comes from this index.
            steps = (getattr(self, "params", None) or {}).get("steps")
            for c in _active:
                c.record(kind, min(index, steps - 1) if steps else index)
        return result

    wrapper.__benchmarks_probe__ = True
    return wrapper


def _lockstep_epoch_begin(method):
    @functools.wraps(method)
    def wrapper(self, index=0, logs=None, *args, **kwargs):
        if _baton is not None:
            _baton.take()
        for c in _active:
            c.record("epoch_begin", index)
        return method(self, index, logs, *args, **kwargs)

    wrapper.__benchmarks_probe__ = True
    return wrapper


def _lockstep_epoch_end(method):
    @functools.wraps(method)
    def wrapper(self, index=0, logs=None, *args, **kwargs):
        result = method(self, index, logs, *args, **kwargs)
        now, cpu = Baton.settle() if _baton is not None else (None, None)
        for c in _active:
            c.record("epoch_end", index, now, cpu)
        if _baton is not None:
            _baton.give()
        return result

    wrapper.__benchmarks_probe__ = True
    return wrapper


def _lockstep_train_end(method):
    @functools.wraps(method)
    def wrapper(self, logs=None, *args, **kwargs):
        if _baton is not None:  # one more turn: every other process has finished its epochs
            _baton.take()
            _baton.give()
        return method(self, logs, *args, **kwargs)

    wrapper.__benchmarks_probe__ = True
    return wrapper


def _timed_train_begin(method):
    @functools.wraps(method)
    def wrapper(self, logs=None, *args, **kwargs):
        for c in _active:
            c.record("train_begin", 0)
            c.model = self.model
        return method(self, logs, *args, **kwargs)

    wrapper.__benchmarks_probe__ = True
    return wrapper


def _patch(module) -> None:
    cls = module.CallbackList
    if getattr(cls.on_epoch_end, "__benchmarks_probe__", False):
        return
    cls.on_train_begin = _timed_train_begin(cls.on_train_begin)
    cls.on_epoch_begin = _lockstep_epoch_begin(cls.on_epoch_begin)
    cls.on_train_batch_begin = _timed(cls.on_train_batch_begin, "batch_begin", after=False)
    # After the original: the step (and, for epochs, every epoch-end callback such as MLflow
    # logging) is part of the time measured.
    cls.on_train_batch_end = _timed(cls.on_train_batch_end, "batch_end", after=True)
    cls.on_epoch_end = _lockstep_epoch_end(cls.on_epoch_end)
    cls.on_train_end = _lockstep_train_end(cls.on_train_end)


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
    global _baton
    if os.environ.get(LOCKSTEP):
        _baton = Baton(os.environ.pop(LOCKSTEP))  # popped: the target's own children stay out of the ring
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
            "lockstep_broken": _baton.broken if _baton is not None else None,
            # Linux reports ru_maxrss in KiB; this process is the target (runpy), so it is the target's peak.
            "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
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
