"""Command-line front: reject bad input in one line before TensorFlow loads, and run jobs.

`preflight` composes the config for the given overrides (every job of a grid sweep) with
Hydra's compose API and validates it; that costs well under a second, so a typo never waits
for a TensorFlow start-up. Set HYDRA_FULL_ERROR=1 to see tracebacks instead.
"""

from __future__ import annotations

import errno
import itertools
import os
import re
import sys

from trainer.errors import ConfigError

# Hydra options that take a value, and ones that mean "do not train, just inspect".
_VALUE_FLAGS = {"--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd", "--cfg", "-c",
                "--package", "-p", "--experimental-rerun", "--shell-completion", "-sc"}
_INSPECT_FLAGS = {"--help", "-h", "--hydra-help", "--info", "-i", "--cfg", "-c", "--shell-completion", "-sc",
                  "--version", "--experimental-rerun"}
_MAX_PREFLIGHT_JOBS = 256


def _full_error() -> bool:
    return os.environ.get("HYDRA_FULL_ERROR") == "1"


def fail(message: str, code: int = 2):
    """Print one line and exit; never a traceback unless HYDRA_FULL_ERROR=1."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


def _split_argv(argv: list[str]) -> tuple[list[str], dict[str, str], set[str]]:
    overrides, options, flags = [], {}, set()
    it = iter(argv)
    for arg in it:
        if arg.startswith("-"):
            name, _, value = arg.partition("=")
            flags.add(name)
            if name in _VALUE_FLAGS and not value and name not in ("--cfg", "-c", "--info", "-i"):
                value = next(it, "")
            options[name] = value
        else:
            overrides.append(arg)
    return overrides, options, flags


def _expand(overrides: list[str]) -> list[list[str]]:
    """Every job of a grid sweep; values Hydra samples itself (optuna intervals) are left out."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides)
    axes = []
    for o in parsed:
        if not o.is_sweep_override():
            axes.append([o.input_line])
            continue
        try:
            values = list(o.sweep_string_iterator())
        except Exception:  # interval(...) and other sampled sweeps: validated per job instead
            continue
        axes.append([f"{o.get_key_element()}={v}" for v in values])
    return [list(job) for job in itertools.islice(itertools.product(*axes), _MAX_PREFLIGHT_JOBS)]


def _compose_error(err: Exception, overrides: list[str]) -> str:
    """Turn Hydra's multi-line composition errors into our one line."""
    from hydra.errors import MissingConfigException

    text = str(err).strip()
    if isinstance(err, MissingConfigException) and err.missing_cfg_file and "/" in err.missing_cfg_file:
        group, option = err.missing_cfg_file.rsplit("/", 1)
        options = ", ".join(err.options or []) or "(none)"
        return f"{group} must be one of {options}. Received: {group}={option}"
    if "Could not override" in text or "is not in struct" in text:
        key = text.split("'")[1] if "'" in text else "?"
        value = next((o.split("=", 1)[1] for o in overrides if o.split("=", 1)[0].lstrip("+~") == key), "?")
        return (f"{key} is not a config key of this run (see `python -m trainer --cfg job`; a model knob must"
                f" be listed by the selected model). Received: {key}={value}")
    appended = re.search(r"Could not append to config\. An item is already at '([^']+)'", text)
    if appended:
        key = appended.group(1)
        value = next((o.split("=", 1)[1] for o in overrides if o.split("=", 1)[0] == f"+{key}"), "?")
        return (f"{key} is already in the config, so +{key} cannot add it again; set it with {key}=... (or"
                f" ++{key}=... to add or override). Received: +{key}={value}")
    line = " ".join(line.strip() for line in text.splitlines() if line.strip())
    return line if "Received:" in line else f"{line} Received: {' '.join(overrides)}"


