"""The command line of the commands that use a trained model (`python -m trainer.predict`,
`trainer.evaluate`): the same Hydra syntax and the same refusals as `python -m trainer`
(trainer/cli/command.py), each command with its own primary config (conf/predict.yaml, ...).

Order: the command line is read and its config composed and checked (the command's `check`:
values first, then finding the model in the store, which needs MLflow but never TensorFlow), so
bad input is one line, exit 2, before Hydra creates the command's folder and before TensorFlow
loads. Then Hydra runs the job, whose ConfigErrors (an image size the model cannot take) end the
same way; any other failure is a traceback, exit 1.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Callable

import hydra
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from trainer import errors
from trainer.cli import command, resolvers
from trainer.config.checks import shorten
from trainer.errors import ConfigError
from trainer.run import console

resolvers.register()


def main(config_name: str, check: Callable[[DictConfig], None], job: Callable[[DictConfig], None]) -> None:
    """Check the command line for `config_name`, then run `job(cfg)` under Hydra."""
    console.mlflow_defaults()

    def task(cfg: DictConfig) -> None:
        try:
            job(cfg)
        except Exception as err:
            end = errors.ending(err, tracked=False)
            if end.line is None or command._full_error():
                raise
            command.fail(end.line, code=end.code)

    preflight(config_name, check, task)
    try:
        hydra.main(config_path=command.CONFIG_PATH, config_name=config_name, version_base="1.3")(task)()
    except KeyboardInterrupt:
        command.fail("stopped: interrupted (Ctrl-C); nothing was written", code=128 + signal.SIGINT)


def preflight(config_name: str, check: Callable[[DictConfig], None], task=None, argv: list[str] | None = None) -> None:
    """The command line read as Hydra reads it, the config composed and checked; exits with one line."""
    argv = sys.argv[1:] if argv is None else argv
    args = command._parse_args(argv)
    name = f"trainer.{config_name}"
    if args.multirun:
        command.fail(f"{name} runs one job: -m/--multirun is not supported (run the command once per value)."
                     f" Received: {shorten(' '.join(argv))}")
    if args.config_name is not None:
        command.fail(f"{name} reads its own config (conf/{config_name}.yaml); --config-name cannot change it."
                     f" Received: --config-name={shorten(args.config_name)}")
    overrides = list(args.overrides)
    command._check_syntax(overrides)
    command._reject_instantiation(overrides)
    command._reject_hydra_settings(overrides)
    hydra_app = command._hydra(args, task)

    def compose(job):
        return hydra_app.compose_config(config_name, job, run_mode=RunMode.RUN)

    try:
        try:
            cfg = compose(overrides)
        except Exception as err:
            command._report(err, overrides, compose, args.config_dir)
        command._reject_code(cfg, overrides)
        if args.help:
            print(_help(cfg), flush=True)
            sys.exit(0)
        if args.cfg is not None or args.info is not None or args.shell_completion or args.hydra_help:
            return  # Hydra prints what was asked and runs nothing
        command._check_folder("hydra.run.dir", command._set_runtime(cfg, "hydra.run.dir"), overrides)
        try:
            check(cfg)
        except Exception as err:
            command._report(err, overrides, compose, args.config_dir)
    finally:
        HydraConfig.instance().cfg = None
        GlobalHydra.instance().clear()


def _help(cfg: DictConfig) -> str:
    """The command's header (its config's hydra.help.header) and its keys with this command line's values."""
    keys = {k: v for k, v in OmegaConf.to_container(cfg, resolve=False).items() if k != "hydra"}
    return f"{cfg.hydra.help.header}\n\n== Keys (this command's values) ==\n{OmegaConf.to_yaml(keys)}"



def run_dir() -> str:
    """The command's folder (Hydra's run folder; the working folder when called outside Hydra)."""
    return HydraConfig.get().runtime.output_dir if HydraConfig.initialized() else os.getcwd()
