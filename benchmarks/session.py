"""One benchmark session: its sizes, its scratch folders, and the two ways it runs training.

`train(...)` composes the real config (as `python -m trainer` would) and calls
`trainer.train.train` in this process, timed by the probe; `spawn(...)` runs a whole
`python -m trainer` or plain-Keras process under the probe. Both write only under the
session's scratch folder: TRAINER_ROOT, the TFDS data dir and the MLflow store are its own.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks import probe
from benchmarks.results import median, say

REPO = Path(__file__).resolve().parents[1]


@dataclasses.dataclass(frozen=True)
class Sizes:
    repeats: int            # A/B pairs of in-process runs: 3, so one run a neighbour slows is outvoted
    process_repeats: int    # whole processes per arm (and lockstep rings): one process's median differs
                            # from the next by 5-20% (neighbours' load comes in waves of seconds)
    epochs: int             # epochs of a `loops` run (processes in lockstep); the first is excluded
    pipeline_epochs: int    # least epochs per arm of a `pipeline` case, alternating
    pipeline_seconds: float  # and least training time per arm: tiny models' epochs last tens of ms
    cli_epochs: int         # epochs of a whole-process run (`overhead`)
    accuracy_epochs: int    # epochs behind the variants' final accuracy
    models: tuple | None    # registry models to cover; None = every registered model
    cifar_examples: int     # examples in the mock CIFAR-10 sized dataset
    compute_batch: int
    compute_width: int
    compute_epochs: int
    matmul_size: int
    reject_repeats: int
    scaling_examples: tuple   # training-set sizes of `scaling` (mock 32x32x3 data), the last the reference
    scaling_models: tuple     # `scaling`'s model sizes: overrides, smallest to largest within each model
    scaling_model_examples: int  # training-set size the model sizes train on


QUICK = Sizes(repeats=1, process_repeats=1, epochs=2, pipeline_epochs=3, pipeline_seconds=0.0, cli_epochs=2,
              accuracy_epochs=2, models=("mlp",), cifar_examples=128, compute_batch=128, compute_width=64,
              compute_epochs=2, matmul_size=256, reject_repeats=1, scaling_examples=(64, 256),
              scaling_models=("model=dynamic width=16", "model=dynamic width=64"), scaling_model_examples=64)
FULL = Sizes(repeats=3, process_repeats=5, epochs=6, pipeline_epochs=16, pipeline_seconds=5.0, cli_epochs=40,
             accuracy_epochs=8, models=None, cifar_examples=512, compute_batch=512, compute_width=2048,
             compute_epochs=4, matmul_size=2048, reject_repeats=5, scaling_examples=(1000, 5000, 20000, 50000),
             scaling_models=("model=dynamic width=64", "model=dynamic width=256", "model=dynamic width=1024",
                             "model=dynamic width=2048", "model=cnn filters=8", "model=cnn filters=32"),
             scaling_model_examples=5000)


@dataclasses.dataclass
class Run:
    """What one timed training run left: per-epoch times (probe.Clock.epochs) and more."""

    epochs: list[dict]
    metrics: dict
    wall: float                       # seconds, from start (process spawn or train call) to end
    after_last_epoch: float | None    # seconds from the end of the last epoch to the end
    first_step: float | None = None   # seconds from start to the end of the first training step
    returncode: int = 0
    tensorflow_imported: bool | None = None
    peak_rss_bytes: int | None = None  # the process's peak resident memory (whole-process runs only)
    model: object = None              # the trained, compiled Keras model (in-process runs only)

    def steady(self, key: str = "seconds") -> list[float]:
        """Per-epoch values with the first epoch (tracing, cache filling) left out."""
        return [e[key] for e in self.epochs[1:] if e.get(key) is not None]


class Session:
    def __init__(self, sizes: Sizes, workdir: Path, log_path: Path):
        self.sizes = sizes
        self.workdir = Path(workdir)
        self.root = self.workdir / "root"              # TRAINER_ROOT: outputs/, mlflow.db
        self.tfds_dir = self.workdir / "tensorflow_datasets"
        self.root.mkdir(parents=True, exist_ok=True)
        self.log_path = Path(log_path)
        self.out = self.log_path.parent                # the output folder: figures go beside results.json
        self.shared: dict = {}                         # results one benchmark hands to another
        self._counter = itertools.count()

    # -- setup --------------------------------------------------------------------------
    def prepare(self) -> None:
        """Prepare digits once, so no timed run pays for it."""
        from trainer.cli import resolvers

        resolvers.register()
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import tensorflow_datasets as tfds

        import trainer.data.digits  # noqa: F401  (registers the digits builder with TFDS)

        tfds.disable_progress_bar()
        with self.quiet():
            tfds.builder("digits", data_dir=str(self.tfds_dir)).download_and_prepare()

    def model_names(self) -> list[str]:
        import models

        return [n for n in models.names() if self.sizes.models is None or n in self.sizes.models]

    def untracked(self) -> list[str]:
        """Overrides that switch MLflow off, for benchmarks where tracking is not the subject."""
        return ["tracking.enabled=false"]

    def has_option(self, group: str, option: str) -> bool:
        """Whether conf/<group>/<option>.yaml exists in this checkout (work may still be landing)."""
        return (REPO / "conf" / group / f"{option}.yaml").exists()

    @contextlib.contextmanager
    def quiet(self):
        """Send what training prints (Keras progress, run summaries) to the log file."""
        with open(self.log_path, "a") as log, contextlib.redirect_stdout(log):
            yield

    # -- in process -----------------------------------------------------------------------
    def compose(self, *overrides: str):
        """The config `python -m trainer OVERRIDES` would run, writing under the session."""
        from hydra import compose, initialize_config_module
        from hydra.core.global_hydra import GlobalHydra
        from hydra.core.hydra_config import HydraConfig
        from omegaconf import open_dict

        base = [f"paths.root_dir={self.root}", f"data.data_dir={self.tfds_dir}"]
        GlobalHydra.instance().clear()
        with initialize_config_module("conf", version_base="1.3"):
            cfg = compose("config", overrides=base + list(overrides), return_hydra_config=True)
        GlobalHydra.instance().clear()
        with open_dict(cfg):
            cfg.hydra.runtime.output_dir = str(self.root / "outputs" / "runs" / f"bench-{next(self._counter)}")
            cfg.hydra.job.num = 0
        HydraConfig.instance().set_config(cfg)
        return cfg

    def train(self, *overrides: str) -> Run:
        """`trainer.train.train` on the composed config, in this process, timed."""
        from trainer.train import train

        cfg = self.compose(*overrides)
        with self.quiet(), probe.clock() as clock:
            print(f"\n=== train {' '.join(overrides)}", flush=True)
            start = time.time()
            metrics = train(cfg)
            end = time.time()
        epochs = clock.epochs()
        return Run(epochs=epochs, metrics=metrics, wall=end - start,
                   after_last_epoch=end - epochs[-1]["end"] if epochs else None,
                   first_step=clock.first_step_end - start if clock.first_step_end else None, model=clock.model)

    # -- whole processes ------------------------------------------------------------------
    def env(self) -> dict:
        pythonpath = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
        return {**os.environ, "TRAINER_ROOT": str(self.root), "TFDS_DATA_DIR": str(self.tfds_dir),
                "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": pythonpath}

    def trainer_command(self, *overrides: str) -> list[str]:
        """`python -m trainer OVERRIDES` as a probe target, on the session's data and store."""
        return ["-m", "trainer", *overrides, f"data.data_dir={self.tfds_dir}"]

    def lockstep_rings(self, arms: list[list[str]], repeats: int, label: str) -> list[list[Run]]:
        """`repeats` rings of the arms in lockstep, rotated so each leads in turn; the runs of
        each arm, in ring order (so the i-th runs of two arms shared ring i). A run that failed or
        fell out of step raises, naming the arm."""
        runs: list[list[Run]] = [[] for _ in arms]
        for i in range(repeats):
            order = [(k + i) % len(arms) for k in range(len(arms))]
            for k, r in zip(order, self.lockstep(*(arms[k] for k in order))):
                if r.returncode != 0 or len(r.epochs) < 2:
                    raise RuntimeError(f"{' '.join(arms[k])} exited {r.returncode} after {len(r.epochs)} epochs"
                                       f" in lockstep; see {self.log_path}")
                runs[k].append(r)
            say(f"  {label} lockstep {i + 1}: " + ", ".join(
                f"epoch {median(runs[k][-1].steady('span_seconds')) * 1000:.1f} ms" for k in range(len(arms))))
        return runs

    def lockstep(self, *targets: list[str], timeout: float = 900) -> list[Run]:
        """Run the targets as concurrent probe processes that train one epoch at a time in turn,
        in the order given (benchmarks/probe.py, "Lockstep"); their epochs' `span_seconds` are
        comparable epoch by epoch. Whole-process times overlap and mean nothing here.

        Each `python -m trainer` target gets a resume folder of its own: arms that differ only in
        `resume.*` are the same command to the trainer, which refuses to run it twice at once."""
        n = next(self._counter)
        targets = tuple([*t, f"resume.dir={self.workdir / f'resume-{n}-{i}'}"] if list(t[:2]) == ["-m", "trainer"] else t
                        for i, t in enumerate(targets))
        fifos = [self.workdir / f"lockstep-{n}-{i}" for i in range(len(targets))]
        for fifo in fifos:
            os.mkfifo(fifo)
        first = os.open(fifos[0], os.O_RDWR)
        os.write(first, b".")  # the first target has the first turn
        outs = [self.workdir / f"probe-{n}-{i}.json" for i in range(len(targets))]
        procs = []
        with open(self.log_path, "a") as log:
            for i, target in enumerate(targets):
                print(f"\n=== lockstep {i}: {' '.join(target)}", file=log, flush=True)
                env = {**self.env(), probe.LOCKSTEP: f"{fifos[i]}:{fifos[(i + 1) % len(targets)]}"}
                procs.append(subprocess.Popen([sys.executable, "-m", "benchmarks.probe", str(outs[i]), "--", *target],
                                              cwd=self.workdir, env=env, stdout=log, stderr=subprocess.STDOUT))
            deadline = time.time() + timeout
            for proc in procs:
                try:
                    proc.wait(timeout=max(1.0, deadline - time.time()))
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        os.close(first)
        runs = []
        for proc, out, target in zip(procs, outs, targets):
            record = json.loads(out.read_text()) if out.exists() else {}
            if proc.returncode not in (0, 2) or record.get("lockstep_broken"):
                say(f"  warning: lockstep {' '.join(target)} exited {proc.returncode}"
                    f"{', out of step' if record.get('lockstep_broken') else ''}; see {self.log_path}")
            runs.append(Run(epochs=record.get("epochs", []), metrics={}, wall=float("nan"), after_last_epoch=None,
                            returncode=proc.returncode if not record.get("lockstep_broken") else -1,
                            peak_rss_bytes=record.get("peak_rss_bytes")))
        return runs

    def spawn(self, *target: str, timeout: float = 900) -> Run:
        """Run `python -m benchmarks.probe OUT -- TARGET...` and time it from the outside."""
        out = self.workdir / f"probe-{next(self._counter)}.json"
        command = [sys.executable, "-m", "benchmarks.probe", str(out), "--", *target]
        with open(self.log_path, "a") as log:
            print(f"\n=== {' '.join(target)}", file=log, flush=True)
            start = time.time()
            proc = subprocess.run(command, cwd=self.workdir, env=self.env(), stdout=log,
                                  stderr=subprocess.STDOUT, timeout=timeout)
            end = time.time()
        record = json.loads(out.read_text()) if out.exists() else {}
        epochs = record.get("epochs", [])
        if proc.returncode not in (0, 2):
            say(f"  warning: {' '.join(target)} exited {proc.returncode}; see {self.log_path}")
        return Run(
            epochs=epochs, metrics={}, wall=end - start,
            after_last_epoch=end - epochs[-1]["end"] if epochs else None,
            first_step=record["first_step_end"] - start if record.get("first_step_end") else None,
            returncode=proc.returncode, tensorflow_imported=record.get("tensorflow_imported"),
            peak_rss_bytes=record.get("peak_rss_bytes"),
        )
