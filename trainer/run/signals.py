"""SIGTERM ends a run like Ctrl-C does: the run is recorded KILLED, not left RUNNING.

`kill <pid>`, a scheduler's preemption and `docker stop` all send SIGTERM; Python's default
would end the process at once, so the MLflow run would stay RUNNING forever.
"""

from __future__ import annotations

import contextlib
import signal
import threading


class Terminated(KeyboardInterrupt):
    """Raised in the main thread when the process receives SIGTERM."""


# Signals taken while a run trains. TensorFlow and Keras code can swallow the KeyboardInterrupt a
# handler raises, and the run then trains to its end (keras-team/keras#51 is the same story;
# docs/resume-and-faults.md says how often it happened). So each signal is also recorded here, and
# the training loop raises it again at the next batch end (trainer/loops/callbacks.py, RaiseLostSignal).
_received: list[KeyboardInterrupt] = []


def _raise_terminated(signum, frame):
    err = Terminated(f"received signal {signal.Signals(signum).name}")
    _received.append(err)
    raise err


def _raise_interrupted(signum, frame):
    err = KeyboardInterrupt()
    _received.append(err)
    raise err


def raise_if_received() -> None:
    """Raise again the first signal taken in the block, in case its exception was swallowed."""
    if _received:
        raise _received[0]


@contextlib.contextmanager
def signals_raise():
    """Within the block, SIGTERM raises `Terminated` and Ctrl-C `KeyboardInterrupt`, both recorded
    for `raise_if_received`; the previous handlers come back afterwards. A SIGINT handler someone
    else installed (a launcher) is left alone.

    Only the main thread can install handlers; elsewhere (a thread-pool launcher) the block runs
    unchanged.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _received.clear()
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    own_sigint = signal.getsignal(signal.SIGINT) is signal.default_int_handler
    if own_sigint:
        signal.signal(signal.SIGINT, _raise_interrupted)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        if own_sigint:
            signal.signal(signal.SIGINT, signal.default_int_handler)
        _received.clear()
