"""Keep TensorFlow's start-up lines and MLflow's INFO notes off the console; warnings and errors show.

TensorFlow's C++ side writes its start-up notes to the process's stderr before its logging is
configured (so TF_CPP_MIN_LOG_LEVEL cannot hide them): the oneDNN note, the CUDA stub, CPU
features and, on a machine without a GPU, a `failed call to cuInit` error. None of them is about
the run. A user who sets TF_CPP_MIN_LOG_LEVEL gets TensorFlow's own behaviour, lines and all.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile

# Each start-up line by its source file and message, so a real warning or error from the same
# files (a different message) still shows.
START_UP = re.compile(
    r"All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|port\.cc:\d+\] oneDNN custom operations are on"
    r"|cudart_stub\.cc:\d+\] Could not find cuda drivers on your machine"
    r"|cpu_feature_guard\.cc:\d+\] This TensorFlow binary is optimized"
    r"|^To enable the following instructions: .* rebuild TensorFlow with the appropriate compiler flags"
    r"|cuda_platform\.cc:\d+\] failed call to cuInit"
    r"|cuda_executor\.cc:\d+\] failed call to cuInit"
)


def mlflow_defaults() -> None:
    """MLflow logs INFO notes of its own housekeeping (creating its tables, validating the input
    example) to the console; the run's own report says what matters. And MLflow 3 sends usage
    telemetry to its own servers from a background thread, where a run should talk to no server
    the user did not name. MLFLOW_LOGGING_LEVEL and MLFLOW_DISABLE_TELEMETRY set by the user win."""
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    # Its progress bars for artifact downloads too (python -m trainer.export reads a run's config).
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


@contextlib.contextmanager
def tensorflow_start_up_quiet():
    """Around TensorFlow's import and device probe: stderr (the file descriptor, which C++ writes
    to) goes to a temporary file, and on leaving every line that is not a start-up line is written
    to the console, in order. After start-up, TF_CPP_MIN_LOG_LEVEL=1 keeps TensorFlow's INFO lines
    quiet while its warnings and errors show."""
    if "TF_CPP_MIN_LOG_LEVEL" in os.environ:  # the user's choice wins
        yield
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "1"
    with stderr_without(START_UP):
        yield


# Notes of the LiteRT converter and interpreter on every export (trainer/use/export.py): options
# TensorFlow's own converter sets and then ignores, and the CPU delegate it always uses.
LITERT_NOTES = re.compile(
    r"tf_tfl_flatbuffer_helpers\.cc:\d+\] Ignored (output_format|drop_control_dependency)\."
    r"|^INFO: Created TensorFlow Lite XNNPACK delegate for CPU\."
)


@contextlib.contextmanager
def stderr_without(lines: re.Pattern):
    """stderr (the file descriptor, which C++ writes to) goes to a temporary file, and on leaving
    every line that `lines` does not match is written to the console, in order."""
    sys.stderr.flush()
    console = os.dup(2)
    try:
        with tempfile.TemporaryFile() as captured:
            os.dup2(captured.fileno(), 2)
            try:
                yield
            finally:
                sys.stderr.flush()
                os.dup2(console, 2)
                captured.seek(0)
                kept = [line for line in captured.read().decode(errors="replace").splitlines(keepends=True)
                        if not lines.search(line)]
                sys.stderr.write("".join(kept))
                sys.stderr.flush()
    finally:
        os.close(console)
