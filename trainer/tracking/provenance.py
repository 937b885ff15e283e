"""Where a run came from and what it is, as MLflow tags and the run's name: git commit and dirtiness,
the command line, the sweep, and a name that says what the run trains.

Reads the environment only for the sweep variables and, through trainer.tracking.secrets, for the secret
values to mask: the command line and a run's name never carry a secret.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time

from trainer.tracking import secrets

# Set by trainer.tracking.sweep in the process that runs a multirun's jobs (joblib workers included).
PARENT_RUN_ENV = "TRAINER_SWEEP_PARENT_RUN_ID"
SWEEP_ENV = "TRAINER_SWEEP_ID"
# Not named "..._KEYS": trainer.tracking.secrets would take its value for a secret and mask it.
SWEPT_KEYS_ENV = "TRAINER_SWEPT_OVERRIDES"
# An Optuna sweep's hydra.sweeper.repeats: a job's trial and seed replicate follow from its number.
REPEATS_ENV = "TRAINER_SWEEP_REPEATS"


def code_root() -> str:
    """The checkout the running code comes from. The git commit describes the code, which is here,
    not under paths.root_dir (outputs can live anywhere: $TRAINER_ROOT)."""
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def git_state(root: str) -> tuple[str, str]:
    """(commit, "true"/"false" dirty) of the checkout at root; "unknown" when git or the repo is absent."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", root, *args], capture_output=True, text=True, timeout=10,
                              check=True).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = "true" if git("status", "--porcelain", "--untracked-files=no") else "false"
    except (OSError, subprocess.SubprocessError):
        return "unknown", "unknown"
    return commit, dirty


def program(argv: list[str] | None = None) -> str:
    """What ran: `python -m trainer` (or the `trainer` script), `python -m trainer.evaluate` (a command
    module of the package), else the script's path."""
    argv = sys.argv if argv is None else argv
    head, _, name = (argv[0] if argv else "").rpartition(os.sep)
    if head.endswith(os.sep + "trainer") and name.endswith(".py") and name != "__main__.py":
        return f"python -m trainer.{name[:-3]}"
    return "python -m trainer" if argv and argv[0].endswith(("__main__.py", "trainer")) else shlex.quote(argv[0] if argv else "")


def command_line(argv: list[str] | None = None) -> str:
    """The command as typed (python -m trainer ...), with its secrets masked (trainer.tracking.secrets).
    Each argument is masked before it is quoted, so a quoted secret cannot slip past the mask."""
    argv = sys.argv if argv is None else argv
    return secrets.redact_text(" ".join([program(argv), *(shlex.quote(secrets.redact_override(a)) for a in argv[1:])]))


def sweep_tags(job_num: int | None, overrides: list[str] = ()) -> dict[str, str]:
    """The tags that make this run a child of its sweep's parent run; empty outside a sweep. An
    Optuna trial's run names its trial (`sweep.trial`) and, with seed replicates, which one it is
    (`sweep.replicate`); when the sweep varies `seed`, `sweep.config` is what the run varies
    besides it, the configuration its seeds are averaged over (trainer/tracking/sweep_summary.py)."""
    parent = os.environ.get(PARENT_RUN_ENV)
    if not parent:
        return {}
    tags = {"mlflow.parentRunId": parent, "sweep": os.environ.get(SWEEP_ENV, parent)}
    if job_num is not None:
        tags["sweep.job"] = str(job_num)
        repeats = int(os.environ.get(REPEATS_ENV) or 0)
        if repeats:
            tags["sweep.trial"] = str(job_num // repeats)
        if repeats > 1:
            tags["sweep.replicate"] = str(job_num % repeats)
    if SEED_KEY in _swept_keys():
        tags["sweep.config"] = " ".join(secrets.redact_override(o) for o in _varied(overrides)
                                        if _bare_key(o) != SEED_KEY) or "(seed only)"
    return tags


def run_name(*, model: str, dataset: str, loop: str, overrides: list[str], job_num: int | None) -> str:
    """What the run is, so runs tell apart in the runs table: a sweep child is what it varies
    (child_run_name); any other run is what it trains, the hour and minute it started and four hex
    digits, "mlp-digits-fit-1432-7f3a". The digits come from the operating system, not from Python's
    `random`, which `seed` fixes before the run exists (MLflow's own names, drawn from it, were the
    same for every run of one seed): runs started in the same minute, in parallel, still differ."""
    child = child_run_name(overrides, job_num)
    if child is not None:
        return child
    words = [re.sub(r"[\s/]+", "_", word.strip()) for word in (model, dataset, loop)]
    return "-".join([*words, time.strftime("%H%M"), os.urandom(2).hex()])


def child_run_name(overrides: list[str], job_num: int | None) -> str | None:
    """A sweep child's name is what it varies ("depth=3 loop=fit"), so the compare view reads well;
    None outside a sweep."""
    if not os.environ.get(PARENT_RUN_ENV):
        return None
    return " ".join(secrets.redact_override(o) for o in _varied(overrides) or overrides) or f"job {job_num}"


SEED_KEY = "seed"


def _bare_key(override: str) -> str:
    # Hydra names a swept key as typed (`+model.x`); compare without the `+`/`~` on both sides.
    return override.split("=", 1)[0].lstrip("+~")


def _swept_keys() -> set[str]:
    return {k.lstrip("+~") for k in os.environ.get(SWEPT_KEYS_ENV, "").split(",") if k}


def _varied(overrides: list[str]) -> list[str]:
    """The overrides of the keys the sweep varies."""
    keys = _swept_keys()
    return [o for o in overrides if _bare_key(o) in keys]


def source_tags() -> dict[str, str]:
    """The code that ran: commit, dirtiness and command line as our own tags, and as the tags the MLflow
    UI reads for a run's Source and Version columns (mlflow.utils.mlflow_tags; written out here so this
    module stays free of MLflow for the sweep's main process). A sweep's parent run has them too."""
    commit, dirty = git_state(code_root())
    tags = {"git.commit": commit, "git.dirty": dirty, "command": command_line(),
            "mlflow.source.name": program(), "mlflow.source.type": "LOCAL"}
    if commit != "unknown":  # the UI would show "unknow" as the version
        tags["mlflow.source.git.commit"] = commit
    return tags


def run_tags(*, model: str, variant: str, loop: str, dataset: str) -> dict[str, str]:
    return {"model": model, "variant": variant, "loop": loop, "dataset": dataset, **source_tags()}
