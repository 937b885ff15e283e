"""strategy=multi_worker for real: two worker processes on 127.0.0.1, each started with its own
TF_CONFIG and the same command, as on two machines. Worker 0 is the chief: it alone records the run
in MLflow (a SQLite store in tmp_path); worker 1 trains in lockstep and records nothing.

Both loops run at once (four processes), so the test costs one cluster's start-up, not two.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import tracking_uri
from trainer.config.validate import validate

ARGS = ("strategy=multi_worker", "model=mlp", "width=16", "epochs=1", "batch_size=64")
LOOPS = ("fit", "custom")
# A worker left waiting on a collective op (its peer gone) would block forever: fail instead.
TIMEOUT = 300


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _start_cluster(root, tfds_dir, *args) -> list[tuple[subprocess.Popen, object, object]]:
    """Both workers of a two-worker cluster, output to files (a full pipe would stall a worker)."""
    addresses = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    root.mkdir(exist_ok=True)  # exists when a killed cluster's command is run again
    workers = []
    for index in range(2):
        tf_config = {"cluster": {"worker": addresses}, "task": {"type": "worker", "index": index}}
        env = {**os.environ, "TRAINER_ROOT": str(root), "TF_CPP_MIN_LOG_LEVEL": "2", "TF_CONFIG": json.dumps(tf_config)}
        stdout, stderr = open(root / f"worker{index}.out", "w+"), open(root / f"worker{index}.err", "w+")
        process = subprocess.Popen([sys.executable, "-m", "trainer", *args, f"data.data_dir={tfds_dir}"],
                                   cwd=root, env=env, stdout=stdout, stderr=stderr, text=True)
        workers.append((process, stdout, stderr))
    return workers


def _finish(workers, deadline: float) -> list[tuple[int, str, str]]:
    """(exit code, stdout, stderr) of each worker; a worker still running at the deadline is killed
    and fails the test with both workers' output."""
    results = []
    for process, stdout, stderr in workers:
        try:
            code = process.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            for other, _, _ in workers:
                other.kill()
                other.wait()
            code = None
        results.append((code, stdout, stderr))
    outputs = []
    for code, stdout, stderr in results:
        stdout.seek(0)
        stderr.seek(0)
        outputs.append((code, stdout.read(), stderr.read()))
        stdout.close()
        stderr.close()
    if any(code is None for code, _, _ in outputs):
        pytest.fail(f"a worker was still running after {TIMEOUT} s (a hang):\n"
                    + "\n".join(f"--- worker {i}\n{out[-2000:]}\n{err[-3000:]}" for i, (_, out, err) in enumerate(outputs)))
    return outputs


def _metrics(stdout: str) -> dict:
    (line,) = [line for line in stdout.splitlines() if line.strip().startswith("metrics:")]
    return {k: float(v) for k, v in re.findall(r"(\w+)=([-\d.]+)", line)}


@pytest.fixture(scope="module")
def clusters(tmp_path_factory, tfds_dir):
    """Train both loops on two-worker clusters at once; {loop: (root, [(code, stdout, stderr)] by worker)}."""
    base = tmp_path_factory.mktemp("multi_worker")
    _prepare_digits(base, tfds_dir)  # once, here: two workers preparing it together would race
    deadline = time.monotonic() + TIMEOUT
    started = {loop: _start_cluster(base / loop, tfds_dir, *ARGS, f"loop={loop}") for loop in LOOPS}
    return {loop: (base / loop, _finish(workers, deadline)) for loop, workers in started.items()}


def _prepare_digits(base, tfds_dir):
    from trainer.data import load

    settings = validate(_compose(base, tfds_dir))
    return load(**settings["data"], batch_size=64, seed=settings["seed"])


