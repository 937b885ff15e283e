"""Nothing exposed: secrets never reach MLflow, the command line cannot instantiate arbitrary
Python, models load in Keras safe mode with no pickle, what the project starts binds 127.0.0.1,
and the dependency floors keep known-vulnerable releases out."""

from __future__ import annotations

import collections.abc
import contextlib
import importlib.metadata
import io
import re
import tomllib
import types
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from packaging.requirements import Requirement

from tests.conftest import REPO, tracking_uri
from trainer.tracking import secrets

ENV_SECRET = "s3cr3t-env-value-9731"
TYPED_SECRET = "typed-literal-4422"
CODE_DIRS = ("trainer", "models", "benchmarks", ".ci")


def _code_files():
    for folder in CODE_DIRS:
        yield from (REPO / folder).rglob("*.py")


# --- secrets -------------------------------------------------------------------------------------

def test_redaction_masks_secret_env_values_and_secret_named_keys():
    env = {"MY_API_TOKEN": ENV_SECRET, "DB_PASSWORD": "hunter22hunter", "SHORT_KEY": "abc", "HOME": "/root"}
    text = (f"uri: http://bob:hunter22hunter@host:5000\nnote: {ENV_SECRET}\napi_key: {TYPED_SECRET}\n"
            f"cmd: python -m trainer +model.api_key={TYPED_SECRET} width=8\n"
            "KeyboardInterrupt: received signal SIGTERM\nhome: /root\n")
    masked = secrets.redact_text(text, env)
    assert ENV_SECRET not in masked and TYPED_SECRET not in masked and "hunter22hunter" not in masked
    assert "KeyboardInterrupt: received signal SIGTERM" in masked  # not a secret-named key
    assert "home: /root" in masked and "width=8" in masked  # only secrets are masked
    assert secrets.redact_mapping({"model.api_key": "x", "model.width": 8, "note": f"a{ENV_SECRET}b"}, env) == {
        "model.api_key": "***", "model.width": 8, "note": "a***b"}


def test_secrets_are_found_while_another_thread_unsets_a_variable(monkeypatch):
    # MLflow's telemetry thread unsets _MLFLOW_TELEMETRY_SESSION_ID while the run logs its params:
    # the name is listed, then gone by the time its value is read.
    class Racing(collections.abc.Mapping):  # os.environ as that thread leaves it
        def __init__(self, data):
            self.data = dict(data)

        def __iter__(self):
            return iter(list(self.data))

        def __len__(self):
            return len(self.data)

        def __getitem__(self, name):
            if name == "GONE":
                del self.data[name]
                raise KeyError(name)
            return self.data[name]

    monkeypatch.setattr(secrets, "os", types.SimpleNamespace(environ=Racing({"GONE": "x", "MY_API_TOKEN": ENV_SECRET})))
    assert secrets.redact_text(f"note: {ENV_SECRET}") == "note: ***"


def test_a_run_logs_no_secret_in_params_tags_or_artifacts(cli, tmp_path):
    result = cli("model=mlp", "width=8", "epochs=1", "+model.note=${oc.env:MY_API_TOKEN}",
                 f"+model.api_key={TYPED_SECRET}", extra_env={"MY_API_TOKEN": ENV_SECRET})
    assert result.returncode == 0, result.stderr[-3000:]

    client = MlflowClient(tracking_uri(tmp_path))
    (run,) = client.search_runs([client.get_experiment_by_name("trainer").experiment_id])
    assert run.data.params["model.note"] == "***" and run.data.params["model.api_key"] == "***"
    assert "***" in run.data.tags["command"]  # the command line is kept, its secret is not
    for where, values in (("params", run.data.params), ("tags", run.data.tags)):
        for key, value in values.items():
            assert ENV_SECRET not in value and TYPED_SECRET not in value, f"{where}: {key}"

    artifacts = Path(client.download_artifacts(run.info.run_id, "", str(tmp_path / "downloaded")))
    files = [p for p in artifacts.rglob("*") if p.is_file()]
    assert any(p.name == "overrides.yaml" for p in files) and any(p.name == "config.yaml" for p in files)
    for path in files:
        data = path.read_bytes()
        assert ENV_SECRET.encode() not in data and TYPED_SECRET.encode() not in data, path
    # Models are stored as .keras plus code, never as a pickle.
    assert not [p for p in files if p.suffix in (".pkl", ".pickle", ".joblib", ".h5")]


