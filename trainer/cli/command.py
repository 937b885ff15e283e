"""Command-line front: reject bad input in one line before TensorFlow loads, and run jobs.

`preflight` reads the command line with Hydra's own argument parser, builds the Hydra that
@hydra.main will build (same primary config, search path and mode), composes the config that
will run, the `hydra` node included, and checks it: no code named that the project's and Hydra's
own configs do not name (trainer/cli/hydra_guard.py), only the Hydra settings users need, then every
value (every job of a grid sweep). That costs about a second, so a typo never waits for a
TensorFlow start-up. HYDRA_FULL_ERROR=1 shows tracebacks for errors other than the refusals
that keep code from running.
"""

from __future__ import annotations

import copy
import itertools
import logging
import os
import re
import sys
from importlib.resources import files
from pathlib import Path

from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra._internal.hydra import Hydra
from hydra._internal.utils import (create_automatic_config_search_path,
                                   detect_calling_file_or_module_from_task_function, detect_task_name,
                                   get_args_parser)
from hydra.core.config_search_path import SearchPathQuery
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import validate_config_path
from hydra.errors import HydraException, MissingConfigException
from hydra.types import RunMode
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict, read_write
from omegaconf.errors import OmegaConfBaseException

from trainer import errors
from trainer.cli import help_text, hydra_guard
from trainer.config import metrics as metric_names
from trainer.config.checks import MAX_SHOWN, folder_problem, is_int, is_number, shorten
from trainer.config.validate import validate
from trainer.errors import ConfigError

# The primary config of `python -m trainer` (trainer/__main__.py's @hydra.main); -cp/-cn change it.
CONFIG_PATH = "pkg://conf"
CONFIG_NAME = "config"
# Jobs of a grid sweep checked before the first one trains; later ones are checked as they start.
_MAX_PREFLIGHT_JOBS = 100


def _full_error() -> bool:
    return os.environ.get("HYDRA_FULL_ERROR") == "1"


def fail(message: str, code: int = 2):
    """Print one line and exit; never a traceback unless HYDRA_FULL_ERROR=1."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


def _typed(key: str, overrides: list[str]) -> str | None:
    """The value the user typed for key (the last override of it), or None."""
    found = None
    for override in overrides:
        name, sep, value = override.partition("=")
        if sep and name.lstrip("+~").partition("@")[0] == key:
            found = value
    return found


def _received(key: str, value, overrides: list[str]) -> str:
    """`key=<value>` for a message: as typed, with what it resolved to when that differs."""
    typed = _typed(key, overrides)
    if typed is None or typed == str(value):
        return f"{key}={shorten(value)}"
    if "${" in typed:
        return f"{key}={shorten(typed)} (resolved to {shorten(value)})"
    return f"{key}={shorten(typed)}"


def _as_typed(message: str, overrides: list[str]) -> str:
    """A check's message with its `Received: key=value` shown as the user typed it (`depth='3'`
    is a string, not the integer 3), and no value echoed beyond a few hundred characters."""
    head, sep, tail = message.partition(" Received: ")
    head = re.sub(r"\S{%d,}" % (MAX_SHOWN + 1), lambda m: shorten(m.group(0)), head)
    if not sep:
        return head
    pairs = []
    for pair in re.split(r", (?=[\w.\[\]/-]+=)", tail):  # "a=1, b=2" names two keys
        match = re.fullmatch(r"([\w.\[\]/-]+)=(.*)", pair, re.S)
        pairs.append(_received(*match.groups(), overrides) if match else shorten(pair))
    return f"{head}{sep}{', '.join(pairs)}"


# --- reading the command line as Hydra reads it --------------------------------------------------

def _parse_args(argv: list[str]):
    """Hydra's own argument parser (its prefixes, `--multi`, `-cn`...), failing in one line."""
    parser = get_args_parser()

    def error(message: str):
        fail(f"the command line must be [options] key=value ... (see `python -m trainer --help`); {message}."
             f" Received: {shorten(' '.join(argv))}")

    parser.error = error
    args = parser.parse_args(argv)
    if args.experimental_rerun is not None:
        # Hydra would unpickle that file, and a pickle can run any code.
        fail("--experimental-rerun is not supported: it loads a pickle, which can run any code; rerun the"
             " command line instead (a run folder's .hydra/overrides.yaml lists its overrides)."
             f" Received: --experimental-rerun={shorten(args.experimental_rerun)}")
    commands = args.run + (args.cfg is not None) + args.multirun + args.shell_completion + (args.info is not None)
    if commands > 1:
        fail("only one of --run, --multirun, --cfg, --info and --shell-completion can be given."
             f" Received: {shorten(' '.join(argv))}")
    if args.resolve and args.cfg is None and not args.help:
        fail(f"--resolve works only with --cfg or --help. Received: {shorten(' '.join(argv))}")
    return args


