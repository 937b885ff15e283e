"""The resume snapshot (state.ckpt in the resume folder): its file format, and the Keras callback
both loops use to write one at an epoch's end and to restore the last one."""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import sys
import time
import zlib

import keras
import numpy as np
import tensorflow as tf

from trainer.errors import ResumeError
from trainer.run import resume

FILE = resume.SNAPSHOT
# The file: this signature, the manifest's length (8 bytes, little-endian), the manifest (JSON:
# each variable's path, shape and dtype, the completed epochs, the unconfirmed metrics), the raw
# bytes of every variable, and a CRC-32 (4 bytes, little-endian) of everything before it, so a
# truncated or damaged file (an edited epoch count included) is refused, never loaded. Raw bytes
# rather than an .npz, and one compiled read rather than one `.numpy()` per variable: both keep
# the training thread's share of a snapshot and the writer's CPU time small, since the writer
# shares the cores with training.
_MAGIC = b"TRAINER\x00"
_FORMAT = 3
_CRC = 4
_LEGACY = {"state.npz": 1}  # files earlier versions wrote, and their format
# Keras makes names unique within a process by numbering them (dense, dense_1; adam_1/...): a
# model built a second time in one process differs only in those numbers.
_NUMBERING = re.compile(r"_\d+(?=/|_|$)")
_now = time.monotonic  # the clock every_seconds is measured on (tests replace it)


def seed_states(model) -> list:
    """The RNG state of every layer (dropout masks): not part of model.weights, but a resumed run
    must draw the same masks as an uninterrupted one."""
    return [g.state for layer in model._flatten_layers() for g in getattr(layer, "_seed_generators", [])]


