"""Resuming a killed run, behind one interface that `train` calls in run order: `plan` (before
TensorFlow loads), then the plan's `record_run`, `restore`, `finish` and `release`."""

from __future__ import annotations

import copy
import dataclasses
import fcntl
import hashlib
import json
import os
import socket

from trainer.config import checks
from trainer.errors import ConfigError, FolderInUse, ResumeError

_VOLATILE = (("resume",), ("paths",), ("callbacks", "progress"))
RECORD = "run.json"
SNAPSHOT = "state.ckpt"  # trainer/run/snapshot.py writes it
LOCK = "lock"  # held (flock) by the process running the command while it runs
# Every name trainer writes in the folder: the only files a finished run deletes.
_TEMPORARY = (RECORD + ".tmp", SNAPSHOT + ".partial")
_WRITTEN = (RECORD, SNAPSHOT, *_TEMPORARY)
# What a folder may hold before its record exists (a run killed before recording it).
_BEFORE_RECORD = (LOCK, RECORD + ".tmp")
_SHOWN_NAMES = 3


def plan(settings: dict, *, lock: bool = False) -> Resume:
    """What this command resumes, read before TensorFlow builds anything. `lock`: first take the
    folder for this process (Resume.release gives it back); see `_hold`."""
    options = settings["resume"]
    if not options["enabled"]:
        return Resume(None, None)
    every = float(options["every_seconds"])
    directory = folder(settings)
    # A derived folder is trainer's by its name; a configured one only if trainer made it.
    created = options["dir"] is None or not os.path.isdir(directory)
    # A cluster's workers all name the chief's folder, on purpose (only the chief writes to it).
    held = _hold(directory, settings) if lock and settings["strategy"]["name"] != "multi_worker" else None
    plan_ = Resume(directory, None, every, held, identity(settings), created)
    if not os.path.exists(os.path.join(directory, RECORD)):
        return plan_
    try:
        record = _read_record(directory)
        _check_identity(settings, directory, record)
    except (OSError, ValueError) as err:
        plan_.release()
        if isinstance(err, ConfigError):
            raise
        raise ResumeError(directory, err) from err
    plan_.run_id = record["run_id"]
    plan_.created = bool(record.get("created", created))
    return plan_


