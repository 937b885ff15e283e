"""OmegaConf resolvers the config tree uses; registered before Hydra composes anything."""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import OmegaConf


def project_root() -> str:
    """$TRAINER_ROOT, else the checkout this package runs from, else the working directory."""
    if os.environ.get("TRAINER_ROOT"):
        return os.path.abspath(os.environ["TRAINER_ROOT"])
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "pyproject.toml").exists():
        return str(checkout)
    return os.getcwd()


def register() -> None:
    OmegaConf.register_new_resolver("trainer_root", project_root, replace=True)
    # The run folder carries the pid so two runs started in the same microsecond never collide.
    OmegaConf.register_new_resolver("pid", os.getpid, use_cache=True, replace=True)