def _hydra(args, task_function):
    """The Hydra instance @hydra.main builds for these arguments: same search path, same plugins."""
    if task_function is None:
        calling_file, calling_module = os.path.join(os.path.dirname(os.path.dirname(__file__)), "__main__.py"), None
    else:
        calling_file, calling_module = detect_calling_file_or_module_from_task_function(task_function)
    config_path = CONFIG_PATH if args.config_path is None else args.config_path
    try:
        validate_config_path(config_path)
    except Exception as err:  # Hydra's own wording, on one line
        fail(f"{' '.join(str(err).split())} Received: --config-path={shorten(config_path)}")
    search_path = create_automatic_config_search_path(calling_file, calling_module, config_path)
    if args.config_dir is not None:
        if not os.path.isdir(args.config_dir):
            fail("--config-dir must be an existing directory of config files."
                 f" Received: --config-dir={shorten(args.config_dir)}")
        search_path.prepend(provider="command-line", path=f"file://{os.path.abspath(args.config_dir)}",
                            anchor=SearchPathQuery(provider="schema"))
    GlobalHydra.instance().clear()
    return Hydra.create_main_hydra2(task_name=detect_task_name(calling_file, calling_module),
                                    config_search_path=search_path)


# --- what the command line may say ---------------------------------------------------------------

def _check_syntax(overrides: list[str]) -> None:
    """Hydra's parse errors quote grammar tokens; name the override and how to quote it instead."""
    parser = OverridesParser.create()
    for override in overrides:
        try:
            parsed = parser.parse_override(override)
            if parsed.is_sweep_override() and parsed.get_key_element().lstrip("+~").startswith("hydra.sweeper.params."):
                # Unquoted, interval(...) would be a sweep of Hydra's own setting, which Hydra refuses.
                key, _, value = override.partition("=")
                fail(f"{key.lstrip('+~')} must be quoted ({key}='{value}'): unquoted, Hydra would sweep its own setting"
                     f" instead of handing the search space to the sweeper. Received: {shorten(override)}")
        except Exception:
            key = override.partition("=")[0].lstrip("+~") or override
            fail(f"{shorten(key)} could not be read as key=value (quote a value that holds special characters:"
                 " key='a b,c'; see https://hydra.cc/docs/advanced/override_grammar/basic/)."
                 f" Received: {shorten(override)}")


def _reject_instantiation(overrides: list[str]) -> None:
    """Hydra instantiates any `_target_` it meets (hydra.callbacks, launchers, sweepers), so one typed on
    the command line would run arbitrary Python. Objects come only from the project's registries.
    A `_target_` built by interpolation is found in the composed config (`_reject_code`)."""
    for override in overrides:
        key, _, value = override.partition("=")
        key = key.lstrip("+~")
        if "_target_" in key or re.search(r"_target_['\"]?\s*:", value):  # the key, or a key of a dict value
            fail(f"{shorten(key)} cannot be set to a _target_ from the command line: models, optimizers, data and"
                 f" callbacks come only from trainer's own config groups and registries. Received: {shorten(key)}={shorten(value)}")
        if key == "model.module":
            # model.module names code to import; only a model's own YAML (which the user wrote, in
            # conf/model/ or their --config-dir) may name it, so no command line can run a module.
            fail("model.module is read only from a model's YAML file (conf/model/<name>.yaml or your"
                 f" --config-dir), not from the command line. Received: model.module={shorten(value)}")


def _reject_hydra_settings(overrides: list[str]) -> None:
    """Only the Hydra settings a user needs (trainer/cli/hydra_guard.py): the others can run code
    (callbacks, logging handlers), set the environment of every program the run starts
    (hydra.job.env_set, which git reads), or write where the run does not own."""
    for o in OverridesParser.create().parse_overrides(overrides):
        key = o.key_or_group
        if o.package is not None and (o.package == "hydra" or o.package.startswith(("hydra.", "_global_"))):
            fail(f"{shorten(key)}@{shorten(o.package)} cannot place a config into Hydra's settings or the config's root"
                 f" from the command line; choose the group's option instead ({key}=<option>). Received: {shorten(o.input_line)}")
        if not (key == "hydra" or key.startswith(("hydra.", "hydra/"))):
            continue
        group = key == "hydra" or "/" in key
        if (key in hydra_guard.HYDRA_GROUPS and not o.is_delete()) if group else hydra_guard.hydra_setting_allowed(key):
            continue
        hint = " (set environment variables in the shell instead)" if key.startswith("hydra.job.env") else ""
        fail(f"{shorten(key)} is not a Hydra setting the command line may change{hint}; allowed:"
             f" {hydra_guard.allowed_settings_text()}. Received: {shorten(o.input_line)}")


