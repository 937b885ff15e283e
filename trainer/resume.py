"""Where a run's resume checkpoint lives, which MLflow run it belongs to, and how a resumed run
replays what the killed one already did.

A rerun of the same command gets a new Hydra run folder, so the checkpoint folder is derived from
the run's identity instead: <outputs>/checkpoints/<hash of the resolved config>, leaving out keys
that do not change what is trained (resume.*, paths.*, callbacks.progress). `resume.dir` overrides
it. The folder holds `run.json` (the MLflow run id) and `state.ckpt`, the epoch checkpoint both
loops write (trainer/checkpoint.py); it is deleted when the run finishes, so the next identical
command starts a new run instead of "resuming" a finished one.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
import shutil

from trainer.errors import ConfigError

_VOLATILE = (("resume",), ("paths",), ("callbacks", "progress"))


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

    @property
    def enabled(self) -> bool:
        return self.directory is not None

    def record_run(self, run_id: str) -> None:
        os.makedirs(self.directory, exist_ok=True)
        tmp = os.path.join(self.directory, "run.json.tmp")
        with open(tmp, "w") as f:
            json.dump({"run_id": run_id}, f)
        os.replace(tmp, os.path.join(self.directory, "run.json"))

    def finish(self) -> None:
        """The run ended FINISHED: nothing is left to resume."""
        shutil.rmtree(self.directory, ignore_errors=True)


def plan(settings: dict) -> Resume:
    """What this command resumes, read before TensorFlow builds anything."""
    options = settings["resume"]
    if not options["enabled"]:
        return Resume(None, None)
    directory = options["dir"] or os.path.join(settings["paths"]["output_dir"], "checkpoints", identity(settings))
    directory = os.path.abspath(directory)
    record = os.path.join(directory, "run.json")
    if not os.path.exists(record):
        return Resume(directory, None)
    try:
        with open(record) as f:
            run_id = json.load(f)["run_id"]
        if not isinstance(run_id, str) or not run_id:
            raise ValueError(f"run_id is {run_id!r}")
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ResumeError(directory, err) from err
    return Resume(directory, run_id)


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
