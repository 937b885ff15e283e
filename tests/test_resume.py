"""Resume: a SIGKILLed run, rerun with the same command, continues in the same MLflow run from
its last completed epoch and ends with the weights of an uninterrupted run; a corrupt
checkpoint is one clear error and is left untouched."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import tracking_uri
from trainer.run import snapshot
from trainer.train import train

# Dropout on, so the layers' RNG state must survive the kill too; small batches so that an
# epoch lasts long enough to kill the process between two checkpoints; a checkpoint every epoch.
ARGS = ("model=conditional", "width=16", "epochs=3", "batch_size=16", "deterministic=true", "resume.every_seconds=0")


def _command(root: Path, tfds_dir: str, loop: str) -> dict:
    env = {**os.environ, "TRAINER_ROOT": str(root), "TF_CPP_MIN_LOG_LEVEL": "2"}
    return {"args": [sys.executable, "-m", "trainer", *ARGS, f"loop={loop}", f"data.data_dir={tfds_dir}"],
            "cwd": root, "env": env}


def _kill_after_first_checkpoint(command: dict, checkpoints: Path, marker: str) -> None:
    with open(command["cwd"] / "killed.log", "w") as log:
        process = subprocess.Popen(**command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 300
        while not list(checkpoints.glob(f"*/{marker}")):
            assert process.poll() is None, (command["cwd"] / "killed.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "no checkpoint after 300 s"
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait()


def _only_run(root):
    client = MlflowClient(tracking_uri(root))
    (run,) = client.search_runs(client.get_experiment_by_name("trainer").experiment_id)
    return client, run


def _logged_weights(root, run) -> list:
    mlflow.set_tracking_uri(tracking_uri(root))
    (logged,) = mlflow.search_logged_models(experiment_ids=[run.info.experiment_id], output_format="list")
    return mlflow.keras.load_model(logged.model_uri).get_weights()


@pytest.mark.parametrize("loop", ["fit", "custom"])
def test_killed_run_resumes_into_the_same_run_and_weights(make_cfg, tmp_path, tfds_dir, loop):
    root = tmp_path / "killed"
    root.mkdir()
    command = _command(root, tfds_dir, loop)
    checkpoints = root / "outputs" / "checkpoints"
    _kill_after_first_checkpoint(command, checkpoints, snapshot.FILE)
    client, killed = _only_run(root)
    assert killed.info.status == "RUNNING"  # SIGKILL gives no chance to end it

    rerun = subprocess.run(**command, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "Epoch 1/3" not in rerun.stdout and "Epoch 3/3" in rerun.stdout  # continued, not restarted
    client, resumed = _only_run(root)
    assert resumed.info.run_id == killed.info.run_id and resumed.info.status == "FINISHED"
    assert resumed.info.run_name == killed.info.run_name
    assert [m.step for m in client.get_metric_history(resumed.info.run_id, "loss")] == [0, 1, 2]
    assert not list(checkpoints.iterdir())  # finished: the next identical command starts afresh

    train(make_cfg(*ARGS, f"loop={loop}"))  # the uninterrupted reference, in tmp_path's own store
    _, reference = _only_run(tmp_path)
    for key in ("loss", "val_loss", "test_loss"):
        assert resumed.data.metrics[key] == pytest.approx(reference.data.metrics[key], abs=1e-6), key
    for a, b in zip(_logged_weights(root, resumed), _logged_weights(tmp_path, reference), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("loop", ["fit", "custom"])
def test_corrupt_checkpoint_is_one_clear_error_and_left_untouched(make_cfg, tmp_path, loop):
    from trainer.run import resume
    from trainer.config.validate import validate

    cfg = make_cfg("model=mlp", "width=8", f"loop={loop}")
    directory = Path(resume.plan(validate(cfg)).directory)
    directory.mkdir(parents=True)
    (directory / snapshot.FILE).write_bytes(b"not a checkpoint")

    with pytest.raises(resume.ResumeError, match="cannot resume from the checkpoint in .* It was left untouched"):
        train(cfg)
    assert (directory / snapshot.FILE).read_bytes() == b"not a checkpoint"
    _, run = _only_run(tmp_path)
    assert run.info.status == "FAILED"


def test_bad_run_record_fails_before_any_run(make_cfg, tmp_path):
    from trainer.run import resume
    from trainer.config.validate import validate

    cfg = make_cfg("model=mlp", "width=8")
    directory = Path(resume.plan(validate(cfg)).directory)
    directory.mkdir(parents=True)
    (directory / "run.json").write_text("{truncated")
    with pytest.raises(resume.ResumeError, match="JSONDecodeError"):
        train(cfg)
    assert (directory / "run.json").read_text() == "{truncated"
    assert not (tmp_path / "outputs" / "mlflow.db").exists() or not MlflowClient(tracking_uri(tmp_path)).search_runs(
        [e.experiment_id for e in MlflowClient(tracking_uri(tmp_path)).search_experiments()])


def test_checkpoint_folder_is_the_same_for_the_same_command(make_cfg):
    from trainer.run import resume
    from trainer.config.validate import validate

    first = validate(make_cfg("model=mlp", "width=8"))
    again = validate(make_cfg("model=mlp", "width=8", "callbacks.progress=bar", "resume.every_seconds=5"))
    other = validate(make_cfg("model=mlp", "width=16"))
    assert resume.identity(first) == resume.identity(again) != resume.identity(other)
    assert resume.plan({**first, "resume": {**first["resume"], "dir": "/somewhere"}}).directory == "/somewhere"
    assert not resume.plan({**first, "resume": {**first["resume"], "enabled": False}}).enabled


def test_a_run_killed_before_its_first_checkpoint_retrains_in_the_same_run_one_value_per_step(
        make_cfg, tmp_path, monkeypatch):
    """With resume.every_seconds longer than the run, nothing is checkpointed before the kill: the
    rerun trains from the start, in the same MLflow run, and the steps the killed attempt logged keep
    its values instead of getting a second one (per-epoch metrics and the global step/* ones)."""
    import keras

    from trainer.loops import callbacks as callbacks_lib

    args = ("model=mlp", "width=8", "epochs=3", "resume.every_seconds=3600", "tracking.log_every_n_steps=7")

    class KillInEpoch3(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 2:
                raise KeyboardInterrupt

    real_build = callbacks_lib.build
    monkeypatch.setattr(callbacks_lib, "build", lambda *a, **k: [KillInEpoch3(), *real_build(*a, **k)])
    with pytest.raises(KeyboardInterrupt):
        train(make_cfg(*args))
    client, killed = _only_run(tmp_path)
    assert killed.info.status == "KILLED"
    (folder,) = (tmp_path / "outputs" / "checkpoints").iterdir()
    assert not (folder / snapshot.FILE).exists()  # the kill came before the first checkpoint was due
    first = {m.step: m.value for m in client.get_metric_history(killed.info.run_id, "loss")}
    assert sorted(first) == [0, 1]
    cpu = "system/cpu_utilization_percentage"
    killed_samples = len(client.get_metric_history(killed.info.run_id, cpu))
    assert killed_samples >= 1  # a KILLED run's sampling stopped with a last sample

    monkeypatch.setattr(callbacks_lib, "build", real_build)
    train(make_cfg(*args))
    client, resumed = _only_run(tmp_path)
    assert resumed.info.run_id == killed.info.run_id and resumed.info.status == "FINISHED"
    history = client.get_metric_history(resumed.info.run_id, "loss")
    assert sorted(m.step for m in history) == [0, 1, 2]
    assert {m.step: m.value for m in history if m.step < 2} == first
    steps = sorted(m.step for m in client.get_metric_history(resumed.info.run_id, "step/loss"))
    assert len(steps) > 3 and steps == list(range(7, 7 * len(steps) + 1, 7))  # global steps, each once
    # The resumed attempt's machine samples continue after the killed attempt's, one per step.
    samples = sorted(m.step for m in client.get_metric_history(resumed.info.run_id, cpu))
    assert samples == list(range(len(samples))) and len(samples) > killed_samples


def test_the_same_command_while_it_runs_is_refused_in_one_line_and_touches_nothing(make_cfg, tmp_path):
    from trainer.run import resume
    from trainer.config.validate import validate
    from trainer.errors import ConfigError

    cfg = make_cfg("model=mlp", "width=8", "epochs=1")
    running = resume.plan(validate(cfg), lock=True)  # what the first process holds while it trains
    try:
        with pytest.raises(ConfigError) as refused:
            train(cfg)
        message = str(refused.value)
        assert message.startswith(f"pid {os.getpid()} on ") and "\n" not in message
        assert f"is running this same command and holds its resume checkpoint folder {running.directory}" in message
        assert message.endswith("Received: resume.dir=null")
        client = MlflowClient(tracking_uri(tmp_path))
        assert not client.search_runs([e.experiment_id for e in client.search_experiments()])  # no run opened
    finally:
        running.release()
    assert not Path(running.directory).exists()  # it held nothing else: no folder is left behind
    train(cfg)  # released: the command runs
    assert _only_run(tmp_path)[1].info.status == "FINISHED"


def test_a_finished_run_removes_only_what_trainer_made(make_cfg, tmp_path):
    """The files trainer wrote go; the folder goes only if trainer made it (and nothing else is in it)."""
    from trainer.run import resume
    from trainer.config.validate import validate

    settings = validate(make_cfg("model=mlp", "width=8"))
    existing, new = tmp_path / "existing", tmp_path / "new" / "checkpoints"
    existing.mkdir()
    for folder in (existing, new):
        with resume.plan({**settings, "resume": {**settings["resume"], "dir": str(folder)}}, lock=True) as held:
            held.record_run("0123", chief=True)
            (folder / snapshot.FILE).write_bytes(b"state")
            held.finish(chief=True)
    assert existing.is_dir() and not list(existing.iterdir())  # the user's folder, as it was
    assert not new.exists() and (tmp_path / "new").is_dir()


def test_only_the_chief_writes_the_resume_folder(make_cfg):
    """A cluster's other workers share the chief's folder: they neither record the run nor finish it."""
    from trainer.run import resume
    from trainer.config.validate import validate

    settings = validate(make_cfg("model=mlp", "width=8"))
    with resume.plan(settings, lock=True) as planned:
        record = Path(planned.directory) / resume.RECORD
        planned.record_run("0123", chief=False)
        assert not record.exists()
        planned.record_run("0123", chief=True)
        planned.finish(chief=False)
        assert record.exists()
        planned.finish(chief=True)
        assert not record.exists()
    assert not Path(planned.directory).exists()
    off = resume.plan({**settings, "resume": {**settings["resume"], "enabled": False}})
    assert off.restore(None, None, None, None, chief=True) == (None, 0)  # nothing built is touched


def test_a_run_killed_after_its_last_epoch_reports_that_epochs_values_when_resumed(make_cfg, tmp_path, monkeypatch):
    """Killed while logging the model, after the last epoch's snapshot: the rerun trains no epoch,
    and still returns (and a sweep ranks by) the last epoch's values, as the first attempt logged them."""
    from trainer.tracking import tracker as tracking

    args = ("model=mlp", "width=8", "epochs=2")
    real_log_model = tracking.Tracker.log_model

    def killed_while_logging(self, *a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(tracking.Tracker, "log_model", killed_while_logging)
    with pytest.raises(KeyboardInterrupt):
        train(make_cfg(*args))
    client, killed = _only_run(tmp_path)
    assert killed.info.status == "KILLED"
    logged = {key: client.get_metric_history(killed.info.run_id, key)[-1] for key in ("val_accuracy", "loss")}
    assert {m.step for m in logged.values()} == {1}  # the second epoch's

    monkeypatch.setattr(tracking.Tracker, "log_model", real_log_model)
    final = train(make_cfg(*args))
    client, resumed = _only_run(tmp_path)
    assert resumed.info.run_id == killed.info.run_id and resumed.info.status == "FINISHED"
    assert final["val_accuracy"] == pytest.approx(logged["val_accuracy"].value)
    assert final["loss"] == pytest.approx(logged["loss"].value)
    assert "test_accuracy" in final