def _reject_code(cfg, overrides: list[str]) -> None:
    """Every code reference of the composed config, interpolations resolved, the hydra node
    included, is one the project's conf/ or Hydra's own configs name (trainer/cli/hydra_guard.py)."""
    for path, value in hydra_guard.refused_references(cfg):
        what = (f"its value could not be resolved ({type(value).__name__})" if isinstance(value, Exception)
                else f"it names {shorten(value)}")
        source = max((o for o in overrides if path.startswith(o.partition("=")[0].lstrip("+~"))),
                     key=lambda o: len(o.partition("=")[0]), default=None)
        received = shorten(source) if source else f"{path}={shorten(value)}"
        fail(f"{path} cannot name code to run ({what}): a config may name only what trainer's own conf/ and the"
             " configs of Hydra and its installed plugins name (trainer.tracking.sweep.MlflowSweep, Hydra's launchers,"
             f" sweepers and Optuna samplers, the logging handlers). Received: {received}")
    for node_key in ("hydra.job_logging", "hydra.hydra_logging"):
        node = OmegaConf.select(cfg, node_key, default=None)
        for key, level in _levels(node, node_key) if isinstance(node, DictConfig) else ():
            if not hydra_guard.level_ok(level):
                fail(f"{key} must be a logging level ({', '.join(hydra_guard.LOG_LEVELS)}) or an integer."
                     f" Received: {_received(key, level, overrides)}")


def _levels(node, path):
    for key in node.keys():
        try:
            child = node[key]
        except Exception:  # noqa: BLE001 (resolved only when the job runs, like the log file's name)
            continue
        if isinstance(child, DictConfig):
            yield from _levels(child, f"{path}.{key}")
        elif key == "level":
            yield f"{path}.{key}", child


def _reject_deletions(job: list[str], compose_job) -> None:
    """`~key` removes a key every run reads (`~model`, `~epochs`): say so, instead of letting the
    checks trip over its absence. Removing what is not there (`~debug`) is harmless."""
    deleted = [o.partition("=")[0][1:] for o in job if o.startswith("~") and not o.startswith("~hydra")]
    if not deleted:
        return
    try:
        base = compose_job([o for o in job if not o.startswith("~")])
    except Exception:  # noqa: BLE001 (the job's other overrides fail: the checks report them)
        return
    for key in deleted:
        if OmegaConf.select(base, key, default=_ABSENT) is _ABSENT:
            continue
        options = _group_options(key)
        instead = f"choose one of {', '.join(options)}" if options else f"set it instead: {key}=<value>"
        fail(f"{key} cannot be deleted: the run reads every key of its config ({instead}). Received: ~{key}")


_ABSENT = object()


# --- the checks -----------------------------------------------------------------------------------

def _compose_error(err: Exception, overrides: list[str]) -> str:
    """Turn Hydra's multi-line composition errors into our one line."""
    text = str(err).strip()
    if isinstance(err, MissingConfigException) and err.missing_cfg_file and "/" in err.missing_cfg_file:
        group, option = err.missing_cfg_file.rsplit("/", 1)
        options = ", ".join(err.options or []) or "(none)"
        return f"{group} must be one of {options}. Received: {group}={shorten(option)}"
    if "Could not override" in text or "is not in struct" in text:
        key = text.split("'")[1] if "'" in text else "?"
        value = _typed(key, overrides)
        return (f"{key} is not a config key of this run (see `python -m trainer --cfg job`; a model knob must"
                f" be listed by the selected model). Received: {key}={shorten(value if value is not None else '?')}")
    appended = re.search(r"Could not append to config\. An item is already at '([^']+)'", text)
    if appended:
        key = appended.group(1)
        value = _typed(key, overrides)
        return (f"{key} is already in the config, so +{key} cannot add it again; set it with {key}=... (or"
                f" ++{key}=... to add or override). Received: +{key}={shorten(value if value is not None else '?')}")
    cause = str(err.__cause__ or "").strip()
    if text.startswith("Error merging override") and cause:
        # The why is in the cause: "Value 'abc' of type 'str' could not be converted to Integer".
        text = f"{text}: {cause.splitlines()[0]}."
    line = " ".join(line.strip() for line in text.splitlines() if line.strip())
    return _as_typed(line, overrides) if "Received:" in line else f"{shorten(line, 3 * MAX_SHOWN)} Received: {shorten(' '.join(overrides)) or '(no overrides)'}"


