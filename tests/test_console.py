"""The console a user reads: TensorFlow's start-up lines and MLflow's INFO notes stay off it, real
warnings and errors still show, and TF_CPP_MIN_LOG_LEVEL set by the user restores TensorFlow's own
behaviour."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import tracking_uri
from trainer.run import console

# What TensorFlow 2.21 writes to stderr on start-up on a CPU machine, as it writes it.
START_UP_LINES = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1796392599.061344   30692 port.cc:153] oneDNN custom operations are on. You may see slightly"
    " different numerical results due to floating-point round-off errors from different computation orders.",
    "I0000 00:00:1796392599.070074   30692 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will"
    " not be used.",
    "I0000 00:00:1796392599.217965   30692 cpu_feature_guard.cc:227] This TensorFlow binary is optimized to use"
    " available CPU instructions in performance-critical operations.",
    "To enable the following instructions: AVX2 AVX512F FMA, in other operations, rebuild TensorFlow with the"
    " appropriate compiler flags.",
    "E0000 00:00:1796392608.568481   30692 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: Failed"
    " call to cuInit: UNKNOWN ERROR (303)",
]
REAL_LINES = [
    "W0000 00:00:1796392608.568481   30692 port.cc:99] a real warning from a start-up file",
    "E0000 00:00:1796392608.568481   30692 op_kernel.cc:1] a real error",
]
MARKERS = ("absl::InitializeLog", "oneDNN custom operations", "cudart_stub", "cpu_feature_guard", "cuInit")


def _write_from_cpp_and_python():
    for line in START_UP_LINES[:3] + REAL_LINES[:1] + START_UP_LINES[3:] + REAL_LINES[1:]:
        os.write(2, (line + "\n").encode())  # as C++ writes: to the file descriptor, past sys.stderr
    print("a Python warning", file=sys.stderr)


def test_start_up_lines_are_dropped_and_everything_else_shows_in_order(capfd, monkeypatch):
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    with console.tensorflow_start_up_quiet():
        _write_from_cpp_and_python()
    err = capfd.readouterr().err.splitlines()
    # (Under capfd, Python's sys.stderr writes past file descriptor 2, so its line is not in order.)
    assert [line for line in err if line != "a Python warning"] == REAL_LINES and "a Python warning" in err
    # After start-up, TensorFlow's INFO lines stay quiet and its warnings and errors show.
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "1"


def test_an_error_inside_still_shows_what_was_written(capfd, monkeypatch):
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    with pytest.raises(ImportError):
        with console.tensorflow_start_up_quiet():
            os.write(2, b"E0000 something went wrong loading a library\n")
            raise ImportError("no such library")
    assert capfd.readouterr().err == "E0000 something went wrong loading a library\n"


def test_the_users_tf_cpp_min_log_level_wins(capfd, monkeypatch):
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")
    with console.tensorflow_start_up_quiet():
        _write_from_cpp_and_python()
    err = capfd.readouterr().err.splitlines()
    assert all(line in err for line in START_UP_LINES + REAL_LINES)
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0"


def _train(tmp_path, tfds_dir, **env) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "MLFLOW_LOGGING_LEVEL")}
    return subprocess.run(
        [sys.executable, "-m", "trainer", "epochs=1", "callbacks.progress=none", f"data.data_dir={tfds_dir}"],
        cwd=tmp_path, env={**base, "TRAINER_ROOT": str(tmp_path), **env}, capture_output=True, text=True, timeout=600)


def test_a_first_run_prints_no_tensorflow_start_up_line_and_no_mlflow_note(tmp_path, tfds_dir):
    done = _train(tmp_path, tfds_dir)  # a new store: MLflow would announce creating its tables
    assert done.returncode == 0, done.stderr[-3000:]
    assert "finished" in done.stdout
    assert not [line for line in done.stderr.splitlines() if any(m in line for m in MARKERS)], done.stderr
    assert "INFO mlflow" not in done.stderr, done.stderr
    # The report ends with where the run's experiment opens on the UI's "Model training" view.
    client = MlflowClient(tracking_uri(tmp_path))
    experiment = client.get_experiment_by_name("trainer").experiment_id
    review = done.stdout[done.stdout.index("review:"):].split()
    assert review[1:4] == ["mlflow", "ui", "--backend-store-uri"] and review[-2] == "open"
    assert review[-1] == f"http://127.0.0.1:5000/#/experiments/{experiment}/runs?workflowType=machine_learning"


def test_the_documented_switch_shows_tensorflows_lines_again(tmp_path, tfds_dir):
    done = _train(tmp_path, tfds_dir, TF_CPP_MIN_LOG_LEVEL="0")
    assert done.returncode == 0, done.stderr[-3000:]
    assert any(m in done.stderr for m in MARKERS), done.stderr


def test_mlflow_sends_no_telemetry_and_logs_no_info_unless_the_user_asks(monkeypatch):
    for name in ("MLFLOW_LOGGING_LEVEL", "MLFLOW_DISABLE_TELEMETRY"):
        monkeypatch.delenv(name, raising=False)
    console.mlflow_defaults()
    assert (os.environ["MLFLOW_LOGGING_LEVEL"], os.environ["MLFLOW_DISABLE_TELEMETRY"]) == ("WARNING", "true")
    from mlflow.telemetry.utils import is_telemetry_disabled

    assert is_telemetry_disabled()
    monkeypatch.setenv("MLFLOW_LOGGING_LEVEL", "INFO")
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "false")
    console.mlflow_defaults()
    assert (os.environ["MLFLOW_LOGGING_LEVEL"], os.environ["MLFLOW_DISABLE_TELEMETRY"]) == ("INFO", "false")