# --- no arbitrary objects from the command line -------------------------------------------------

@pytest.mark.parametrize("override", ["+hydra.callbacks.x._target_=os.system", "+model._target_=os.system",
                                      "+optimizer.schedule={_target_:builtins.eval}"])
def test_target_overrides_are_rejected(override):
    from trainer.cli.command import preflight

    err = io.StringIO()
    with contextlib.redirect_stderr(err), pytest.raises(SystemExit) as exit_:
        preflight([override])
    assert exit_.value.code == 2
    assert "cannot be set to a _target_ from the command line" in err.getvalue()


def test_project_code_never_instantiates_from_config():
    for path in _code_files():
        text = path.read_text()
        assert "hydra.utils.instantiate" not in text and "instantiate(" not in text, path


# --- models: Keras safe mode, no pickle -----------------------------------------------------------

def test_model_loading_keeps_safe_mode_and_uses_no_pickle():
    for path in _code_files():
        text = path.read_text()
        assert not re.search(r"safe_mode\s*=\s*False", text), path
        assert not re.search(r"^\s*(import|from)\s+(c?pickle|cloudpickle|dill)\b", text, re.M), path
        assert "enable_unsafe_deserialization" not in text, path


def test_a_model_file_with_python_code_is_refused(tmp_path):
    import keras

    from models import saving

    inputs = keras.Input((3,))
    outputs = keras.layers.Lambda(lambda x: x * 2)(inputs)  # arbitrary Python, stored as bytecode
    path = tmp_path / "lambda.keras"
    keras.Model(inputs, outputs).save(path)
    with pytest.raises(ValueError, match="safe_mode"):
        saving.load(path)


# --- network exposure ----------------------------------------------------------------------------

def test_what_the_project_starts_or_prints_binds_localhost():
    for path in _code_files():
        text = path.read_text()
        assert "0.0.0.0" not in text, path
        for command in re.findall(r"mlflow (?:ui|server) --[^\n`\"]*", text):
            assert "--host 127.0.0.1" in command, (path, command)
        for call in re.findall(r"\[[^\]]*\"mlflow\", \"(?:ui|server)\"[^\]]*\]", text, re.S):
            assert '"127.0.0.1"' in call, (path, call)
    # The docs' `mlflow ui` lines (README.md and docs/*.md) are what users copy; a team server on
    # another interface is the user's explicit choice (docs/teams.md), so only the UI is held to
    # localhost there.
    docs = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    for doc in docs:
        for command in re.findall(r"mlflow ui\b[^\n`]*", doc.read_text()):
            if "--backend-store-uri" in command:
                assert "--host 127.0.0.1" in command, (doc.name, command)


def test_the_printed_review_command_binds_localhost():
    from trainer.tracking.tracker import Tracker

    assert "--host 127.0.0.1" in Tracker.ui_command(type("T", (), {"uri": "sqlite:///x.db"})())


# --- dependency floors ---------------------------------------------------------------------------

# package -> (the last vulnerable release, the advisory it is vulnerable to)
VULNERABLE = {
    "keras": ("3.13.2", "GHSA-hqp4-2352-xf5r (path traversal in archive extraction), CVE-2026-1462 (safe_mode bypass)"),
    "mlflow": ("3.9.0", "CVE-2026-2614 / GHSA-42h5-h8qh-vv9v (unauthenticated file read)"),
    "pillow": ("10.2.0", "CVE-2024-28219 (buffer overflow)"),
    "protobuf": ("6.33.4", "CVE-2026-0994 (recursion-limit bypass DoS)"),
    "scikit-learn": ("1.4.2", "CVE-2024-5206 (TfidfVectorizer keeps sensitive tokens)"),
}


def test_dependency_floors_exclude_known_vulnerable_versions():
    declared = {}
    for line in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]:
        requirement = Requirement(line)
        declared[requirement.name.lower()] = requirement.specifier
    for package, (vulnerable, advisory) in VULNERABLE.items():
        assert package in declared, f"{package} needs a floor ({advisory})"
        assert not declared[package].contains(vulnerable, prereleases=True), (package, advisory)
        installed = importlib.metadata.version(package)
        assert declared[package].contains(installed, prereleases=True), (package, installed)