def _group_options(group: str, config_dir: str | None = None) -> list[str] | None:
    """The options of config group `group`: the package's conf/ plus the user's --config-dir."""
    if "/" in group or "." in group:
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
    parsed = [(o.partition("=")[0].lstrip("+~"), o.partition("=")[2]) for o in job if "=" in o]
    for key, value in parsed:
        options = _group_options(key, config_dir)
        if options is not None and value not in options:
            return f"{key} must be one of {', '.join(options)}. Received: {key}={shorten(value)}"
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
            return f"{key} is a section of the config, not a value; set its keys instead ({inner}). Received: {key}={shorten(value)}"
        if isinstance(node, ListConfig) and not value.startswith("["):
            return f"{key} must be a list such as [{', '.join(map(str, node))}]. Received: {key}={shorten(value)}"
    return None


def _check_folder(key: str, path, overrides: list[str]) -> None:
    """A run or sweep folder Hydra will create: not a file, and in a place this user can write."""
    problem = folder_problem(str(path))
    if problem:
        fail(f"{key} must be a folder this user can write to ({problem}). Received: {_received(key, path, overrides)}")


def _set_runtime(cfg, dir_key: str, subdir_key: str | None = None, num: int | None = None) -> str:
    """What Hydra sets before a job runs (core/utils.py run_job), so `${hydra:...}` resolves as it will."""
    with read_write(cfg.hydra), open_dict(cfg.hydra):
        if num is not None:
            cfg.hydra.job.id = num
            cfg.hydra.job.num = num
    HydraConfig.instance().set_config(cfg)
    output_dir = str(OmegaConf.select(cfg, dir_key))
    if subdir_key is not None:
        output_dir = os.path.join(output_dir, str(OmegaConf.select(cfg, subdir_key)))
    for node in (cfg, HydraConfig.instance().cfg):  # the instance holds a copy: set both, not copy again
        with read_write(node.hydra.runtime), open_dict(node.hydra.runtime):
            node.hydra.runtime.output_dir = os.path.abspath(output_dir)
    return output_dir


def _sweep_jobs(hydra, master) -> tuple[object, int]:
    """(an iterator over the jobs' overrides, how many there are), as the sweeper will launch them:
    each job is (its overrides as the sweeper passes them, the same as the user typed them).

    Hydra's basic sweeper launches the product of every comma list and range (its own
    hydra.sweeper.params first); other sweepers (Optuna) sample values themselves, so only their
    discrete command-line choices are expanded and sampled values are checked as each trial starts.
    """
    arguments = OmegaConf.to_container(master.hydra.overrides.task)
    basic = _is_grid(master.hydra.sweeper._target_)
    if basic:
        params = master.hydra.sweeper.get("params") or {}
        arguments = [f"{k}={v}" for k, v in params.items()] + arguments
    parsed = OverridesParser.create(config_loader=hydra.config_loader).parse_overrides(arguments)
    axes = {}
    for o in parsed:
        key = o.get_key_element()
        if not o.is_sweep_override():  # (what the sweeper passes, what the user typed)
            axes[key] = [(f"{key}={o.get_value_element_as_str()}", o.input_line)]
        elif o.is_discrete_sweep():
            axes[key] = [(f"{key}={v}",) * 2 for v in o.sweep_string_iterator()]
        elif basic:
            kind = o.value_type.name.lower().replace("_sweep", "")
            fail(f"{key.lstrip('+~')} cannot be an {kind} in a grid sweep (Hydra's basic sweeper"
                 " runs every value of comma lists and ranges; hparams_search=optuna samples intervals)."
                 f" Received: {shorten(o.input_line)}")
        else:
            axes.pop(key, None)  # sampled by the sweeper: checked as each trial starts
    count = 1
    for values in axes.values():
        count *= len(values)
    jobs = ((list(a for a, _ in job), list(t for _, t in job)) for job in itertools.product(*axes.values()))
    return jobs, count


def _job_config(hydra, master, job: list[str], previous):
    """The config Hydra composes for one job of a sweep (config_loader.load_sweep_config).

    Composing the defaults tree is most of the cost, and in a grid over values it is the same
    for every job, so a job that differs from the previous one only in plain `key=value`
    overrides gets the previous config with those overrides applied by Hydra's own override
    code, as composition would apply them.
    """
    if previous is not None and len(previous[0]) == len(job):
        changed = [new for old, new in zip(previous[0], job) if old != new]
        parsed = OverridesParser.create().parse_overrides(changed)
        repository = hydra.config_loader.repository
        if all(o.input_line[0] not in "+~" and o.package is None and not o.is_hydra_override()
               and not repository.group_exists(o.key_or_group) for o in parsed):
            cfg = copy.deepcopy(previous[1])
            ConfigLoaderImpl._apply_overrides_to_config(parsed, cfg)
            return cfg
    return hydra.config_loader.load_sweep_config(master, job)


