"""Shared fixtures: compose the real Hydra config once per test, shrunk to seconds, with every
output (TFDS data, MLflow store, run folders) inside pytest's tmp dirs. No network is used."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict

from trainer.cli import resolvers

resolvers.register()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # tests send nothing to MLflow's servers
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


def without_tensorflow(root) -> dict:
    """Environment entries under which `import tensorflow` fails: a subprocess that prints its line
    there printed it before TensorFlow loaded."""
    blocker = Path(root) / "no_tensorflow" / "tensorflow"
    blocker.mkdir(parents=True, exist_ok=True)
    (blocker / "__init__.py").write_text('raise ImportError("tensorflow was imported before the line was printed")\n')
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(blocker.parent), os.environ.get("PYTHONPATH")]))}


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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve_mlflow(home: Path, *options: str, env: dict | None = None, timeout: float = 180, backend: str | None = None):
    """A real `mlflow server` on 127.0.0.1 (`backend`, default a SQLite file; artifacts under `home`)
    for the block: yields its http://127.0.0.1:<port> once /health answers, then stops its whole
    process group."""
    port = free_port()
    log = open(home / "server.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", *options, "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1", "--backend-store-uri", backend or f"sqlite:///{home / 'mlflow.db'}",
         "--artifacts-destination", str(home / "artifacts")],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=home, start_new_session=True,
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            assert server.poll() is None, (home / "server.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(uri + "/health", timeout=2):  # a basic-auth server answers it too
                    break
            except OSError:
                assert time.monotonic() < deadline, f"mlflow server did not answer in {timeout} s"
                time.sleep(0.5)
        yield uri
    finally:
        end_session(server)
        log.close()


def end_session(process: subprocess.Popen, timeout: float = 10) -> None:
    """End a server started with start_new_session=True and every process it started (gunicorn or
    uvicorn workers): SIGTERM to its process group, SIGKILL if it is still there after `timeout`."""
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """http://127.0.0.1:<port> of a real server, one per test session (starting one takes several
    seconds): tests keep to their own experiments."""
    with serve_mlflow(tmp_path_factory.mktemp("mlflow_server")) as uri:
        yield uri
