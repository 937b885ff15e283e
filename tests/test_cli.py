"""The real command line in subprocesses: the README's command, a sweep, and bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import tracking_uri


def _runs(root):
    client = MlflowClient(tracking_uri(root))
    experiment = client.get_experiment_by_name("trainer")
    return client, ([] if experiment is None else client.search_runs(experiment.experiment_id))


def test_readme_command_trains_dynamic_depth_5(cli, tmp_path):
    import mlflow

    result = cli("model=dynamic", "depth=5", "epochs=1")
    assert result.returncode == 0, result.stderr[-3000:]
    client, runs = _runs(tmp_path)
    (run,) = runs
    assert run.info.status == "FINISHED"
    assert f"run {run.info.run_id} finished" in result.stdout
    assert "mlflow ui --backend-store-uri" in result.stdout

    mlflow.set_tracking_uri(tracking_uri(tmp_path))
    (logged,) = mlflow.search_logged_models(experiment_ids=[run.info.experiment_id], output_format="list")
    model = mlflow.keras.load_model(logged.model_uri)
    dense = [layer for layer in model.layers if layer.__class__.__name__ == "Dense"]
    assert len(dense) == 6  # 5 hidden layers + the classifier
    assert (Path(tmp_path) / "outputs" / "runs").is_dir()


def test_multirun_runs_one_job_per_value(cli, tmp_path):
    result = cli("-m", "model=dynamic", "depth=1,3,5", "epochs=1")
    assert result.returncode == 0, result.stderr[-3000:]
    _, runs = _runs(tmp_path)
    jobs = [r for r in runs if r.data.tags.get("sweep.role") != "parent"]  # the sweep's own run (tests/test_sweeps.py)
    assert sorted(r.data.params["model.knobs.depth"] for r in jobs) == ["1", "3", "5"]
    assert {r.info.status for r in runs} == {"FINISHED"}


@pytest.mark.parametrize(
    "args, expected",
    [
        (["model=resnt"], "model must be one of cnn, conditional, dynamic, mlp, resnet"),
        (["model=dynamic", "depth=0"], "depth must be an integer >= 1. Received: depth=0"),
        (["model=dynamic", "depth=-2"], "depth must be an integer >= 1. Received: depth=-2"),
        (["model=dynamic", "depth=abc"], "depth must be an integer >= 1. Received: depth=abc"),
        (["model=mlp", "depth=5"], "depth is not a knob of model 'mlp'; its knobs are: width, activation, l2"),
        (["data=nope"], "data must be one of cifar10, digits, fashion_mnist, image_folder, mnist, tfds. Received: data=nope"),
        (["-m", "model=dynamic", "depth=1,0"], "depth must be an integer >= 1. Received: depth=0"),
        (["colour=red"], "colour is not a config key"),
    ],
)
def test_bad_input_is_one_line_and_no_run(cli, tmp_path, args, expected):
    result = cli(*args)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [f"error: {lines[0][7:]}"] and expected in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not (Path(tmp_path) / "outputs" / "mlflow.db").exists()


def test_a_conf_and_models_folder_in_the_working_directory_does_not_shadow_ours(cli, tmp_path):
    # The usual layout of a user's own Hydra project; `python -m` puts the cwd first on sys.path.
    (tmp_path / "conf").mkdir()
    (tmp_path / "models").mkdir()
    result = cli("model=dynamic", "depth=0")
    assert result.returncode == 2
    assert result.stderr.strip() == "error: depth must be an integer >= 1. Received: depth=0"


def test_diverging_training_ends_in_one_line_and_a_failed_run(cli, tmp_path):
    # A `${hydra:...}` interpolation in the run folder is Hydra's own and resolves as Hydra resolves it.
    result = cli("optimizer=sgd", "optimizer.learning_rate=1e38", "epochs=2", "resume.enabled=false",
                 "hydra.run.dir=${hydra:runtime.cwd}/run_here")
    assert result.returncode == 1
    assert (Path(tmp_path) / "run_here" / ".hydra" / "config.yaml").is_file()
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: training stopped: loss became nan at step ") and "recorded FAILED" in last
    assert "Traceback" not in result.stderr
    _, runs = _runs(tmp_path)
    assert [r.info.status for r in runs] == ["FAILED"]