def _check_sweep_settings(master, overrides: list[str]) -> None:
    """Settings of the sweep itself, before the first job trains."""
    sweeper, launcher = master.hydra.sweeper, master.hydra.launcher

    def bad(key, expected):
        fail(f"{key} must be {expected}. Received: {_received(key, OmegaConf.select(master, key), overrides)}")

    for key in ("hydra.sweeper.n_trials", "hydra.sweeper.n_jobs", "hydra.sweeper.repeats"):
        if key.rsplit(".", 1)[1] in sweeper:
            value = OmegaConf.select(master, key)
            if key.endswith("n_jobs") and value is None:  # the launcher's (trainer/sweeps/optuna_sweep.py in_flight)
                continue
            if not is_int(value) or value < 1:
                bad(key, "an integer >= 1" + (", or null for the launcher's n_jobs" if key.endswith("n_jobs") else ""))
    if sweeper.get("n_jobs", 1) not in (None, 1) and str(launcher.get("_target_", "")).endswith(".BasicLauncher"):
        bad("hydra.sweeper.n_jobs", "1 or null with Hydra's basic launcher, which runs one job at a time in this"
            " process (hydra/launcher=joblib runs several)")
    if "max_failure_rate" in sweeper:
        value = sweeper.max_failure_rate
        if not is_number(value) or not 0 <= value <= 1:
            bad("hydra.sweeper.max_failure_rate", "a number in [0.0, 1.0]")
    if sweeper.get("max_batch_size") is not None and (not is_int(sweeper.max_batch_size) or sweeper.max_batch_size < 1):
        bad("hydra.sweeper.max_batch_size", "null or an integer >= 1")
    if "n_jobs" in launcher:
        value = launcher.n_jobs
        if not is_int(value) or not (value >= 1 or value == -1):
            bad("hydra.launcher.n_jobs", "an integer >= 1, or -1 for one job per CPU")


def _check_optuna(hydra, master, overrides: list[str]) -> None:
    """An Optuna sweep's own settings, its search space and its study, before any trial starts: the
    sampler, every sampled key a key of the config, both ends of every range (and every choice)
    within the config's rules, the storage reachable, and the study, when it exists, one of the
    same search (trainer/sweeps/study.py). A study with all its trials done has nothing to run."""
    from trainer.sweeps import space as spaces
    from trainer.sweeps import study as studies

    sweeper = master.hydra.sweeper
    for name in ("sampler", "seed", "direction", "storage", "study_name", "new_study", "pruner", "pruner_args", "params"):
        try:
            sweeper[name]
        except OmegaConfBaseException as err:
            if _full_error():
                raise
            typed = _typed(f"hydra.sweeper.{name}", overrides)
            fail(f"hydra.sweeper.{name} could not be resolved ({shorten(str(err).splitlines()[0])})."
                 f" Received: hydra.sweeper.{name}={shorten(typed if typed is not None else '?')}")

    def bad(key, expected):
        fail(f"{key} must be {expected}. Received: {_received(key, OmegaConf.select(master, key), overrides)}")

    if sweeper.sampler not in studies.SAMPLERS:
        bad("hydra.sweeper.sampler", f"one of {', '.join(studies.SAMPLERS)}")
    if sweeper.direction not in ("maximize", "minimize"):
        bad("hydra.sweeper.direction", "maximize or minimize")
    if not isinstance(sweeper.new_study, bool):
        bad("hydra.sweeper.new_study", "true or false")
    if sweeper.seed is not None and not is_int(sweeper.seed):
        bad("hydra.sweeper.seed", "null or an integer")
    _check_pruner(master, overrides)
    params = {str(k): str(v) for k, v in (sweeper.get("params") or {}).items()}
    task = OmegaConf.to_container(master.hydra.overrides.task)
    typed = {k: f"hydra.sweeper.params.{k}={v}" for k, v in params.items()}
    typed |= {o.get_key_element(): o.input_line for o in OverridesParser.create().parse_overrides(task) if o.is_sweep_override()}
    try:
        space, fixed = spaces.parse(spaces.arguments(params, task))
    except (spaces.SpaceError, HydraException) as err:
        fail(f"the search space could not be read: {shorten(err)} (see docs/sweeps.md for its grammar)")
    for key, dimension in space.items():
        if key.startswith("+"):
            continue
        if OmegaConf.select(master, key, default=_ABSENT) is _ABSENT:
            fail(f"{key} is not a config key of this run, so the search space cannot vary it (see `python -m trainer"
                 f" --cfg job`; a model knob must be listed by the selected model). Received: {shorten(typed[key])}")
        if sweeper.sampler == "grid":
            try:
                spaces.grid_values(dimension)
            except spaces.SpaceError:
                fail(f"hydra.sweeper.sampler=grid runs every value of each key, so each must be a choice(...) or a"
                     f" range(...); {key} is an interval. Received: {shorten(typed[key])}")
    # Each end of each dimension (every choice), alone on the config's own values: a range that
    # reaches past a rule (width from 0) is refused here rather than failing trials one by one.
    base = [f"{k}={v}" for k, v in fixed.items()]
    previous = None
    for key, dimension in space.items():
        for value in spaces.extremes(dimension)[:spaces.MAX_VALUES]:
            job = base + [f"{key}={value}"]
            try:
                job_cfg = _job_config(hydra, master, job, previous)
                previous = (job, job_cfg)
                validate(job_cfg)
            except Exception as err:  # noqa: BLE001 (a rule, or a value the config's type refuses)
                if _full_error():
                    raise
                why = str(err).partition(" Received: ")[0].strip().rstrip(".")
                fail(f"the search space of {key} includes {key}={shorten(value)}, which breaks a rule ({shorten(why)})."
                     f" Received: {shorten(typed[key])}")
    _check_storage(master, overrides)
    try:
        plan = studies.plan(master)
    except studies.StudyError as err:
        fail(str(err))
    except Exception as err:  # noqa: BLE001 (not an Optuna storage, or one Optuna cannot read)
        if _full_error():
            raise
        fail(f"hydra.sweeper.storage could not be opened as an Optuna storage ({type(err).__name__}: {shorten(err)})."
             f" Received: {_received('hydra.sweeper.storage', sweeper.storage, overrides)}")
    if plan.exists:
        from trainer.sweeps.optuna_sweep import trials_wanted

        wanted = trials_wanted(master, space)
        if plan.done >= wanted:
            print(f"sweep {plan.name} is complete: {plan.done} of {wanted} trials done, nothing to run (a larger"
                  " hydra.sweeper.n_trials continues it; hydra.sweeper.new_study=true starts a new study)", flush=True)
            sys.exit(0)


