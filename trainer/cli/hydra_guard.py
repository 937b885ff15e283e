"""What of Hydra a command line may change, and what code a composed config may name.

Hydra imports and calls whatever a config names: `_target_` (callbacks, launcher, sweeper; trainer's
Optuna sweeper takes its sampler by name, not as code), `hydra.sweeper.custom_search_space` (of
hydra-optuna-sweeper's configs, should one be on the search path), and in the logging configs it hands to
`logging.config.dictConfig`, `()`, `class` and `ext://` values. The composed config (the `hydra`
node included, every interpolation resolved) may name only what the project's conf/ and the
configs of Hydra and its installed plugins name; the command line may set only the Hydra
settings listed in HYDRA_KEYS and choose only the groups in HYDRA_GROUPS.
"""

from __future__ import annotations

import functools
import logging
from importlib.resources import files

import yaml
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, ListConfig

# Config groups of Hydra's own that a command line may choose (hydra/launcher=joblib, ...).
HYDRA_GROUPS = ("hydra/launcher", "hydra/sweeper", "hydra/job_logging", "hydra/hydra_logging")

# Hydra settings a command line may set: run and sweep folders, the mode, log levels, and the
# documented parameters of the launchers and sweepers (the installed JobLibLauncherConf, trainer's
# own GridSweeperConf and OptunaSweeperConf; tests/test_cli_safety.py holds the names to them).
# `*` is one key, `**` any number of keys.
HYDRA_KEYS = (
    "hydra.mode", "hydra.verbose",
    "hydra.run.dir", "hydra.sweep.dir", "hydra.sweep.subdir",
    "hydra.job_logging.root.level", "hydra.job_logging.loggers.*.level", "hydra.job_logging.handlers.*.level",
    "hydra.hydra_logging.root.level", "hydra.hydra_logging.loggers.*.level", "hydra.hydra_logging.handlers.*.level",
    "hydra.launcher.n_jobs", "hydra.launcher.backend", "hydra.launcher.prefer", "hydra.launcher.verbose",
    "hydra.launcher.timeout", "hydra.launcher.batch_size",
    "hydra.sweeper.max_batch_size", "hydra.sweeper.params.**",
    "hydra.sweeper.n_trials", "hydra.sweeper.n_jobs", "hydra.sweeper.direction", "hydra.sweeper.study_name",
    "hydra.sweeper.storage", "hydra.sweeper.max_failure_rate", "hydra.sweeper.sampler", "hydra.sweeper.seed",
    "hydra.sweeper.new_study", "hydra.sweeper.pruner", "hydra.sweeper.repeats", "hydra.sweeper.pruner_args.*",
)

# Keys whose value names code: anywhere in a config, and in the logging configs.
_TARGET_KEYS = ("_target_",)
_LOGGING_KEYS = ("()", "class")
_CODE_PATHS = ("hydra.sweeper.custom_search_space",)
_LOGGING_NODES = ("hydra.job_logging", "hydra.hydra_logging")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL", "NOTSET")


def _matches(key: str, pattern: str) -> bool:
    parts, wanted = key.split("."), pattern.split(".")
    if wanted[-1] == "**":
        return len(parts) > len(wanted) - 1 and all(w in ("*", p) for w, p in zip(wanted[:-1], parts))
    return len(parts) == len(wanted) and all(w in ("*", p) for w, p in zip(wanted, parts))


def hydra_setting_allowed(key: str) -> bool:
    """Whether the command line may set (or add, or delete) this `hydra.` key."""
    last = key.rsplit(".", 1)[-1]
    if last.startswith("_") and last.endswith("_"):  # _target_, _args_, _partial_: instantiation controls
        return False
    return any(_matches(key, pattern) for pattern in HYDRA_KEYS)


def allowed_settings_text() -> str:
    """HYDRA_GROUPS and HYDRA_KEYS, keys of one parent written once: hydra.launcher.{n_jobs,prefer}."""
    parents: dict[str, list[str]] = {}
    for pattern in HYDRA_KEYS:
        parent, _, last = pattern.rpartition(".")
        parents.setdefault(parent, []).append(last)
    keys = [f"{p}.{names[0]}" if len(names) == 1 else f"{p}.{{{','.join(names)}}}" for p, names in parents.items()]
    return ", ".join([f"{g}=" for g in HYDRA_GROUPS] + keys)