def _check_syntax(overrides: list[str]) -> None:
    """Hydra's parse errors quote grammar tokens; name the override and how to quote it instead."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    for override in overrides:
        try:
            parser.parse_override(override)
        except Exception:
            key = override.partition("=")[0].lstrip("+~") or override
            fail(f"{key} could not be read as key=value (quote a value that holds special characters:"
                 f" key='a b,c'; see https://hydra.cc/docs/advanced/override_grammar/basic/). Received: {override}")


def _reject_instantiation(overrides: list[str]) -> None:
    """Hydra instantiates any `_target_` it meets (hydra.callbacks, launchers, sweepers), so one typed on
    the command line would run arbitrary Python. Objects come only from the project's registries."""
    for override in overrides:
        if "_target_" in override:
            key, _, value = override.partition("=")
            key = key.lstrip("+~")
            fail(f"{key} cannot be set to a _target_ from the command line: models, optimizers, data and"
                 f" callbacks come only from trainer's own config groups and registries. Received: {key}={value}")
        key, _, value = override.partition("=")
        if key.lstrip("+~") == "model.module":
            # model.module names code to import; only a model's own YAML (which the user wrote, in
            # conf/model/ or their --config-dir) may name it, so no command line can run a module.
            fail("model.module is read only from a model's YAML file (conf/model/<name>.yaml or your"
                 f" --config-dir), not from the command line. Received: model.module={value}")


def _group_options(group: str, config_dir: str | None = None) -> list[str] | None:
    """The options of config group `group`: the package's conf/ plus the user's --config-dir."""
    from importlib.resources import files
    from pathlib import Path

    if "/" in group:
        return None
    folders = [f for f in (files("conf") / group, Path(config_dir or "") / group if config_dir else None)
               if f is not None and f.is_dir()]
    if not folders:
        return None
    return sorted({p.name[:-5] for folder in folders for p in folder.iterdir() if p.name.endswith(".yaml")})


def _misplaced_value(job: list[str], compose_job, config_dir: str | None = None) -> str | None:
    """The override that put a value of the wrong shape where the config has a group, a section or
    a list (`optimizer=3`, `resume=/tmp/x`, `model.knobs=3`), which the checks cannot read.

    Found against the config composed from the job's group choices alone, so it costs one
    composition and runs only once a job has already failed.
    """
    from omegaconf import DictConfig, ListConfig, OmegaConf

    parsed = [(o.partition("=")[0].lstrip("+~"), o.partition("=")[2]) for o in job if "=" in o]
    for key, value in parsed:
        options = _group_options(key, config_dir)
        if options is not None and value not in options:
            return f"{key} must be one of {', '.join(options)}. Received: {key}={value}"
    try:
        base = compose_job([f"{k}={v}" for k, v in parsed if _group_options(k, config_dir) is not None])
    except Exception:  # the group choices themselves fail: reported by the caller
        return None
    for key, value in parsed:
        if _group_options(key, config_dir) is not None:
            continue
        node = OmegaConf.select(base, key, default=None)
        if isinstance(node, DictConfig) and not value.startswith("{"):
            inner = ", ".join(f"{key}.{k}=..." for k in list(node.keys())[:3])
            return f"{key} is a section of the config, not a value; set its keys instead ({inner}). Received: {key}={value}"
        if isinstance(node, ListConfig) and not value.startswith("["):
            return f"{key} must be a list such as [{', '.join(map(str, node))}]. Received: {key}={value}"
    return None


def preflight(argv: list[str] | None = None) -> None:
    """Validate every job the command line describes; exit with one line on the first error."""
    argv = sys.argv[1:] if argv is None else argv
    overrides, options, flags = _split_argv(argv)
    if flags & _INSPECT_FLAGS or _full_error():
        return
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from trainer.config import validate

    _check_syntax(overrides)
    _reject_instantiation(overrides)
    extra = []
    config_dir = options.get("--config-dir") or options.get("-cd")
    if config_dir:
        if not os.path.isdir(config_dir):
            fail(f"--config-dir must be an existing directory of config files. Received: --config-dir={config_dir}")
        extra.append(f"hydra.searchpath=[file://{os.path.abspath(config_dir)}]")
    multirun = bool(flags & {"-m", "--multirun"})
    try:
        jobs = _expand(overrides) if multirun else [overrides]
    except HydraException as err:
        fail(_compose_error(err, overrides))
    GlobalHydra.instance().clear()
    config_name = options.get("--config-name") or options.get("-cn") or "config"
    with initialize_config_module("conf", version_base="1.3"):
        for job in jobs:
            try:
                settings = validate(compose(config_name=config_name, overrides=extra + job))
            except Exception as err:
                # A value of the wrong shape (a section set to a number) trips the checks in
                # misleading ways, so it is named first.
                misplaced = _misplaced_value(job, lambda j: compose(config_name=config_name, overrides=extra + j),
                                             config_dir)
                if misplaced:
                    fail(misplaced)
                if isinstance(err, ConfigError):
                    fail(str(err))
                if isinstance(err, (HydraException, OmegaConfBaseException)):
                    fail(_compose_error(err, job))
                # Still one line for the user; the tests treat this wording as a bug in a check.
                fail(f"the config could not be checked ({type(err).__name__}: {err}); rerun with"
                     f" HYDRA_FULL_ERROR=1 for the traceback. Received: {' '.join(job)}")
            if multirun and settings["strategy"]["name"] == "multi_worker":
                # A process joins its cluster once (TensorFlow configures the collectives for its
                # lifetime), and every worker would open its own sweep run.
                fail("strategy must be default or mirrored in a multirun (-m): a multi_worker cluster runs one"
                     " job, started on every worker with the same command. Received: strategy=multi_worker")
    GlobalHydra.instance().clear()