def _check_pruner(master, overrides: list[str]) -> None:
    """hydra.sweeper.pruner and its pruner_args (trainer/sweeps/pruning.py), and a sweep.metric that
    every epoch reports, which is what a trial's job reports to its pruner."""
    from trainer.sweeps import pruning

    name, args = pruning.settings(master.hydra.sweeper)
    found = pruning.problem(name, args)
    if found:
        key, expected = found
        fail(f"{key} must be {expected}. Received: {_received(key, OmegaConf.select(master, key), overrides)}")
    if name == "none":
        return
    per_epoch = [m for m in metric_names.reported(str(master.schedule.name)) if not m.startswith("test_")]
    if master.sweep.metric not in per_epoch:
        fail(f"sweep.metric must be a metric of every epoch with hydra.sweeper.pruner={name} (each trial reports it"
             f" after each epoch): {', '.join(per_epoch)}. Received: {_received('sweep.metric', master.sweep.metric, overrides)}")
    try:
        pruning.build(name, args)
    except ValueError as err:  # a combination Optuna refuses, in its own words
        received = ", ".join(_received(f"hydra.sweeper.pruner_args.{k}", v, overrides) for k, v in args.items())
        fail(f"hydra.sweeper.pruner_args must make a {name} pruner ({shorten(' '.join(str(err).split()))})."
             f" Received: {received}")


def _check_storage(master, overrides: list[str]) -> None:
    """A database storage answers and a journal file's folder is writable, before the first trial."""
    from trainer.sweeps import study as studies

    url = studies.storage_url(master, "study")
    received = _received("hydra.sweeper.storage", master.hydra.sweeper.storage, overrides)
    if not studies.is_database(url):
        problem = folder_problem(os.path.dirname(os.path.abspath(url)))
        if problem:
            fail(f"hydra.sweeper.storage must be a journal file in a folder this user can write to ({problem})."
                 f" Received: {received}")
        return
    problem = studies.database_problem(url)
    if problem:
        fail(f"hydra.sweeper.storage must be a database Optuna can reach ({problem}). Received: {received}")


def _report(err: Exception, job: list[str], compose_job, config_dir: str | None):
    """One line for a job whose config did not compose or did not pass the checks."""
    if _full_error():
        raise err
    # A value of the wrong shape (a section set to a number) trips the checks in misleading
    # ways, so it is named first.
    misplaced = _misplaced_value(job, compose_job, config_dir)
    if misplaced:
        fail(misplaced)
    if isinstance(err, ConfigError):
        fail(_as_typed(str(err), job))
    if isinstance(err, (HydraException, OmegaConfBaseException)):
        fail(_compose_error(err, job))
    # Still one line for the user; the tests treat this wording as a bug in a check.
    fail(f"the config could not be checked ({type(err).__name__}: {shorten(err)}); rerun with"
         f" HYDRA_FULL_ERROR=1 for the traceback. Received: {shorten(' '.join(job))}")