def _references(node, path: str, *, resolve: bool, anywhere: bool = False, seen: set | None = None):
    """(path, value) of every code reference under node. With resolve, interpolations are
    resolved (a value that cannot be resolved yet yields an exception object as its value, and
    the subtree under it is skipped: it names nothing until it resolves). `anywhere` looks for
    the logging configs' keys outside the logging nodes too (a logging config file read alone)."""
    logging_node = anywhere or path.startswith(_LOGGING_NODES)
    seen = set() if seen is None else seen
    if isinstance(node, (DictConfig, ListConfig, dict, list)):
        # `${a}` resolves to the node at `a` itself: walk each container once (no cycles).
        if id(node) in seen:
            return
        seen.add(id(node))
    if isinstance(node, (DictConfig, dict)):
        keys = list(node.keys())
        for key in keys:
            child_path = f"{path}.{key}" if path else str(key)
            try:
                child = node[key] if resolve or not isinstance(node, DictConfig) else node._get_node(key)
            except Exception as err:  # noqa: BLE001 (any resolver error)
                child = err
            if key in _TARGET_KEYS or child_path in _CODE_PATHS or (
                    key in _LOGGING_KEYS and logging_node):
                value = child._value() if hasattr(child, "_value") and not resolve else child
                if value is not None:
                    yield child_path, value
                continue
            if isinstance(child, Exception):
                continue
            if hasattr(child, "_value") and not isinstance(child, (DictConfig, ListConfig)):
                child = child._value()
            yield from _references(child, child_path, resolve=resolve, anywhere=anywhere, seen=seen)
    elif isinstance(node, (ListConfig, list, tuple)):
        for i in range(len(node)):
            try:
                child = node[i]
            except Exception:  # noqa: BLE001
                continue
            yield from _references(child, f"{path}[{i}]", resolve=resolve, anywhere=anywhere, seen=seen)
    elif isinstance(node, str) and node.startswith("ext://") and logging_node:
        yield path, node


def _yaml_files(package: str):
    def walk(folder):
        for entry in folder.iterdir():
            if entry.is_dir():
                yield from walk(entry)
            elif entry.name.endswith(".yaml"):
                yield entry

    yield from walk(files(package))


_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@functools.cache
def allowed_references() -> frozenset[str]:
    """What the project's conf/, Hydra's own conf and every config node Hydra's plugins stored
    name: the only code a composed config may name. Called once Hydra has loaded its plugins."""
    found = set()
    for package in ("conf", "hydra.conf"):
        for entry in _yaml_files(package):
            # Plain YAML (LibYAML when present) reads the same strings as OmegaConf.create, much
            # faster, and every command pays this before its first step (docs/performance.md).
            node = yaml.load(entry.read_text(), Loader=_YAML_LOADER)
            found.update(str(v) for _, v in _references(node, "", resolve=False, anywhere=True))

    def walk_store(tree):
        for value in tree.values():
            if isinstance(value, dict):
                walk_store(value)
            elif getattr(value, "node", None) is not None:
                found.update(str(v) for _, v in _references(value.node, "", resolve=False, anywhere=True))

    walk_store(ConfigStore.instance().repo)
    return frozenset(v for v in found if "${" not in v and v != "???")  # not interpolations or MISSING


def refused_references(cfg: DictConfig):
    """(path, resolved value or the error resolving it) of each code reference in cfg that is
    not one the project's or Hydra's own configs name."""
    allowed = allowed_references()
    for path, value in _references(cfg, "", resolve=True):
        if isinstance(value, Exception) or not isinstance(value, str) or value not in allowed:
            yield path, value


def level_ok(value) -> bool:
    if isinstance(value, int) and not isinstance(value, bool):
        return True
    return isinstance(value, str) and value in LOG_LEVELS + tuple(logging.getLevelNamesMapping())