def _multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


# A full disk, a quota, a file-size limit, a read-only mount, missing permissions.
_STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM}


def _storage_error(err: BaseException) -> str | None:
    """One line for a write that the disk refused, found anywhere in the exception's chain
    (MLflow and Keras wrap the OSError they hit)."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in _STORAGE_ERRNOS:
            where = f" {err.filename}" if err.filename else ""
            return (f"could not write{where}: {err.strerror or err}. The run is recorded FAILED and the last"
                    " checkpoint is kept: free space or fix permissions, then rerun the same command to resume")
        err = err.__cause__ or err.__context__
    return None


def _basic_sweeper() -> bool:
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get().sweeper._target_.endswith(".BasicSweeper")


def run_job(cfg):
    """The Hydra task function's body: train, turn bad input into one line, and return
    `sweep.metric` to the sweeper (Optuna optimizes it; the sweep summary ranks by it)."""
    import logging

    from trainer.train import train

    try:
        metrics = train(cfg)
    except Exception as err:
        # `models` loads TensorFlow, so it is not imported just to classify an error raised
        # before it ever was (a tracking server that does not answer, say).
        registry = sys.modules.get("models.registry")
        resume = sys.modules.get("trainer.resume")
        # Two identical jobs of one parallel sweep: the second is refused (trainer/resume.py), a
        # job failure the sweep can go on without, not bad input that stops it.
        duplicate = resume is not None and isinstance(err, resume.FolderInUse) and _multirun()
        if (isinstance(err, ConfigError) and not (duplicate and cfg.sweep.continue_on_failure)) or (
                registry is not None and isinstance(err, registry.RegistryError)):
            if _full_error():
                raise
            fail(str(err))
        storage = _storage_error(err)
        if storage and not (_multirun() and cfg.sweep.continue_on_failure) and not _full_error():
            fail(storage, code=1)
        callbacks = sys.modules.get("trainer.callbacks")
        if callbacks and isinstance(err, callbacks.NonFiniteLossError) and not _multirun() and not _full_error():
            # Diverged training is an outcome to read, not a crash to debug: one line, run FAILED.
            recorded = " The MLflow run is recorded FAILED." if cfg.tracking.enabled else ""
            fail(f"training stopped: {err}.{recorded}", code=1)
        # The job's run is already recorded FAILED with its traceback; one broken job of a sweep
        # should not throw away the others unless sweep.continue_on_failure=false says so.
        if not _multirun():
            raise
        if not cfg.sweep.continue_on_failure:
            fail(f"a job failed ({type(err).__name__}: {err}) and sweep.continue_on_failure=false stops the sweep;"
                 " its MLflow run holds the traceback", code=1)
        logging.getLogger("trainer").error("job failed, the sweep goes on: %s: %s", type(err).__name__, err)
        from trainer import sweep

        sweep.mark_failed(err)  # the sweep's summary counts it, even when it failed before its run existed
        if _basic_sweeper():
            return float("nan")  # Hydra's grid sweeper would stop at the first job that raises
        raise  # Optuna records the trial as failed and goes on (hydra.sweeper.max_failure_rate)
    if cfg.sweep.metric not in metrics:
        if _multirun():
            fail(f"sweep.metric must be one of the metrics the run reports: {', '.join(sorted(metrics))}."
                 f" Received: sweep.metric={cfg.sweep.metric}")
        return None
    return metrics[cfg.sweep.metric]