def _compose(base, tfds_dir):
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    # The single-device config: validating strategy=multi_worker would need TF_CONFIG here too.
    overrides = [f"paths.root_dir={base}", f"data.data_dir={tfds_dir}", *ARGS[1:]]
    GlobalHydra.instance().clear()
    with initialize_config_module("conf", version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    GlobalHydra.instance().clear()
    return cfg


@pytest.mark.parametrize("loop", LOOPS)
def test_both_workers_finish_with_the_same_metrics(clusters, loop):
    _, outputs = clusters[loop]
    for index, (code, stdout, stderr) in enumerate(outputs):
        assert code == 0, f"worker {index} exited {code}:\n{stdout[-2000:]}\n{stderr[-4000:]}"
    (_, chief, _), (_, worker, _) = outputs
    # Every metric is reduced over both workers, so both report the one synchronous training.
    assert _metrics(chief) == _metrics(worker)
    assert re.search(r"^run [0-9a-f]{32} finished$", chief, re.M)
    assert not re.search(r"^run [0-9a-f]{32} finished$", worker, re.M)
    assert "run finished on this worker (worker 0 records it)" in worker


@pytest.mark.parametrize("loop", LOOPS)
def test_chief_alone_records_one_finished_run(clusters, loop):
    root, outputs = clusters[loop]
    client = MlflowClient(tracking_uri(root))
    (run,) = client.search_runs(client.get_experiment_by_name("trainer").experiment_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["strategy.name"] == "multi_worker"
    printed = _metrics(outputs[0][1])
    for key in ("loss", "val_loss", "test_loss", "test_accuracy"):
        assert run.data.metrics[key] == pytest.approx(printed[key], abs=1e-4), key
    # The chief's evaluation report is computed after worker 1 has left: no collective op in it.
    plots = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert {"plots/confusion_matrix.png", "plots/training_curves.png"} <= plots


@pytest.mark.parametrize("loop", LOOPS)
def test_chief_model_has_the_weights_both_workers_evaluated_with(clusters, loop, tfds_dir):
    """Each worker evaluates the whole test split with its own copy of the weights (no collective
    op) and both print the same numbers (the test above); the chief's saved model, run over the
    whole split here, gives the numbers the chief logged, so it holds the weights both evaluated."""
    import mlflow

    root, _ = clusters[loop]
    client = MlflowClient(tracking_uri(root))
    (run,) = client.search_runs(client.get_experiment_by_name("trainer").experiment_id)
    mlflow.set_tracking_uri(tracking_uri(root))
    (logged,) = mlflow.search_logged_models(experiment_ids=[run.info.experiment_id], output_format="list")
    model = mlflow.keras.load_model(logged.model_uri)
    data = _prepare_digits(root, tfds_dir)
    probabilities, labels = [], []
    for x, y in data.test:
        probabilities.append(np.asarray(model(x, training=False)))
        labels.append(np.asarray(y))
    probabilities, labels = np.concatenate(probabilities), np.concatenate(labels)
    # The run's loss: cross-entropy against targets smoothed by its label_smoothing, written out
    # here rather than taken from models/losses.py, so this checks that too.
    smoothing, classes = float(run.data.params["label_smoothing"]), probabilities.shape[-1]
    targets = np.full_like(probabilities, smoothing / classes)
    targets[np.arange(len(labels)), labels] += 1.0 - smoothing
    loss = float(np.mean(-np.sum(targets * np.log(np.clip(probabilities, 1e-7, 1.0)), axis=-1)))
    accuracy = float(np.mean(probabilities.argmax(axis=-1) == labels))
    assert accuracy == pytest.approx(run.data.metrics["test_accuracy"], abs=1e-6)
    assert loss == pytest.approx(run.data.metrics["test_loss"], abs=1e-4)


def test_multirun_is_rejected_in_one_line(cli):
    # Each worker joins its cluster once per process, and each would open its own sweep run.
    tf_config = {"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}, "task": {"type": "worker", "index": 0}}
    result = cli("-m", "strategy=multi_worker", "loop=fit,custom", extra_env={"TF_CONFIG": json.dumps(tf_config)})
    assert result.returncode == 2
    assert result.stderr.strip() == ("error: strategy must be default or mirrored in a multirun (-m): a multi_worker"
                                     " cluster runs one job, started on every worker with the same command."
                                     " Received: strategy=multi_worker")


def test_killed_cluster_resumes_on_every_worker(tmp_path, tfds_dir):
    """Both workers SIGKILLed after the chief's first checkpoint; the same command on both then
    continues from it on both (worker 1 reads the chief's folder), into the same MLflow run."""
    import signal

    from trainer.run import snapshot

    args = (*ARGS[:-2], "epochs=4", "batch_size=16", "loop=fit", "resume.every_seconds=0")
    _prepare_digits(tmp_path, tfds_dir)
    root = tmp_path / "cluster"
    workers = _start_cluster(root, tfds_dir, *args)
    deadline = time.monotonic() + TIMEOUT
    while not list((root / "outputs" / "checkpoints").glob(f"*/{snapshot.FILE}")):
        assert all(p.poll() is None for p, _, _ in workers), "a worker ended before the first checkpoint"
        assert time.monotonic() < deadline, f"no checkpoint after {TIMEOUT} s"
        time.sleep(0.02)
    for process, _, _ in workers:
        process.send_signal(signal.SIGKILL)
    _finish(workers, deadline)

    outputs = _finish(_start_cluster(root, tfds_dir, *args), time.monotonic() + TIMEOUT)
    for index, (code, stdout, stderr) in enumerate(outputs):
        assert code == 0, f"worker {index} exited {code}:\n{stdout[-2000:]}\n{stderr[-4000:]}"
        assert "Epoch 1/4" not in stdout and "Epoch 4/4" in stdout, f"worker {index} did not resume"
    assert _metrics(outputs[0][1]) == _metrics(outputs[1][1])
    client = MlflowClient(tracking_uri(root))
    (run,) = client.search_runs(client.get_experiment_by_name("trainer").experiment_id)
    assert run.info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "loss")] == [0, 1, 2, 3]
