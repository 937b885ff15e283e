"""The resume snapshot (trainer/run/snapshot.py) in process: it restores exactly what it saved,
keeps the metrics the store had not confirmed so a resumed run can replay them without
duplicates, refuses a snapshot of another model, and a failed write keeps the previous one."""

from __future__ import annotations

import errno
import os

import keras
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from trainer.run import resume, snapshot
from trainer.tracking import tracker as tracking


def _model_and_optimizer(width: int = 4):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(width), keras.layers.Dropout(0.5), keras.layers.Dense(2)])
    optimizer = keras.optimizers.Adam()
    optimizer.build(model.trainable_variables)
    return model, optimizer


def _state(model, optimizer) -> list:
    return [np.array(v) for v in [*model.weights, *optimizer.variables, *snapshot.seed_states(model)]]


def test_restores_weights_optimizer_and_rng_state_saved_after_an_epoch(tmp_path):
    model, optimizer = _model_and_optimizer()
    model(np.ones((2, 3)), training=True)  # advances the dropout RNG state
    optimizer.apply([np.ones(v.shape, "float32") for v in model.trainable_variables])  # slots and step count
    callback = snapshot.SnapshotCallback(str(tmp_path), model, optimizer, lambda: [("loss", 0.5, 1000, 2)])
    saved = _state(model, optimizer)
    callback.on_epoch_end(2)
    # Training goes on while the file is written: the snapshot must still hold the epoch's end.
    optimizer.apply([np.ones(v.shape, "float32") for v in model.trainable_variables])
    callback.on_train_end()

    fresh, fresh_optimizer = _model_and_optimizer()
    assert any(not np.array_equal(a, b) for a, b in zip(_state(fresh, fresh_optimizer), saved))
    epochs, metrics = snapshot.SnapshotCallback(str(tmp_path), fresh, fresh_optimizer).restore()
    assert (epochs, metrics) == (3, [["loss", 0.5, 1000, 2]])
    for a, b in zip(_state(fresh, fresh_optimizer), saved, strict=True):
        np.testing.assert_array_equal(a, b)


def test_no_snapshot_means_epoch_zero(tmp_path):
    model, optimizer = _model_and_optimizer()
    assert snapshot.SnapshotCallback(str(tmp_path / "none"), model, optimizer).restore() == (0, [])


def test_snapshot_of_another_model_is_refused_and_kept(tmp_path):
    model, optimizer = _model_and_optimizer(width=4)
    callback = snapshot.SnapshotCallback(str(tmp_path), model, optimizer)
    callback.on_epoch_end(0)
    callback.wait()
    saved = (tmp_path / snapshot.FILE).read_bytes()
    other, other_optimizer = _model_and_optimizer(width=5)
    with pytest.raises(resume.ResumeError, match=r"has shape \(3, 5\), the checkpoint \(3, 4\)"):
        snapshot.SnapshotCallback(str(tmp_path), other, other_optimizer).restore()
    assert (tmp_path / snapshot.FILE).read_bytes() == saved


@pytest.mark.parametrize("damage, message", [
    (lambda data: data[:-3], "damaged or truncated"),                           # a copy cut short
    (lambda data: data[:-1] + bytes([data[-1] ^ 1]), "damaged or truncated"),  # one flipped bit
    (lambda data: b"PK" + data[2:], "not a trainer checkpoint"),
])
def test_a_damaged_snapshot_is_refused_and_kept(tmp_path, damage, message):
    model, optimizer = _model_and_optimizer()
    callback = snapshot.SnapshotCallback(str(tmp_path), model, optimizer)
    callback.on_epoch_end(0)
    callback.on_train_end()
    damaged = damage((tmp_path / snapshot.FILE).read_bytes())
    (tmp_path / snapshot.FILE).write_bytes(damaged)
    with pytest.raises(resume.ResumeError, match=message):
        snapshot.SnapshotCallback(str(tmp_path), model, optimizer).restore()
    assert (tmp_path / snapshot.FILE).read_bytes() == damaged


def test_a_snapshot_of_the_earlier_npz_format_is_refused_not_ignored(tmp_path):
    (tmp_path / "state.npz").write_bytes(b"PK")
    model, optimizer = _model_and_optimizer()
    with pytest.raises(resume.ResumeError, match="state.npz is a format 1 checkpoint"):
        snapshot.SnapshotCallback(str(tmp_path), model, optimizer).restore()


