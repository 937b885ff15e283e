"""Where a run's resume checkpoint lives, which MLflow run it belongs to, and how a resumed run
replays what the killed one already did.

A rerun of the same command gets a new Hydra run folder, so the checkpoint folder is derived from
the run's identity instead: <outputs>/checkpoints/<hash of the resolved config>, leaving out keys
that do not change what is trained (resume.*, paths.*, callbacks.progress). `resume.dir` overrides
it. The folder holds `run.json` (the MLflow run id), `state.ckpt`, the epoch checkpoint both
loops write (trainer/checkpoint.py), and `lock`, which the process running the command holds; it
is deleted when the run finishes, so the next identical command starts a new run instead of
"resuming" a finished one.
"""

from __future__ import annotations

import copy
import dataclasses
import fcntl
import hashlib
import json
import os
import shutil
import socket

from trainer.errors import ConfigError

_VOLATILE = (("resume",), ("paths",), ("callbacks", "progress"))
LOCK = "lock"  # held (flock) by the process running the command while it runs


class FolderInUse(ConfigError):
    """The same command is running in another process, which holds its checkpoint folder."""


class ResumeError(ConfigError):
    """A checkpoint exists but cannot be used; it is left untouched for the user to inspect."""

    def __init__(self, directory: str, cause):
        super().__init__(
            f"cannot resume from the checkpoint in {directory} ({type(cause).__name__}: {str(cause).splitlines()[0]}"
            f"). It was left untouched: delete it to start over, or set resume.enabled=false or another resume.dir."
            f" Received: resume.dir={directory}"
        )


def identity(settings: dict) -> str:
    """A short hash of what the run trains: the same command gives the same hash."""
    kept = copy.deepcopy(settings)
    for path in _VOLATILE:
        node = kept
        for key in path[:-1]:
            node = node.get(key, {})
        node.pop(path[-1], None)
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclasses.dataclass
class Resume:
    directory: str | None  # None: resume disabled
    run_id: str | None     # the MLflow run a previous attempt of this command left unfinished
    every_seconds: float = 0.0  # resume.every_seconds: the least time between two checkpoints
    lock: int | None = dataclasses.field(default=None, repr=False)  # the held lock file's descriptor

    @property
    def enabled(self) -> bool:
        return self.directory is not None

    def release(self) -> None:
        """Let go of the folder; a run that never recorded anything there leaves no folder behind."""
        if self.lock is None:
            return
        try:
            if os.listdir(self.directory) == [LOCK]:  # still held: no other process can be using it
                os.remove(os.path.join(self.directory, LOCK))
                os.rmdir(self.directory)
        except OSError:
            pass
        os.close(self.lock)
        self.lock = None

    def record_run(self, run_id: str) -> None:
        os.makedirs(self.directory, exist_ok=True)
        tmp = os.path.join(self.directory, "run.json.tmp")
        with open(tmp, "w") as f:
            json.dump({"run_id": run_id}, f)
        os.replace(tmp, os.path.join(self.directory, "run.json"))

    def finish(self) -> None:
        """The run ended FINISHED: nothing is left to resume."""
        shutil.rmtree(self.directory, ignore_errors=True)


def plan(settings: dict, *, lock: bool = False) -> Resume:
    """What this command resumes, read before TensorFlow builds anything. `lock`: first take the
    folder for this process (Resume.release gives it back); see `_hold`."""
    options = settings["resume"]
    if not options["enabled"]:
        return Resume(None, None)
    every = float(options["every_seconds"])
    directory = options["dir"] or os.path.join(settings["paths"]["output_dir"], "checkpoints", identity(settings))
    directory = os.path.abspath(directory)
    # A cluster's workers all name the chief's folder, on purpose (only the chief writes to it).
    held = _hold(directory, options["dir"]) if lock and settings["strategy"]["name"] != "multi_worker" else None
    plan_ = Resume(directory, None, every, held)
    record = os.path.join(directory, "run.json")
    if not os.path.exists(record):
        return plan_
    try:
        with open(record) as f:
            run_id = json.load(f)["run_id"]
        if not isinstance(run_id, str) or not run_id:
            raise ValueError(f"run_id is {run_id!r}")
    except (OSError, ValueError, KeyError, TypeError) as err:
        plan_.release()
        raise ResumeError(directory, err) from err
    plan_.run_id = run_id
    return plan_


def _hold(directory: str, configured) -> int:
    """Lock the folder for this process, or fail in one line: two processes running the same
    command at once would both resume (and write) one checkpoint and one MLflow run. An flock ends
    with its process, however it dies, so a killed run never leaves the folder locked."""
    os.makedirs(directory, exist_ok=True)
    fd = os.open(os.path.join(directory, LOCK), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner = os.read(fd, 200).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise FolderInUse(
            f"{owner} is running this same command and holds its resume checkpoint folder {directory}; wait for"
            f" it to end, or give this run its own folder (resume.dir=...) or none (resume.enabled=false)."
            f" Received: resume.dir={'null' if configured is None else configured}"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}".encode())
    return fd


def seed_states(model) -> list:
    """The RNG state of every layer (dropout masks): not part of model.weights, but a resumed run
    must draw the same masks as an uninterrupted one."""
    return [g.state for layer in model._flatten_layers() for g in getattr(layer, "_seed_generators", [])]


def replay_shuffles(dataset, epochs_done: int) -> None:
    """Advance a reshuffling dataset past the epochs already trained, one order per epoch, so epoch
    k of a resumed run sees the order it saw originally. Both loops make exactly one training
    iterator per epoch: Model.fit, given steps_per_epoch, makes the next epoch's as an epoch ends
    and keeps it (keras/src/trainers/epoch_iterator.py); the custom loop does the same."""
    for _ in range(epochs_done):
        iter(dataset)
