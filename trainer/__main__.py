"""`python -m trainer ...`: check the command line, then hand the config to `train`.

Kept thin on purpose: Hydra composes, `trainer.cli.command` reports bad input in one line before
TensorFlow is imported, `trainer.train.train` does the work.
"""

from __future__ import annotations

import gc
import signal
import sys
from pathlib import Path

# `python -m` puts the working directory first on sys.path, and an editable install finds this
# project's top-level packages only after it, so a user's own `conf/` or `models/` folder (the
# usual Hydra project layout) would shadow ours. Look in this checkout first.
_CHECKOUT = Path(__file__).resolve().parents[1]
if (_CHECKOUT / "pyproject.toml").is_file() and sys.path[:1] != [str(_CHECKOUT)]:
    sys.path.insert(0, str(_CHECKOUT))

import hydra  # noqa: E402  (after the path fix above)
from omegaconf import DictConfig  # noqa: E402

from trainer.cli import command, resolvers  # noqa: E402
from trainer.run import console, signals  # noqa: E402
from trainer.tracking import sweep  # noqa: E402

resolvers.register()


@hydra.main(config_path=command.CONFIG_PATH, config_name=command.CONFIG_NAME, version_base="1.3")
def _hydra_main(cfg: DictConfig) -> float | None:
    return command.run_job(cfg)


def main() -> None:
    """`python -m trainer` and the `trainer` command; the process ends when it returns."""
    try:
        _command()
    finally:
        # Everything is recorded by now (the run has ended; MLflow's and logging's exit handlers
        # still run after this). What is left is the interpreter's last collections over every
        # object TensorFlow, Keras and MLflow made, which only free memory the process is about to
        # give back anyway: skipped (trainer/train.py froze the imports' objects already).
        gc.freeze()


def _command() -> None:
    console.mlflow_defaults()
    command.preflight(task_function=_hydra_main)
    try:
        _hydra_main()
    except signals.Terminated as err:  # the run is already recorded KILLED
        command.fail(f"stopped: {err}; the MLflow run is recorded KILLED", code=128 + signal.SIGTERM)
    except KeyboardInterrupt:  # Ctrl-C: the same ending, not a traceback from wherever Python was
        command.fail("stopped: interrupted (Ctrl-C); the MLflow run is recorded KILLED", code=128 + signal.SIGINT)
    if sweep.failed_jobs:  # every job ran; say so in the exit code when some did not finish
        command.fail(f"{len(sweep.failed_jobs)} job(s) of the sweep did not finish: {', '.join(sweep.failed_jobs)}"
                     " (each one's traceback is in its MLflow run, or in its job_failed.txt when it has none)", code=1)


if __name__ == "__main__":
    main()