def _check_job(job_cfg, job: list[str], compose_job, config_dir: str | None, *, multirun: bool) -> None:
    """Validate one job's config; one line for what is wrong with it."""
    if multirun:  # a single run's config is the one _check_run has scanned
        _reject_code(job_cfg, job)
    if not _full_error():
        _reject_deletions(job, compose_job)
    try:
        settings = validate(job_cfg)
    except Exception as err:
        _report(err, job, compose_job, config_dir)
    if not multirun:
        return
    if settings["strategy"]["name"] == "multi_worker":
        # A process joins its cluster once (TensorFlow configures the collectives for its
        # lifetime), and every worker would open its own sweep run.
        fail("strategy must be default or mirrored in a multirun (-m): a multi_worker cluster runs one"
             " job, started on every worker with the same command. Received: strategy=multi_worker")
    reported = metric_names.reported(settings["schedule"]["name"])
    if settings["sweep"]["metric"] not in reported:
        fail(f"sweep.metric must be one of the metrics the run reports: {', '.join(reported)}."
             f" Received: {_received('sweep.metric', settings['sweep']['metric'], job)}")


def preflight(argv: list[str] | None = None, task_function=None) -> None:
    """Check the command line and every job it describes; exit with one line on the first error.

    The refusals that keep code from running hold whatever the flags (--cfg, --help, ...) and
    HYDRA_FULL_ERROR=1, which only turns the other errors into tracebacks. `task_function` is the
    @hydra.main function, whose file anchors a relative --config-path as Hydra anchors it.
    `--help` is answered here (trainer/cli/help_text.py) from the config composed for the checks;
    Hydra's app_help would compose it again and list the groups with a new repository each time.
    """
    argv = sys.argv[1:] if argv is None else argv
    args = _parse_args(argv)
    overrides = list(args.overrides)
    _check_syntax(overrides)
    _reject_instantiation(overrides)
    _reject_hydra_settings(overrides)
    hydra = _hydra(args, task_function)
    config_name = CONFIG_NAME if args.config_name is None else args.config_name
    inspect = args.help or args.hydra_help or args.cfg is not None or args.info is not None or args.shell_completion
    try:
        if inspect:  # Hydra composes these in run mode and runs nothing; only the code refusals apply
            try:
                cfg = hydra.compose_config(config_name, overrides, run_mode=RunMode.RUN)
            except Exception as err:
                if not args.help:
                    return  # Hydra reports its own composition error
                _report(err, overrides, lambda job: hydra.compose_config(config_name, job, run_mode=RunMode.RUN),
                        args.config_dir)
            _reject_code(cfg, overrides)
            if args.help:
                try:
                    print(help_text.render(hydra, cfg, resolve=args.resolve), flush=True)
                except BrokenPipeError:  # `--help | head`: the reader has all it wanted
                    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                sys.exit(0)
            return
        _check_run(hydra, config_name, overrides, args)
    finally:
        HydraConfig.instance().cfg = None
        GlobalHydra.instance().clear()


