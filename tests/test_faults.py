"""Faults with real signals and real filesystems, on real CLI subprocesses.

- SIGTERM and Ctrl-C (SIGINT) end the run KILLED with the epochs so far logged and the resume
  checkpoint on disk; the same command then resumes the same run to FINISHED.
- SIGKILL leaves the run RUNNING and the checkpoint behind; the next run in the experiment marks
  it FAILED (its process is gone), and the same command still resumes it to FINISHED.
- A full disk is a real 64 KiB tmpfs mounted as the artifact store (root only); a read-only
  mount is the unwritable artifact location (root ignores permission bits, not a read-only mount).
- An unreachable tracking server fails in one line within seconds.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import tracking_uri

# Small epochs, many of them: on a quiet machine an epoch takes ~0.1 s, so with only a few the
# run could finish before the signal sent after epoch 2 arrives; 40 leave seconds of margin.
EPOCHS = 40
KILLED_RUN = ["model=mlp", "width=16", f"epochs={EPOCHS}", "batch_size=16", "callbacks.progress=epoch",
              "resume.every_seconds=0"]


class Training:
    """`python -m trainer ...` in the background, its output collected line by line."""

    def __init__(self, root: Path, tfds_dir: str, *args: str):
        env = {**os.environ, "TRAINER_ROOT": str(root), "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen([sys.executable, "-m", "trainer", *args, f"data.data_dir={tfds_dir}"], cwd=root,
                                     env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        threading.Thread(target=lambda: self.lines.extend(self.proc.stdout), daemon=True).start()

    def wait_for_epochs(self, n: int, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while sum("val_loss" in line for line in list(self.lines)) < n:
            assert self.proc.poll() is None, "".join(self.lines)[-3000:]
            assert time.monotonic() < deadline, "".join(self.lines)[-3000:]
            time.sleep(0.05)

    def stop(self, sig: int, timeout: float = 120) -> int:
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=timeout)
        time.sleep(0.2)  # let the reader thread take the last lines
        return code

    @property
    def output(self) -> str:
        return "".join(self.lines)


def _only_run(root):
    client = MlflowClient(tracking_uri(root))
    (run,) = client.search_runs([client.get_experiment_by_name("trainer").experiment_id])
    return client, run


def _checkpoint(root) -> Path:
    (folder,) = (Path(root) / "outputs" / "checkpoints").iterdir()
    return folder


def _epochs_logged(client, run_id) -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run_id, "val_loss"))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_ends_run_killed_with_metrics_and_a_checkpoint_the_same_command_resumes(cli, tmp_path, tfds_dir, sig):
    training = Training(tmp_path, tfds_dir, *KILLED_RUN)
    training.wait_for_epochs(2)
    code = training.stop(sig)
    assert code != 0, training.output[-3000:]
    assert "Traceback" not in training.output, training.output[-3000:]

    client, run = _only_run(tmp_path)
    assert run.info.status == "KILLED"
    logged = _epochs_logged(client, run.info.run_id)
    assert logged[:2] == [0, 1], logged  # every epoch finished before the signal is kept
    folder = _checkpoint(tmp_path)
    assert json.loads((folder / "run.json").read_text())["run_id"] == run.info.run_id
    assert (folder / "state.ckpt").is_file(), "no checkpoint file"

    if sig == signal.SIGINT:  # resuming is the same code path for both; once is enough
        return
    result = cli(*KILLED_RUN)
    assert result.returncode == 0, result.stderr[-3000:]
    client, resumed = _only_run(tmp_path)
    assert resumed.info.run_id == run.info.run_id and resumed.info.status == "FINISHED"
    assert sorted(set(_epochs_logged(client, run.info.run_id))) == list(range(EPOCHS))
    assert not (tmp_path / "outputs" / "checkpoints" / folder.name).exists()  # finished: nothing to resume


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_whose_exception_was_swallowed_still_ends_the_run_killed(make_cfg, tmp_path, monkeypatch, sig):
    # TensorFlow or Keras code can swallow the KeyboardInterrupt a signal raises (1 in 25 Ctrl-Cs
    # sent to `python -m trainer` during training were lost): here a callback swallows it.
    import keras

    from trainer import callbacks as callbacks_lib
    from trainer.train import train

    class Swallow(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 2:
                try:
                    os.kill(os.getpid(), sig)
                    time.sleep(5)  # the handler raises in here, and the exception goes no further
                except KeyboardInterrupt:
                    pass

    real_build = callbacks_lib.build
    monkeypatch.setattr(callbacks_lib, "build", lambda *a, **k: [Swallow(), *real_build(*a, **k)])
    with pytest.raises(KeyboardInterrupt):
        train(make_cfg("model=mlp", "width=8", "epochs=3"))
    client = MlflowClient(tracking_uri(tmp_path))
    (run,) = client.search_runs([client.get_experiment_by_name("trainer").experiment_id])
    assert run.info.status == "KILLED"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "loss")] == []  # stopped in epoch 1


def test_sigkill_leaves_a_checkpoint_the_next_run_fails_the_stale_run_the_same_command_resumes_it(
        cli, tmp_path, tfds_dir):
    training = Training(tmp_path, tfds_dir, *KILLED_RUN, "seed=3")
    training.wait_for_epochs(2)
    training.stop(signal.SIGKILL)

    client, stale = _only_run(tmp_path)
    assert stale.info.status == "RUNNING"  # nothing can run after SIGKILL
    assert (_checkpoint(tmp_path) / "run.json").exists()

    # Any next run in the experiment notices that the owner of the RUNNING run is gone.
    other = cli("model=mlp", "width=4", "epochs=1", "resume.enabled=false")
    assert other.returncode == 0, other.stderr[-3000:]
    marked = client.get_run(stale.info.run_id)
    assert marked.info.status == "FAILED" and "ended without recording an end" in marked.data.tags["trainer.stale"]

    result = cli(*KILLED_RUN, "seed=3")  # the identical command still resumes it from the checkpoint
    assert result.returncode == 0, result.stderr[-3000:]
    run = client.get_run(stale.info.run_id)
    assert run.info.status == "FINISHED"
    assert sorted(set(_epochs_logged(client, run.info.run_id))) == list(range(EPOCHS))


@pytest.fixture
def mount(tmp_path):
    """mount(path, options): a real tmpfs at path, unmounted afterwards; skips where mount is not allowed."""
    mounted = []

    def _mount(path: Path, options: str) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
        mounted.append(path)
        return path

    yield _mount
    for path in reversed(mounted):
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_full_disk_is_one_line_run_failed_and_checkpoint_kept(cli, tmp_path, mount):
    artifacts = mount(tmp_path / "tiny", "size=64k")
    result = cli("model=mlp", "width=512", "epochs=1", f"tracking.artifact_location={artifacts}/store")
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: could not write") and "No space left on device" in last, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    _, run = _only_run(tmp_path)
    assert run.info.status == "FAILED"
    assert (_checkpoint(tmp_path) / "run.json").exists()  # an unfinished run keeps its resume record


def test_unwritable_artifact_location_is_rejected_before_anything_runs(cli, tmp_path, mount):
    read_only = mount(tmp_path / "read_only", "ro,size=64k")
    result = cli("epochs=1", f"tracking.artifact_location={read_only}/store")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"error: tracking.artifact_location must be a folder this user can write to ({read_only} is not writable)."
        f" Received: tracking.artifact_location={read_only}/store"
    ]
    assert not (tmp_path / "outputs" / "mlflow.db").exists()


def test_unreachable_tracking_server_fails_fast_in_one_line(cli, tmp_path):
    import socket

    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.monotonic()
    result = cli("tracking=server", f"tracking.uri=http://127.0.0.1:{port}", "epochs=1", timeout=60)
    elapsed = time.monotonic() - started
    assert result.returncode == 2, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: tracking.uri must be a reachable MLflow tracking server")
    assert f"Received: tracking.uri=http://127.0.0.1:{port}" in lines[0]
    assert elapsed < 30, elapsed  # bounded retries: a correctness bound (no hang), not a speed goal