class SnapshotCallback(keras.callbacks.Callback):
    """Writes the resume snapshot at an epoch's end, last in the callback list, so a saved epoch is
    one every other callback (early stopping, the MLflow logger) has already seen; `restore` loads
    the last one.

    When: at the end of the first epoch that ends `every_seconds` (resume.every_seconds) or more
    after the previous snapshot (or after training began), and at the end of the last epoch,
    including one that early stopping made the last; 0 writes one after every epoch. This is the
    trade tf.estimator's `save_checkpoints_secs` made: written every epoch, a snapshot is a visible
    share of a tiny model's epoch; written every few seconds it is lost in the noise, and a kill
    costs at most that much retraining (docs/resume-and-faults.md).

    What: the model's weights, the optimizer's variables (step count and slots), the layers' RNG
    state, the completed epochs, and the metrics the tracker had not yet confirmed in the store, so
    logging never waits for the store before a snapshot (trainer/run/resume.py has them logged
    again on resume; MLflow ignores a metric it already has).

    Why not Keras's BackupAndRestore or a tf.train.CheckpointManager: they write synchronously, in
    the training thread, at every epoch end, and TensorFlow's async checkpoint option fails on
    Keras 3 variables ("tf.function only supports singleton tf.Variables"). Here the epoch end only
    reads the variables, in one compiled call, and a background thread writes the file while the
    next epoch trains."""

    def __init__(self, directory: str, model, optimizer, unconfirmed_metrics=lambda: [], *, every_seconds: float = 0.0):
        super().__init__()
        self.directory = directory
        self.every_seconds = every_seconds
        self._last_write = _now()
        self._model_trained = model  # whose stop_training (early stopping) makes this epoch the last
        self.path = os.path.join(directory, FILE)
        self.unconfirmed_metrics = unconfirmed_metrics
        seen: set[int] = set()
        self.variables = []
        for variable in [*model.weights, *optimizer.variables, *seed_states(model)]:
            if id(variable) not in seen:  # a variable shared by two layers is saved once
                seen.add(id(variable))
                self.variables.append(variable)
        self._described = [[v.path, list(v.shape), str(v.dtype)] for v in self.variables]
        # Reading a TensorFlow variable gives its value at that moment: the optimizer's next update
        # copies the buffer while a reader still holds it, so these tensors stay the epoch's end.
        self._read = tf.function(lambda: [v.value for v in self.variables], autograph=False)
        self._writer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="resume-snapshot")
        self._pending: concurrent.futures.Future | None = None
        self.restored_logs: dict = {}  # the logs of the epoch the restored snapshot ended

    def restore(self) -> tuple[int, list]:
        """Load the snapshot into the variables; returns (completed epochs, unconfirmed metrics),
        (0, []) when there is none. Anything unusable is a ResumeError and the file is left as is."""
        if not os.path.exists(self.path):
            for name, version in _LEGACY.items():
                if os.path.exists(os.path.join(self.directory, name)):
                    raise ResumeError(self.directory, ValueError(
                        f"{name} is a format {version} checkpoint, this version reads format {_FORMAT}"))
            return 0, []
        try:
            with open(self.path, "rb") as f:
                manifest, payload = _parse(f.read())
            arrays = self._arrays(manifest, payload)
        except (OSError, ValueError) as err:
            raise ResumeError(self.directory, err) from err
        for variable, value in zip(self.variables, arrays, strict=True):  # all checked: none is half-restored
            variable.assign(value)
        self.restored_logs = manifest.get("logs", {})
        return manifest["epoch"], manifest["metrics"]

    def _arrays(self, manifest: dict, payload: memoryview) -> list[np.ndarray]:
        """The stored values, one per variable, after checking they are this model's."""
        stored = manifest["variables"]
        if len(stored) != len(self.variables):
            raise ValueError(f"it holds {len(stored)} variables, the model and optimizer have {len(self.variables)}")
        arrays, offset = [], 0
        for variable, (path, shape, dtype) in zip(self.variables, stored):
            if _NUMBERING.sub("", path) != _NUMBERING.sub("", variable.path):
                raise ValueError(f"the model's variable {variable.path} is {path} in the checkpoint")
            if tuple(shape) != tuple(variable.shape):
                raise ValueError(f"{variable.path} has shape {tuple(variable.shape)}, the checkpoint {tuple(shape)}")
            if dtype != str(variable.dtype):
                raise ValueError(f"{variable.path} has dtype {variable.dtype}, the checkpoint {dtype}")
            numpy_dtype = variable.numpy().dtype  # bfloat16 and friends have no portable NumPy name
            count = int(np.prod(shape, dtype=np.int64))
            if offset + count * numpy_dtype.itemsize > len(payload):
                raise ValueError(f"the header describes more bytes than the file holds (at {variable.path})")
            arrays.append(np.frombuffer(payload, numpy_dtype, count, offset).reshape(shape))
            offset += count * numpy_dtype.itemsize
        if offset != len(payload):
            raise ValueError(f"the header describes {offset} bytes of variables, the file holds {len(payload)}")
        return arrays

    def on_train_begin(self, logs=None):
        self._last_write = _now()

    def on_epoch_end(self, epoch, logs=None):
        self.wait()  # one write at a time, in order; a failed one raises here
        due = _now() - self._last_write >= self.every_seconds
        if not due and epoch + 1 < (self.params or {}).get("epochs", 0) and not getattr(self._model_trained, "stop_training", False):
            return
        self._last_write = _now()
        arrays = [t.numpy() for t in self._read()]
        manifest = {
            "format": _FORMAT,
            "epoch": epoch + 1,
            "byteorder": sys.byteorder,
            "variables": self._described,
            "metrics": [list(m) for m in self.unconfirmed_metrics()],
            # The epoch's own logs: a run killed after its last epoch trains none when resumed,
            # and still reports them.
            "logs": {k: float(v) for k, v in (logs or {}).items() if isinstance(v, (int, float, np.number))},
        }
        self._pending = self._writer.submit(self._write, arrays, manifest)

    def on_train_end(self, logs=None):
        self.wait()
        self._writer.shutdown()  # a sweep's jobs share one process: no idle thread per job

    def wait(self) -> None:
        """Block until the last snapshot is on disk; re-raise its error if it failed."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def _write(self, arrays: list, manifest: dict) -> None:
        """On the writer thread: a temporary file, fsynced, atomically replaces the previous snapshot
        and the folder is fsynced after the rename, so a kill or a power loss at any moment leaves
        one complete snapshot. A failure is raised by `wait`, at the next epoch end or at the end."""
        os.makedirs(self.directory, exist_ok=True)
        buffers = [memoryview(np.ascontiguousarray(a)).cast("B") for a in arrays]
        header = json.dumps({**manifest, "bytes": sum(b.nbytes for b in buffers)}).encode()
        start = _MAGIC + len(header).to_bytes(8, "little") + header
        crc = zlib.crc32(start)
        for b in buffers:
            crc = zlib.crc32(b, crc)
        partial = self.path + ".partial"
        try:
            with open(partial, "wb") as f:
                f.write(start)
                for b in buffers:
                    f.write(b)
                f.write(crc.to_bytes(_CRC, "little"))
                f.flush()
                os.fsync(f.fileno())  # on disk before it replaces the previous snapshot
            os.replace(partial, self.path)
        except BaseException as err:
            try:
                os.remove(partial)  # a full disk keeps the previous snapshot, not a broken one
            except OSError:
                pass
            if isinstance(err, OSError) and err.filename is None:
                # A write on an open file names no file; the one-line message should say which.
                raise OSError(err.errno, err.strerror, partial) from err
            raise
        resume.sync_folder(self.directory)  # the rename itself on disk


def _parse(data: bytes) -> tuple[dict, memoryview]:
    """(manifest, the variables' bytes) from a snapshot file; ValueError for anything but an
    intact snapshot of this format, written on a machine of this byte order."""
    start = len(_MAGIC) + 8
    if not data.startswith(_MAGIC) or len(data) < start:
        raise ValueError("not a trainer checkpoint (the file does not start with its signature)")
    end = start + int.from_bytes(data[len(_MAGIC):start], "little")
    # The format is read before the checksum is checked, so that a file of another format (laid out
    # differently) is named as such rather than as damaged.
    try:
        manifest = json.loads(data[start:end])
    except (ValueError, UnicodeDecodeError):
        manifest = None
    if not isinstance(manifest, dict):
        raise ValueError("the header is malformed (not a JSON object): the file is damaged or not trainer's")
    if manifest.get("format") != _FORMAT:
        raise ValueError(f"format {manifest.get('format')!r}, this version reads {_FORMAT}")
    if end + _CRC > len(data) or zlib.crc32(memoryview(data)[:-_CRC]) != int.from_bytes(data[-_CRC:], "little"):
        raise ValueError("the file is damaged or truncated (the checksum of its header and variables differs)")
    _check_manifest(manifest)
    if manifest["byteorder"] != sys.byteorder:
        raise ValueError(f"written on a {manifest['byteorder']}-endian machine, this one is {sys.byteorder}-endian")
    payload = memoryview(data)[end:-_CRC]
    if len(payload) != manifest["bytes"]:
        raise ValueError(f"the header says {manifest['bytes']} bytes of variables, the file holds {len(payload)}")
    return manifest, payload


def _check_manifest(manifest: dict) -> None:
    """A header with the right checksum can still be malformed (written by other code): every field
    restore reads must have the type it expects, so a bad one is a ValueError, not a crash."""
    def valid_variable(v):
        return (isinstance(v, list) and len(v) == 3 and isinstance(v[0], str) and isinstance(v[2], str)
                and isinstance(v[1], list) and all(type(n) is int and n >= 0 for n in v[1]))

    problems = [
        (type(manifest.get("epoch")) is int and manifest["epoch"] >= 0, "epoch"),
        (manifest.get("byteorder") in ("little", "big"), "byteorder"),
        (type(manifest.get("bytes")) is int, "bytes"),
        (isinstance(manifest.get("variables"), list) and all(map(valid_variable, manifest["variables"])), "variables"),
        (isinstance(manifest.get("metrics"), list) and all(
            isinstance(m, list) and len(m) == 4 and isinstance(m[0], str)
            and all(type(x) in (int, float) for x in m[1:]) for m in manifest["metrics"]), "metrics"),
        (isinstance(manifest.get("logs", {}), dict) and all(
            isinstance(k, str) and type(v) in (int, float) for k, v in manifest.get("logs", {}).items()), "logs"),
    ]
    bad = [name for ok, name in problems if not ok]
    if bad:
        raise ValueError(f"the header is malformed ({', '.join(bad)} missing or of the wrong type)")