def _hold(directory: str, settings: dict) -> int:
    """Lock the folder for this process, or fail in one line: two processes running the same
    command at once would both resume (and write) one snapshot and one MLflow run. An flock ends
    with its process, however it dies, so a killed run never leaves the folder locked."""
    try:
        os.makedirs(directory, exist_ok=True)
        fd = os.open(os.path.join(directory, LOCK), os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        raise checks.fail("resume.dir", f"a folder this user can write to; {directory}: {err.strerror}",
                          _received(settings)) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner = os.read(fd, 200).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise FolderInUse(
            f"{owner} is running this same command and holds its resume checkpoint folder {directory}; wait for"
            f" it to end, or give this run its own folder (resume.dir=...) or none (resume.enabled=false)."
            f" Received: resume.dir={_received(settings)}"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}".encode())
    return fd


@dataclasses.dataclass
class Resume:
    """This command's resume plan (`plan`): its folder, held while the run trains, and the MLflow
    run it continues. In a multi-worker cluster every worker restores the chief's snapshot (the
    workers hold one model in lockstep), and only the chief writes the folder: saving needs no
    collective op, so the others need no snapshot of their own."""

    directory: str | None  # None: resume disabled
    run_id: str | None     # the MLflow run a previous attempt of this command left unfinished
    every_seconds: float = 0.0  # resume.every_seconds: the least time between two snapshots
    lock: int | None = dataclasses.field(default=None, repr=False)  # the held lock file's descriptor
    identity: str = ""     # of the config, written into the record
    created: bool = False  # trainer made the folder, so it removes it once it is empty
    epoch_logs: dict = dataclasses.field(default_factory=dict)  # the restored snapshot's last epoch's logs

    @property
    def enabled(self) -> bool:
        return self.directory is not None

    def record_run(self, run_id: str | None, *, chief: bool) -> None:
        """Write the record right after the MLflow run exists, so a kill from then on resumes that
        run (None: tracking is off); it also names the config, so no other config resumes from
        this folder."""
        if not (self.enabled and chief):
            return
        os.makedirs(self.directory, exist_ok=True)
        tmp = os.path.join(self.directory, RECORD + ".tmp")
        try:
            with open(tmp, "w") as f:
                json.dump({"run_id": run_id, "identity": self.identity, "created": self.created}, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, os.path.join(self.directory, RECORD))
        except BaseException:
            _remove(self.directory, RECORD + ".tmp")
            raise
        sync_folder(self.directory)

    def restore(self, model, optimizer, strategy, tracker, *, chief: bool):
        """(the callback that writes this run's snapshots, None on a worker other than the chief;
        the epochs the snapshot had completed), with the snapshot restored into the model and
        optimizer and the metrics the killed attempt logged but the store may not have received
        logged again; (None, 0) with resume off. An unusable snapshot raises ResumeError."""
        if not self.enabled:
            return None, 0
        # The TensorFlow side of resuming; imported here so that check_folder, on the fast path,
        # stays free of it (pyproject.toml's import contract lets this import through).
        from trainer.run import distribute, snapshot

        with strategy.scope():  # the optimizer's slots are created, mirrored, before they are restored
            if not optimizer.built:
                optimizer.build(model.trainable_variables)
            callback = snapshot.SnapshotCallback(self.directory, model, optimizer, tracker.unconfirmed,
                                                 every_seconds=self.every_seconds)
            epochs_done, unconfirmed = callback.restore()
            self.epoch_logs = callback.restored_logs
        if not distribute.workers_agree(strategy, epochs_done):
            raise ResumeError(self.directory, ValueError(
                f"this worker found {epochs_done} completed epochs there and another worker found a different"
                " number; every worker must read the chief's checkpoint: set resume.dir to storage all of them share"))
        tracker.replay(unconfirmed)
        return (callback if chief else None), epochs_done

    def finish(self, *, chief: bool) -> None:
        """The run ended FINISHED: nothing is left to resume, so the next identical command starts a
        new run. Only the files trainer wrote go."""
        if not (self.enabled and chief):
            return
        for name in _WRITTEN:
            _remove(self.directory, name)
        if self.lock is None:  # not held (a multi-worker chief): nothing else will remove the folder
            self._remove_folder()

    def release(self) -> None:
        """Let go of the folder, however the run ended. With nothing in it to resume (a finished run,
        or one that never recorded anything), the lock file goes too, and the folder if trainer made
        it and nothing else is in it."""
        if self.lock is None:
            return
        try:
            if not any(os.path.exists(os.path.join(self.directory, n)) for n in (RECORD, SNAPSHOT)):
                _remove(self.directory, LOCK)  # still held: no other process can be using it
                self._remove_folder()
        except OSError:
            pass
        os.close(self.lock)
        self.lock = None

    def __enter__(self) -> "Resume":
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def _remove_folder(self) -> None:
        if self.created:
            try:
                os.rmdir(self.directory)  # only if empty: a file of the user's keeps it
            except OSError:
                pass


def replay_shuffles(dataset, epochs_done: int) -> None:
    """Advance a reshuffling dataset past the epochs already trained, one order per epoch, so epoch
    k of a resumed run sees the order it saw originally. Both loops make exactly one training
    iterator per epoch: Model.fit, given steps_per_epoch, makes the next epoch's as an epoch ends
    and keeps it (keras/src/trainers/epoch_iterator.py); the custom loop does the same."""
    for _ in range(epochs_done):
        iter(dataset)


def identity(settings: dict) -> str:
    """A short hash of what the run trains: the same command gives the same hash, whatever it
    changes in keys that do not change what is trained (resume.*, paths.*, callbacks.progress)."""
    kept = copy.deepcopy(settings)
    for path in _VOLATILE:
        node = kept
        for key in path[:-1]:
            node = node.get(key, {})
        node.pop(path[-1], None)
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()[:16]


def folder(settings: dict) -> str:
    """The resume folder of this run, absolute: `resume.dir`, or <outputs>/checkpoints/<identity>,
    since a rerun of the same command gets a new Hydra run folder but keeps its identity. It holds
    the record (`run.json`: the MLflow run id and the config's identity), the snapshot
    (`state.ckpt`, trainer/run/snapshot.py) and `lock`, held by the process running the command."""
    configured = settings["resume"]["dir"]
    return os.path.abspath(configured or os.path.join(settings["paths"]["output_dir"], "checkpoints", identity(settings)))


def check_folder(settings: dict) -> None:
    """Refuse, in one line and before anything is written, a resume folder this run may not use.
    A finished run empties its folder, so only a folder whose files trainer wrote will do: a
    `resume.dir` that holds files and no record of ours is refused, and so is one that holds the
    working folder or the project's outputs, a mount point, a file, an unwritable place, and a
    folder whose record names another config. Pure Python: trainer.config.validate calls it."""
    if not settings["resume"]["enabled"]:
        return
    directory = folder(settings)
    if settings["resume"]["dir"] is not None:
        _check_place(settings, directory)
    if not os.path.isdir(directory):
        return
    try:
        entries = set(os.listdir(directory))
    except OSError as err:
        raise checks.fail("resume.dir", f"a folder this user can read and write; {directory}: {err.strerror}",
                          _received(settings)) from None
    others = entries - {RECORD, *_BEFORE_RECORD} | (set() if LOCK not in entries or _our_lock(directory) else {LOCK})
    if RECORD in entries:
        try:
            record = _read_record(directory)
        except (OSError, ValueError) as err:
            # A damaged record of ours; but in a folder of the user's, a run.json of theirs.
            if (settings["resume"]["dir"] is None or isinstance(err, UnnamedRecord) or (entries - others) - {RECORD}
                    or SNAPSHOT in entries):
                raise ResumeError(directory, err) from err
            others.add(RECORD)
        else:
            _check_identity(settings, directory, record)
            return
    if others and settings["resume"]["dir"] is not None:  # a derived folder is trainer's by its name
        names = sorted(others)
        shown = ", ".join(names[:_SHOWN_NAMES]) + (", ..." if len(names) > _SHOWN_NAMES else "")
        raise checks.fail(
            "resume.dir",
            "a folder of its own for the resume checkpoint (new, empty, or left by an earlier run of this command);"
            f" {directory} holds other files ({shown}), which a finished run must not delete",
            _received(settings),
        )


def _check_place(settings: dict, directory: str) -> None:
    """A configured folder must be one a finished run may empty: not a file, not a place that holds
    the user's work or the project's outputs, and writable."""
    received = _received(settings)
    real = os.path.realpath(directory)
    places = (
        (os.getcwd(), "the working folder"),
        (settings["paths"]["root_dir"], "the project root (paths.root_dir)"),
        (settings["paths"]["output_dir"], "the outputs folder (paths.output_dir)"),
        (os.path.expanduser("~"), "the home folder"),
    )
    wanted = "a folder of its own for the resume checkpoint (new, empty, or left by an earlier run of this command)"
    if os.path.isdir(real) and os.path.ismount(real):
        raise checks.fail("resume.dir", f"{wanted}, not a mount point ({directory})", received)
    for place, name in places:
        if place and _within(real, os.path.realpath(str(place))):
            raise checks.fail("resume.dir", f"{wanted}, not {name} or a folder that holds it", received)
    existing = directory
    while not os.path.lexists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise checks.fail("resume.dir", f"a folder, or a path where one can be created; {existing} is a file", received)
    if not os.access(existing, os.W_OK | os.X_OK | os.R_OK):
        raise checks.fail("resume.dir", f"a folder this user can write to; {existing} is not writable", received)


def _check_identity(settings: dict, directory: str, record: dict) -> None:
    ours = identity(settings)
    if record["identity"] != ours:
        raise ConfigError(
            f"resume.dir holds the resume checkpoint of another config (resume.identity {record['identity']}, this"
            f" run's is {ours}); resuming it would continue another run. Give this run its own resume.dir, or"
            f" delete {directory} to start that run over. Received: resume.dir={_received(settings)}"
        )


class UnnamedRecord(ValueError):
    """A record of an earlier trainer, which did not name the config."""


def _read_record(directory: str) -> dict:
    """The record in `directory`; ValueError (or OSError) when it is not one trainer wrote."""
    with open(os.path.join(directory, RECORD)) as f:
        record = json.load(f)
    if not isinstance(record, dict) or "run_id" not in record:
        raise ValueError(f"{RECORD} is not a resume record (no run_id)")
    run_id = record["run_id"]
    if run_id is not None and (not isinstance(run_id, str) or not run_id):
        raise ValueError(f"run_id is {run_id!r}")
    if not isinstance(record.get("identity"), str):
        raise UnnamedRecord(f"{RECORD} does not name the config it belongs to (an earlier version of trainer wrote it)")
    return record


def _our_lock(directory: str) -> bool:
    try:
        with open(os.path.join(directory, LOCK), "rb") as f:
            text = f.read(200)
    except OSError:
        return False
    return text == b"" or text.startswith(b"pid ")  # what _hold writes


def _within(outer: str, inner: str) -> bool:
    return inner == outer or inner.startswith(outer.rstrip(os.sep) + os.sep)


def _received(settings: dict) -> str:
    configured = settings["resume"]["dir"]
    return "null" if configured is None else configured


def _remove(directory: str, name: str) -> None:
    try:
        os.remove(os.path.join(directory, name))
    except FileNotFoundError:
        pass


def sync_folder(directory: str) -> None:
    """fsync a folder, so a rename into it survives a power loss (the file's own fsync does not
    cover the folder entry)."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
