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


def _raise_terminated(signum, frame):
    raise Terminated(f"received signal {signal.Signals(signum).name}")


@contextlib.contextmanager
def sigterm_raises():
    """Within the block, SIGTERM raises `Terminated`; the previous handler comes back afterwards.

    Only the main thread can install handlers; elsewhere (a thread-pool launcher) the block runs
    unchanged.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
