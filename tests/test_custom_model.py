"""The "add your own model" recipe of docs/models-and-serving.md, followed literally: one Python
file and one YAML file outside this package, trained through the real command line, logged to
MLflow, served from a fresh process that has never seen the user's folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import mlflow
import pytest
from mlflow.tracking import MlflowClient

import models
from models import saving
from tests.conftest import tracking_uri

MODEL_PY = textwrap.dedent(
    '''
    """tiny: Flatten -> Dense(units) -> classifier."""
    from dataclasses import dataclass

    import models
    from trainer.config import checks


    @models.register("tiny")
    @dataclass
    class Tiny(models.Definition):
        """Args:
            units: units of the hidden layer; an integer >= 1.
            activation: its activation; a Keras activation name.
        """

        units: int
        activation: str

        def __post_init__(self):
            self.units = checks.int_at_least("units", self.units, 1)

        def make_blocks(self, blocks, num_classes):
            return [blocks.flatten(), blocks.dense(self.units, self.activation, name="hidden"),
                    blocks.classifier(num_classes)]
    '''
)

MODEL_YAML = textwrap.dedent(
    """
    # @package _global_
    model:
      name: tiny
      variant: functional
      module: my_models.tiny
    units: 16
    activation: relu
    """
)

SERVE = textwrap.dedent(
    """
    import json, sys
    import mlflow
    mlflow.set_tracking_uri(sys.argv[1])
    model = mlflow.pyfunc.load_model(sys.argv[2])
    probabilities = model.predict(model.input_example)
    print(json.dumps({"shape": list(probabilities.shape), "sums": probabilities.sum(axis=1).tolist(),
                      "tiny_from": sys.modules["my_models.tiny"].__file__}))
    """
)


@pytest.fixture
def user_project(tmp_path):
    """tmp_path/project/my_models/tiny.py and tmp_path/project/my_conf/model/tiny.yaml (not conf/:
    a folder named conf on the path shadows this project's own `conf` config package)."""
    project = tmp_path / "project"
    (project / "my_models").mkdir(parents=True)
    (project / "my_models" / "__init__.py").write_text("")
    (project / "my_models" / "tiny.py").write_text(MODEL_PY)
    (project / "my_conf" / "model").mkdir(parents=True)
    (project / "my_conf" / "model" / "tiny.yaml").write_text(MODEL_YAML)
    return project


def test_own_model_trains_through_the_cli_and_serves_from_a_fresh_process(cli, tmp_path, user_project):
    done = cli("--config-dir", str(user_project / "my_conf"), "model=tiny", "model.variant=subclassed", "units=12",
               "epochs=1", extra_env={"PYTHONPATH": str(user_project)})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "finished" in done.stdout

    client = MlflowClient(tracking_uri(tmp_path))
    (run,) = client.search_runs(client.get_experiment_by_name("trainer").experiment_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["model"] == "tiny" and run.data.tags["variant"] == "subclassed"
    assert run.data.params["model.knobs.units"] == "12" and run.data.params["model.module"] == "my_models.tiny"
    summary = client.download_artifacts(run.info.run_id, "model_summary.txt", str(tmp_path))
    assert "hidden (Dense)" in open(summary).read() and "unbuilt" not in open(summary).read()

    (output,) = run.outputs.model_outputs
    model_uri = f"models:/{output.model_id}"
    mlflow.set_tracking_uri(tracking_uri(tmp_path))
    model_dir = mlflow.artifacts.download_artifacts(model_uri, dst_path=str(tmp_path / "model"))
    assert os.path.exists(os.path.join(model_dir, "code", "my_models", "tiny.py"))

    # This pytest process never imported my_models: loading the .keras file must say so in one line.
    with pytest.raises(models.RegistryError) as err:
        saving.load(os.path.join(model_dir, "artifacts", "model.keras"))
    message = str(err.value)
    assert "\n" not in message
    assert "holds model class Tiny ('trainer>tiny', from module my_models.tiny)" in message
    assert "import my_models.tiny before loading" in message and "Received: class=trainer>tiny" in message

    # A fresh process without the user's folder on its path: the model ships its own code.
    (tmp_path / "serve.py").write_text(SERVE)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    served = subprocess.run([sys.executable, str(tmp_path / "serve.py"), tracking_uri(tmp_path), model_uri],
                            cwd=tmp_path, env={**env, "TF_CPP_MIN_LOG_LEVEL": "2"}, capture_output=True, text=True,
                            timeout=600)
    assert served.returncode == 0, served.stderr[-3000:]
    result = json.loads(served.stdout.strip().splitlines()[-1])
    assert result["shape"][1] == 10 and all(abs(s - 1.0) < 1e-5 for s in result["sums"])
    assert result["tiny_from"].startswith(str(tmp_path)) and f"{os.sep}code{os.sep}my_models" in result["tiny_from"]
    assert not result["tiny_from"].startswith(str(user_project))


def test_own_model_bad_knob_fails_in_one_line_before_any_run(cli, tmp_path, user_project):
    done = cli("--config-dir", str(user_project / "my_conf"), "model=tiny", "units=0",
               extra_env={"PYTHONPATH": str(user_project)})
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == "error: units must be an integer >= 1. Received: units=0"
    assert "Traceback" not in done.stderr and "tensorflow" not in done.stderr.lower()
    # The model's own rule ran with the config's validation, before the store was touched.
    assert not os.path.exists(tmp_path / "outputs" / "mlflow.db")


def test_own_model_module_not_on_the_path_fails_before_tensorflow(cli, user_project):
    done = cli("--config-dir", str(user_project / "my_conf"), "model=tiny")  # no PYTHONPATH
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        "error: model.module must be an importable Python module (run from the folder that holds it or put"
        " that folder on PYTHONPATH). Received: model.module=my_models.tiny")
    assert "tensorflow" not in done.stderr.lower()
