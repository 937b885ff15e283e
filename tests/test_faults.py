"""Faults with real signals and real filesystems, on real CLI subprocesses.

- SIGTERM and Ctrl-C (SIGINT) end the run KILLED with the epochs so far logged and the resume
  checkpoint on disk; the same command then resumes the same run to FINISHED.
- SIGKILL leaves the run RUNNING and the checkpoint behind; the next run in the experiment marks
  it FAILED (its process is gone), and the same command still resumes it to FINISHED.
- A Ctrl-C whose exception some library code swallowed still ends the run KILLED.
- A full disk is a real 64 KiB tmpfs mounted as the artifact store where mount is allowed, and
  everywhere a file-size limit (`ulimit -f`, EFBIG) on the run's process. An unwritable artifact
  location is a read-only mount where mount is allowed, and everywhere a folder without write
  permission (for root, a process without CAP_DAC_OVERRIDE, which is what lets root ignore it).
- An unreachable tracking server fails in one line before TensorFlow loads.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import REPO, free_port, tracking_uri, without_tensorflow

FAULTS = str(REPO / "tests" / "faults")

# Small epochs, many of them: on a quiet machine an epoch takes ~0.1 s, so with only a few the
# run could finish before the signal sent after epoch 2 arrives; 40 leave seconds of margin.
EPOCHS = 40
KILLED_RUN = ["model=mlp", "width=16", f"epochs={EPOCHS}", "batch_size=16", "callbacks.progress=epoch",
              "resume.every_seconds=0"]


class Training:
    """`python -m trainer ...` in the background, its output collected line by line."""

    def __init__(self, root: Path, tfds_dir: str, *args: str, extra_env: dict | None = None):
        env = {**os.environ, "TRAINER_ROOT": str(root), "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1",
               **(extra_env or {})}
        self.proc = subprocess.Popen([sys.executable, "-m", "trainer", *args, f"data.data_dir={tfds_dir}"], cwd=root,
                                     env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=lambda: self.lines.extend(self.proc.stdout), daemon=True)
        self._reader.start()

    def wait_for(self, text: str, count: int = 1, timeout: float = 300) -> None:
        """Until `count` lines of the output contain `text`."""
        deadline = time.monotonic() + timeout
        while sum(text in line for line in list(self.lines)) < count:
            assert self.proc.poll() is None, "".join(self.lines)[-3000:]
            assert time.monotonic() < deadline, "".join(self.lines)[-3000:]
            time.sleep(0.05)

    def wait_for_epochs(self, n: int, timeout: float = 300) -> None:
        self.wait_for("val_loss", n, timeout)

    def stop(self, sig: int, timeout: float = 120) -> int:
        self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:  # say what the process was doing, not only that it was slow
            self.proc.kill()
            self.proc.wait()
            self._reader.join(timeout=10)
            raise AssertionError(f"still running {timeout} s after {signal.Signals(sig).name}:\n{self.output[-3000:]}") from None
        # The process held the pipe's only write end: the reader has the last line once it sees EOF.
        self._reader.join(timeout=timeout)
        assert not self._reader.is_alive(), "the output pipe stayed open after the process ended"
        return code

    @property
    def output(self) -> str:
        return "".join(self.lines)


# The line `python -m trainer` ends with, and its exit code (128 + the signal, as a shell reports it).
STOPPED = {signal.SIGTERM: "error: stopped: received signal SIGTERM; the MLflow run is recorded KILLED",
           signal.SIGINT: "error: stopped: interrupted (Ctrl-C); the MLflow run is recorded KILLED"}


def _only_run(root):
    client = MlflowClient(tracking_uri(root))
    (run,) = client.search_runs([client.get_experiment_by_name("trainer").experiment_id])
    return client, run


def _checkpoint(root) -> Path:
    (folder,) = (Path(root) / "outputs" / "checkpoints").iterdir()
    return folder


def _epochs_logged(client, run_id) -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run_id, "val_loss"))


# Ctrl-C's exception is swallowed on its way: TensorFlow or Keras code can swallow the
# KeyboardInterrupt a signal handler raises (1 in 25 Ctrl-Cs sent to `python -m trainer` during
# training were lost). tests/faults makes a callback swallow it, and the test sends the signal
# while that callback waits for it. SIGTERM's handler raises a KeyboardInterrupt too, the same way.
SWALLOW_IN_EPOCH_3 = {"PYTHONPATH": os.pathsep.join([FAULTS, os.environ.get("PYTHONPATH", "")]),
                      "TRAINER_TEST_SWALLOW_SIGNAL_AT": "2:2"}


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT-swallowed"])
def test_signal_ends_run_killed_with_metrics_and_a_checkpoint_the_same_command_resumes(cli, tmp_path, tfds_dir, sig):
    swallowed = sig == signal.SIGINT
    training = Training(tmp_path, tfds_dir, *KILLED_RUN, extra_env=SWALLOW_IN_EPOCH_3 if swallowed else None)
    if swallowed:
        training.wait_for("swallowing the next signal")
    else:
        training.wait_for_epochs(2)
    code = training.stop(sig)
    assert ("signal swallowed" in training.output) == swallowed, training.output[-3000:]
    assert code == 128 + sig, training.output[-3000:]  # 143 for SIGTERM, 130 for Ctrl-C
    assert STOPPED[sig] in training.output.splitlines(), training.output[-3000:]
    assert "Traceback" not in training.output, training.output[-3000:]

    client, run = _only_run(tmp_path)
    assert run.info.status == "KILLED"
    logged = _epochs_logged(client, run.info.run_id)
    assert logged[:2] == [0, 1], logged  # every epoch finished before the signal is kept
    if swallowed:
        assert logged == [0, 1]  # stopped in epoch 3, at the batch after the one that swallowed it
    folder = _checkpoint(tmp_path)
    assert json.loads((folder / "run.json").read_text())["run_id"] == run.info.run_id
    assert (folder / "state.ckpt").is_file(), "no checkpoint file"

    if swallowed:  # resuming is the same code path for both; once is enough
        return
    result = cli(*KILLED_RUN)
    assert result.returncode == 0, result.stderr[-3000:]
    client, resumed = _only_run(tmp_path)
    assert resumed.info.run_id == run.info.run_id and resumed.info.status == "FINISHED"
    assert sorted(set(_epochs_logged(client, run.info.run_id))) == list(range(EPOCHS))
    assert not (tmp_path / "outputs" / "checkpoints" / folder.name).exists()  # finished: nothing to resume


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


def _cli_limited(root: Path, tfds_dir: str, *args: str, preexec=None) -> subprocess.CompletedProcess:
    """`python -m trainer ...` with `preexec` (a resource limit, dropped capabilities) applied to its process."""
    env = {**os.environ, "TRAINER_ROOT": str(root), "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run([sys.executable, "-m", "trainer", *args, f"data.data_dir={tfds_dir}"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=600, preexec_fn=preexec)


def _mount_tmpfs(path: Path, options: str, mounted: list) -> None:
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root); the other way of this test runs: {done.stderr.strip()}")
    mounted.append(path)


@pytest.fixture
def mounted(tmp_path):
    """Paths mounted during the test, unmounted afterwards."""
    paths: list[Path] = []
    yield paths
    for path in reversed(paths):
        subprocess.run(["umount", "-l", str(path)], check=False)


# A file-size limit above what the run's small files need (the SQLite store and its journal) and
# below its resume checkpoint: the checkpoint's write gets EFBIG.
_FILE_SIZE_LIMIT = 4 * 2**20
_WIDE_MLP = ["model=mlp", "width=8192", "epochs=1"]  # a checkpoint of ~7 MiB (weights and Adam's two slots)


def _limit_file_size():
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG instead of killing the process
    resource.setrlimit(resource.RLIMIT_FSIZE, (_FILE_SIZE_LIMIT, _FILE_SIZE_LIMIT))


@pytest.mark.parametrize("disk", ["tmpfs", "ulimit"])
def test_full_disk_is_one_line_run_failed_and_checkpoint_kept(tmp_path, tfds_dir, mounted, disk):
    if disk == "tmpfs":  # the artifact store on a 64 KiB disk: the first large artifact fills it
        artifacts = tmp_path / "tiny"
        _mount_tmpfs(artifacts, "size=64k", mounted)
        result = _cli_limited(tmp_path, tfds_dir, "model=mlp", "width=512", "epochs=1",
                              f"tracking.artifact_location={artifacts}/store")
        refused = errno.ENOSPC
    else:
        from trainer.tracking.store import prepare_store

        prepare_store(tracking_uri(tmp_path))  # made without the limit: this test is about the run's own writes
        result = _cli_limited(tmp_path, tfds_dir, *_WIDE_MLP, preexec=_limit_file_size)
        refused = errno.EFBIG
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: could not write") and os.strerror(refused) in last, result.stderr[-3000:]
    if disk == "ulimit":  # a write on an open file names no file of its own: the message still names it
        assert "state.ckpt.partial:" in last, last
    assert "Traceback" not in result.stderr
    _, run = _only_run(tmp_path)
    assert run.info.status == "FAILED"
    assert (_checkpoint(tmp_path) / "run.json").exists()  # an unfinished run keeps its resume record


def _limit_file_size_below_a_new_store():
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 2**10, 64 * 2**10))  # MLflow's empty store is larger


def test_a_new_store_on_a_full_disk_is_one_line_before_tensorflow_loads(tmp_path, tfds_dir):
    """Creating MLflow's tables fails deep in SQLAlchemy ("disk I/O error"); nothing is recorded
    yet, so the user gets the one line and no traceback, and TensorFlow never starts."""
    env = {**os.environ, "TRAINER_ROOT": str(tmp_path), "TF_CPP_MIN_LOG_LEVEL": "2",
           **without_tensorflow(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "trainer", "epochs=1", f"data.data_dir={tfds_dir}"], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=300,
                            preexec_fn=_limit_file_size_below_a_new_store)
    assert result.returncode == 2, result.stderr[-3000:]
    db = tmp_path / "outputs" / "mlflow.db"
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: tracking.uri must be an SQLite store this user can write; preparing {db} failed (disk I/O error:"
        f" a full disk, a quota or a file-size limit?). No run was recorded. Received: tracking.uri=sqlite:///{db}")
    assert "Traceback" not in result.stderr


_PR_CAPBSET_DROP, _CAP_DAC_OVERRIDE = 24, 1  # linux/prctl.h, linux/capability.h


def _without_dac_override():
    """Root without the capability to ignore permission bits, in the process about to exec: a
    capability left out of the bounding set is not in the new program's permitted set."""
    if ctypes.CDLL(None, use_errno=True).prctl(_PR_CAPBSET_DROP, _CAP_DAC_OVERRIDE, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP, CAP_DAC_OVERRIDE)")


