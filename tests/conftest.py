"""Shared fixtures: compose the real Hydra config once per test, shrunk to seconds, with every
output (TFDS data, MLflow store, run folders) inside pytest's tmp dirs. No network is used."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict

from trainer import resolvers

resolvers.register()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def tfds_dir(tmp_path_factory) -> str:
    """One TFDS data dir per session: digits is prepared into it once, then reused."""
    return str(tmp_path_factory.mktemp("tensorflow_datasets"))


@pytest.fixture
def make_cfg(tmp_path, tfds_dir):
    """make_cfg("model=dynamic", "depth=2") -> the composed config of that command line,
    shrunk (1 epoch), writing into tmp_path, with HydraConfig set as under `python -m trainer`."""

    def _make(*overrides: str):
        GlobalHydra.instance().clear()
        base = [f"paths.root_dir={tmp_path}", f"data.data_dir={tfds_dir}", "epochs=1"]
        with initialize_config_module("conf", version_base="1.3"):
            cfg = compose("config", overrides=base + list(overrides), return_hydra_config=True)
        with open_dict(cfg):
            cfg.hydra.runtime.output_dir = str(tmp_path / "run")
            cfg.hydra.job.num = 0
        HydraConfig.instance().set_config(cfg)
        return cfg

    yield _make
    GlobalHydra.instance().clear()


def tracking_uri(root) -> str:
    return f"sqlite:///{Path(root) / 'outputs' / 'mlflow.db'}"


@pytest.fixture
def cli(tmp_path, tfds_dir):
    """Run `python -m trainer ...` for real in a subprocess whose project root is tmp_path."""

    def _run(*args: str, timeout: float = 600, extra_env: dict | None = None) -> subprocess.CompletedProcess:
        env = {**os.environ, "TRAINER_ROOT": str(tmp_path), "TF_CPP_MIN_LOG_LEVEL": "2", **(extra_env or {})}
        return subprocess.run(
            [sys.executable, "-m", "trainer", *args, f"data.data_dir={tfds_dir}"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout,
        )

    return _run
