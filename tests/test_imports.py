"""The TensorFlow boundary, checked statically: pyproject.toml's import-linter contract says the
fast path (command line, config, validation, error reporting) never imports TensorFlow, Keras or
MLflow, function-level imports included. tests/test_bad_input_table.py checks the same at run time
for the inputs it tries; this covers every import, tried or not."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

# The console script that the test extra installs beside this interpreter (README's test command).
LINT = [str(Path(sys.executable).parent / "lint-imports"), "--no-logo", "--no-cache"]


def _lint(cwd, **env) -> subprocess.CompletedProcess:
    return subprocess.run(LINT, cwd=cwd, env={**os.environ, **env}, capture_output=True, text=True, timeout=300)


def test_the_fast_path_imports_no_tensorflow_keras_or_mlflow():
    result = _lint(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


def test_the_contract_fails_when_a_fast_path_module_imports_keras(tmp_path):
    """The contract bites: a copy of the project whose value checks import Keras in a function
    (where only a call would load it) breaks it, and the report names the chain."""
    for name in ("trainer", "models", "conf"):
        shutil.copytree(REPO / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    checks = tmp_path / "trainer" / "config" / "checks.py"
    checks.write_text(checks.read_text() + "\n\ndef _late():\n    import keras  # noqa: F401\n")
    result = _lint(tmp_path, PYTHONPATH=str(tmp_path))
    assert result.returncode != 0, result.stdout
    assert "trainer.config.checks is not allowed to import keras" in result.stdout