def _check_run(hydra, config_name: str, overrides: list[str], args) -> None:
    # The mode as Hydra's _run_app settles it. Asking Hydra costs a composition; trainer's own conf/
    # never sets hydra.mode (tests/test_cli_safety.py), so only another config or an override can.
    own = args.config_path is None and args.config_name is None and args.config_dir is None
    typed = any(o.lstrip("+").startswith("hydra.mode=") for o in overrides)
    mode = hydra.get_mode(config_name=config_name, overrides=overrides) if typed or not own else None
    if mode is None or (args.multirun and mode == RunMode.RUN):
        mode = RunMode.MULTIRUN if args.multirun else RunMode.RUN
        overrides = overrides + [f"hydra.mode={mode.name}"]
    multirun = mode == RunMode.MULTIRUN
    # Hydra's own split of the overrides (hydra.overrides.hydra): each job is composed with these.
    hydra_overrides = [o for o in overrides if o.lstrip("+~").startswith(("hydra.", "hydra/"))]

    def compose_job(job):
        return hydra.compose_config(config_name, hydra_overrides + job, run_mode=RunMode.RUN)

    try:
        master = hydra.compose_config(config_name, overrides, run_mode=mode)
    except Exception as err:
        if isinstance(err, MissingConfigException) and err.missing_cfg_file == config_name and not _full_error():
            fail(f"--config-name must name a primary config on the config search path ({CONFIG_PATH}, --config-path,"
                 f" --config-dir). Received: --config-name={shorten(config_name)}")
        _report(err, list(args.overrides), compose_job, args.config_dir)
    _reject_code(master, overrides)

    if not multirun:
        _check_folder("hydra.run.dir", _set_runtime(master, "hydra.run.dir"), overrides)
        _check_job(master, OmegaConf.to_container(master.hydra.overrides.task), compose_job, args.config_dir, multirun=False)
        return
    HydraConfig.instance().cfg = None  # Hydra's sweepers resolve the sweep folder before any job exists
    try:
        sweep_dir = str(master.hydra.sweep.dir)
    except OmegaConfBaseException:
        if _full_error():
            raise
        typed = _typed("hydra.sweep.dir", overrides)
        fail("hydra.sweep.dir cannot use ${hydra:...}: Hydra resolves it before any job exists (use a path,"
             " ${paths.output_dir}/... or ${now:...}; hydra.sweep.subdir may use ${hydra:...})."
             f" Received: hydra.sweep.dir={shorten(typed if typed is not None else OmegaConf.to_yaml(master.hydra.sweep))}")
    _check_folder("hydra.sweep.dir", sweep_dir, overrides)
    _set_runtime(master, "hydra.sweep.dir")
    _check_sweep_settings(master, overrides)
    if str(master.hydra.sweeper._target_).endswith(".trainer_sweeper.sweepers.OptunaSweeper"):
        _check_optuna(hydra, master, overrides)
    try:
        jobs, count = _sweep_jobs(hydra, master)
    except Exception as err:
        _report(err, list(args.overrides), compose_job, args.config_dir)
    previous = None
    for num, (job, typed) in enumerate(itertools.islice(jobs, _MAX_PREFLIGHT_JOBS)):
        try:
            job_cfg = _job_config(hydra, master, job, previous)
        except Exception as err:
            _report(err, typed, compose_job, args.config_dir)
        previous = (job, job_cfg)
        _check_folder("hydra.sweep.dir", _set_runtime(job_cfg, "hydra.sweep.dir", "hydra.sweep.subdir", num), typed)
        _check_job(job_cfg, typed, compose_job, args.config_dir, multirun=True)
    if count > _MAX_PREFLIGHT_JOBS:
        print(f"note: checked the first {_MAX_PREFLIGHT_JOBS} of the sweep's {count} jobs before starting; each"
              " later job is checked as it starts (and fails alone if its config is bad)", file=sys.stderr, flush=True)


def _multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def _is_grid(target) -> bool:
    """Hydra's basic sweeper, or trainer's grid sweeper built on it (hydra_plugins/trainer_sweeper)."""
    return str(target).endswith((".BasicSweeper", ".GridSweeper"))


def _basic_sweeper() -> bool:
    return _is_grid(HydraConfig.get().sweeper._target_)


def run_job(cfg):
    """The Hydra task function's body: train, turn bad input into one line, and return
    `sweep.metric` to the sweeper (Optuna optimizes it; the sweep summary ranks by it)."""
    from trainer.train import train

    if _multirun():
        try:
            validate(cfg)
        except ConfigError as err:
            # A value the sweeper sampled (Optuna), or a job past those checked up front: this
            # job fails, as any failing job does, and the sweep goes on.
            if not cfg.sweep.continue_on_failure or _full_error():
                raise
            return _job_failed(err)
    try:
        metrics = train(cfg)
    except Exception as err:
        end = errors.ending(err, tracked=bool(cfg.tracking.enabled))
        multirun = _multirun()
        if multirun and cfg.sweep.continue_on_failure and end.sweep_goes_on:
            return _job_failed(err)  # the job's run is already recorded FAILED with its traceback
        if _full_error() and (end.bad_input or not multirun):
            raise
        if end.bad_input:
            fail(end.line, code=end.code)
        if not multirun:
            if end.line is None:
                raise
            fail(end.line, code=end.code)
        fail(f"a job failed ({end.line or f'{type(err).__name__}: {err}'}) and sweep.continue_on_failure=false stops"
             " the sweep; its MLflow run holds the traceback", code=1)
    if cfg.sweep.metric not in metrics:
        if _multirun():
            fail(f"sweep.metric must be one of the metrics the run reports: {', '.join(sorted(metrics))}."
                 f" Received: sweep.metric={cfg.sweep.metric}")
        return None
    return metrics[cfg.sweep.metric]


def _job_failed(err: Exception) -> float:
    """End one failed job of a sweep so that the sweep goes on and its summary counts the job."""
    from trainer.tracking import sweep

    logging.getLogger("trainer").error("job failed, the sweep goes on: %s: %s", type(err).__name__, err)
    sweep.mark_failed(err)  # the sweep's summary counts it, even when it failed before its run existed
    if _basic_sweeper():
        return float("nan")  # Hydra's grid sweeper would stop at the first job that raises
    raise err  # Optuna records the trial as failed and goes on (hydra.sweeper.max_failure_rate)