def test_a_failed_write_raises_and_keeps_the_previous_snapshot(tmp_path, monkeypatch):
    model, optimizer = _model_and_optimizer()
    callback = snapshot.SnapshotCallback(str(tmp_path), model, optimizer)
    callback.on_epoch_end(0)
    callback.wait()

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(snapshot.os, "fsync", full_disk)
    callback.on_epoch_end(1)
    with pytest.raises(OSError, match="No space left"):
        callback.on_train_end()
    assert snapshot.SnapshotCallback(str(tmp_path), model, optimizer).restore()[0] == 1
    assert os.listdir(tmp_path) == [snapshot.FILE]  # no partial file left behind


def test_unconfirmed_metrics_are_replayed_once(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = tracking.Tracker(uri=uri, artifact_location=str(tmp_path / "artifacts"), experiment="e", system_metrics=False)
    run_id = tracker.start(params={}, tags={})
    tracker.log_metrics({"loss": 1.0}, step=0)  # the first epoch leaves at once
    tracker.log_metrics({"loss": 0.5}, step=1)  # buffered: within SEND_INTERVAL_S of the first
    waiting = tracker.unconfirmed()
    assert ("loss", 0.5) in {(k, v) for k, v, _, _ in waiting}
    # The process dies here: step 1 never reaches the store. A resumed attempt replays the
    # snapshot's list, twice even (two kills), and the store holds each metric once.
    tracker._buffer = []
    tracker.flush()
    resumed = tracking.Tracker(uri=uri, artifact_location=str(tmp_path / "artifacts"), experiment="e", system_metrics=False)
    resumed.start(params={}, tags={}, resume_run_id=run_id)
    resumed.replay([list(m) for m in waiting])
    resumed.replay([list(m) for m in waiting])
    resumed.end(tracking.FINISHED)
    history = MlflowClient(uri).get_metric_history(run_id, "loss")
    assert sorted((m.step, m.value) for m in history) == [(0, 1.0), (1, 0.5)]
    assert tracker.unconfirmed() == []


def test_every_seconds_writes_when_due_and_at_the_last_epoch(tmp_path, monkeypatch):
    now = [0.0]
    monkeypatch.setattr(snapshot, "_now", lambda: now[0])
    model, optimizer = _model_and_optimizer()
    callback = snapshot.SnapshotCallback(str(tmp_path), model, optimizer, every_seconds=10)
    callback.set_params({"epochs": 6})
    callback.on_train_begin()

    def epoch_end(epoch: int, at: float):
        now[0] = at
        callback.on_epoch_end(epoch)
        callback.wait()
        return callback.restore()[0] if (tmp_path / snapshot.FILE).exists() else None

    assert epoch_end(0, at=4.0) is None      # 4 s since training began
    assert epoch_end(1, at=11.0) == 2        # due
    assert epoch_end(2, at=15.0) == 2        # 4 s since the last one
    assert epoch_end(3, at=21.5) == 4        # due again
    model.stop_training = True               # early stopping made this the last epoch
    assert epoch_end(4, at=22.0) == 5
    model.stop_training = False
    assert epoch_end(5, at=22.5) == 6        # the last epoch
    callback.on_train_end()


def test_a_resumed_run_keeps_the_killed_attempts_value_for_a_step_it_logs_again(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = tracking.Tracker(uri=uri, artifact_location=str(tmp_path / "artifacts"), experiment="e", system_metrics=False)
    run_id = tracker.start(params={}, tags={})
    for step, value in enumerate([1.0, 0.8, 0.6]):
        tracker.log_metrics({"loss": value}, step=step)
    tracker.flush()  # then the process dies, after its last snapshot (epoch 1)
    resumed = tracking.Tracker(uri=uri, artifact_location=str(tmp_path / "artifacts"), experiment="e", system_metrics=False)
    resumed.start(params={}, tags={}, resume_run_id=run_id)
    for step, value in [(1, 0.81), (2, 0.61), (3, 0.4)]:  # epochs 2-4 retrained
        resumed.log_metrics({"loss": value, "val_loss": value}, step=step)
    resumed.end(tracking.FINISHED)
    client = MlflowClient(uri)
    assert sorted((m.step, m.value) for m in client.get_metric_history(run_id, "loss")) == [
        (0, 1.0), (1, 0.8), (2, 0.6), (3, 0.4)]
    # A key the killed attempt never logged is logged whole.
    assert sorted(m.step for m in client.get_metric_history(run_id, "val_loss")) == [1, 2, 3]


def _saved(tmp_path, model, optimizer) -> bytes:
    callback = snapshot.SnapshotCallback(str(tmp_path), model, optimizer)
    callback.on_epoch_end(0)
    callback.on_train_end()
    return (tmp_path / snapshot.FILE).read_bytes()


def test_an_edited_header_is_refused_the_checksum_covers_it(tmp_path):
    model, optimizer = _model_and_optimizer()
    data = _saved(tmp_path, model, optimizer)
    edited = data.replace(b'"epoch": 1', b'"epoch": 7', 1)
    assert edited != data
    (tmp_path / snapshot.FILE).write_bytes(edited)
    with pytest.raises(resume.ResumeError, match="damaged or truncated"):
        snapshot.SnapshotCallback(str(tmp_path), model, optimizer).restore()
    assert (tmp_path / snapshot.FILE).read_bytes() == edited


def test_variables_of_other_names_are_refused_even_with_the_same_shapes(tmp_path):
    model, optimizer = _model_and_optimizer()
    _saved(tmp_path, model, optimizer)
    other = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, name="hidden"), keras.layers.Dropout(0.5),
                              keras.layers.Dense(2)])
    other_optimizer = keras.optimizers.Adam()
    other_optimizer.build(other.trainable_variables)
    before = _state(other, other_optimizer)
    with pytest.raises(resume.ResumeError, match=r"hidden/kernel is sequential\S*/dense\S*/kernel in the checkpoint"):
        snapshot.SnapshotCallback(str(tmp_path), other, other_optimizer).restore()
    for a, b in zip(_state(other, other_optimizer), before, strict=True):  # nothing half-restored
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("edit, message", [
    ({"epoch": "two"}, r"header is malformed \(epoch missing"),
    ({"variables": [["x", "3x4", "float32"]]}, r"header is malformed \(variables missing"),
    ({"metrics": [["loss", "low", 0, 1]]}, r"header is malformed \(metrics missing"),
    ({"bytes": 10**12}, "the header says 1000000000000 bytes of variables"),
])
def test_a_malformed_header_with_a_valid_checksum_is_the_resume_error(tmp_path, edit, message):
    import json
    import zlib

    model, optimizer = _model_and_optimizer()
    data = _saved(tmp_path, model, optimizer)
    start = len(snapshot._MAGIC) + 8
    end = start + int.from_bytes(data[len(snapshot._MAGIC):start], "little")
    header = json.dumps({**json.loads(data[start:end]), **edit}).encode()
    body = snapshot._MAGIC + len(header).to_bytes(8, "little") + header + data[end:-4]
    written = body + zlib.crc32(body).to_bytes(4, "little")
    (tmp_path / snapshot.FILE).write_bytes(written)
    with pytest.raises(resume.ResumeError, match=message):
        snapshot.SnapshotCallback(str(tmp_path), model, optimizer).restore()
    assert (tmp_path / snapshot.FILE).read_bytes() == written


def test_a_snapshot_of_the_previous_format_is_named_as_such(tmp_path):
    import json

    header = json.dumps({"format": 2, "epoch": 1}).encode()
    (tmp_path / snapshot.FILE).write_bytes(snapshot._MAGIC + len(header).to_bytes(8, "little") + header + b"\0" * 8)
    model, optimizer = _model_and_optimizer()
    with pytest.raises(resume.ResumeError, match="format 2, this version reads 3"):
        snapshot.SnapshotCallback(str(tmp_path), model, optimizer).restore()


def test_the_folder_is_synced_after_the_rename(tmp_path, monkeypatch):
    """A rename is on disk only once its folder is fsynced: the last fsync of a write is the folder's."""
    import stat

    synced = []
    real_fsync = os.fsync

    def fsync(fd):
        synced.append(stat.S_ISDIR(os.fstat(fd).st_mode))
        real_fsync(fd)

    monkeypatch.setattr(snapshot.os, "fsync", fsync)
    model, optimizer = _model_and_optimizer()
    _saved(tmp_path, model, optimizer)
    assert synced == [False, True]  # the file, then (after the rename) its folder