@pytest.mark.parametrize("how", ["read-only mount", "permissions"])
def test_unwritable_artifact_location_is_rejected_before_anything_runs(tmp_path, tfds_dir, mounted, how):
    read_only = tmp_path / "read_only"
    preexec = None
    if how == "read-only mount":
        _mount_tmpfs(read_only, "ro,size=64k", mounted)
    else:
        read_only.mkdir()
        read_only.chmod(0o555)
        preexec = _without_dac_override if os.geteuid() == 0 else None
    result = _cli_limited(tmp_path, tfds_dir, "epochs=1", f"tracking.artifact_location={read_only}/store",
                          preexec=preexec)
    assert result.returncode == 2, result.stderr[-3000:]
    assert result.stderr.splitlines() == [
        f"error: tracking.artifact_location must be a folder this user can write to ({read_only} is not writable)."
        f" Received: tracking.artifact_location={read_only}/store"
    ]
    assert not (tmp_path / "outputs" / "mlflow.db").exists()


def test_unreachable_tracking_server_fails_in_one_line_before_tensorflow_loads(tmp_path):
    port = free_port()  # nothing listens there
    env = {**os.environ, "TRAINER_ROOT": str(tmp_path), **without_tensorflow(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "trainer", "tracking=server", f"tracking.uri=http://127.0.0.1:{port}",
                             "epochs=1"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: tracking.uri must be a reachable MLflow tracking server")
    assert f"Received: tracking.uri=http://127.0.0.1:{port}" in lines[0]
