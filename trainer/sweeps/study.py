"""The Optuna study behind `hparams_search=optuna`: where it is stored, what it is called, and what
a rerun of the same command finds in it.

A study is stored by default in an Optuna journal file under the outputs folder,
`<outputs>/studies/<name>.journal` (docs/sweeps.md says why a journal file rather than SQLite);
`hydra.sweeper.storage` names another one: a database URL (`postgresql://...`, `sqlite:///...`)
or a journal file's path. Its name is `hydra.sweeper.study_name`, or `optuna-<hash>` of the
command's overrides that make the search the same search (`key`); the search space itself and the
objective are kept in the study and compared on a rerun, so a changed search is refused rather
than mixed in. `hydra.sweeper.new_study=true` starts `<name>-2`, `-3`, ...; a plain rerun then
continues the newest of them.

Nothing here imports Optuna at module level: the fast path (trainer/cli/command.py) reads the
names and checks the storage before TensorFlow loads, and imports Optuna only for an Optuna sweep.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import re
import socket
import tempfile
import threading

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from trainer.sweeps import space as spaces

SAMPLERS = ("tpe", "random", "cmaes", "grid")
# Keys that change where a sweep writes or how it reports, not what it searches (as for the resume
# checkpoint's identity, trainer/run/resume.py): the same search is found again with other values.
_NOT_THE_SEARCH = ("paths.", "resume.", "tracking.", "callbacks.progress", "data.data_dir", "hydra.")
# Attributes of the study and of its trials (Optuna user attrs).
SPACE_ATTR, OBJECTIVE_ATTR, PARENT_ATTR = "sweep.space", "sweep.objective", "sweep.parent_run_id"
OWNER_ATTR, OVERRIDES_ATTR, REPLICATES_ATTR = "sweep.owner", "sweep.overrides", "sweep.replicate_values"


class StudyError(ValueError):
    """A study this command cannot use; the message is the one line the user sees."""


def key(config, *, grid: bool) -> str:
    """What makes this sweep the same sweep on a rerun: `<optuna|grid>-<hash>` of the command's
    overrides (sorted, without the keys of _NOT_THE_SEARCH). An Optuna sweep leaves out its sampled
    keys (its search space, compared separately so a change is named, not silently a new study);
    a grid keeps them (the grid is the sweep) and adds hydra.sweeper.params."""
    task = [str(o) for o in config.hydra.overrides.task]
    parsed = OverridesParser.create().parse_overrides(task)
    kept = [o.input_line for o in parsed
            if (grid or not o.is_sweep_override()) and not o.get_key_element().lstrip("+~").startswith(_NOT_THE_SEARCH)]
    if grid:
        kept += [f"hydra.sweeper.params.{k}={v}" for k, v in (OmegaConf.select(config, "hydra.sweeper.params") or {}).items()]
    digest = hashlib.sha256(json.dumps(sorted(kept)).encode()).hexdigest()[:12]
    return f"{'grid' if grid else 'optuna'}-{digest}"


def search(config) -> tuple[dict[str, dict], dict[str, str]]:
    """(space, fixed overrides) of an Optuna sweep: hydra.sweeper.params, then the command line's."""
    sweeper = config.hydra.sweeper
    params = OmegaConf.to_container(sweeper.params) if sweeper.get("params") else {}
    return spaces.parse(spaces.arguments(params, [str(o) for o in config.hydra.overrides.task]))


def objective(config) -> str:
    """What a trial's value is. Seed replicates change it (a mean over seeds, and job numbers that
    count replicates), so a study keeps one `repeats`."""
    goal = f"{config.sweep.metric} {config.hydra.sweeper.direction}"
    repeats = int(config.hydra.sweeper.get("repeats") or 1)
    return goal if repeats == 1 else f"{goal}, mean of {repeats} seeds"


def storage_url(config, base: str) -> str:
    configured = config.hydra.sweeper.get("storage")
    if configured:
        return str(configured)
    return os.path.join(str(config.paths.output_dir), "studies", f"{base}.journal")


def is_database(url: str) -> bool:
    return "://" in url


def database_problem(url: str) -> str | None:
    """Why the database at `url` cannot be used (unknown kind, driver not installed, not
    answering), or None. A SQLite file only needs a folder it can be created in."""
    import sqlalchemy
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception as err:  # noqa: BLE001 (SQLAlchemy's ArgumentError, ValueError)
        return f"not a database URL: {err}"
    if parsed.get_backend_name() == "sqlite":
        from trainer.config.checks import folder_problem

        database = parsed.database or ""
        return folder_problem(os.path.dirname(os.path.abspath(database))) if database and database != ":memory:" else None
    try:
        engine = sqlalchemy.create_engine(url, connect_args={"connect_timeout": 5}
                                          if parsed.get_backend_name() == "postgresql" else {})
        with engine.connect():
            pass
        engine.dispose()
    except ModuleNotFoundError as err:
        return f"its driver is not installed: {err.name}"
    except Exception as err:  # noqa: BLE001 (NoSuchModuleError, OperationalError, ...)
        return " ".join(str(getattr(err, "orig", None) or err).split())[:300]
    return None


def open_storage(url: str):
    import optuna

    if is_database(url):
        # Opening a new database creates Optuna's tables; workers starting at once would race to.
        with locked(url, "<tables>"):
            return optuna.storages.RDBStorage(url)
    from optuna.storages.journal import JournalFileBackend

    os.makedirs(os.path.dirname(os.path.abspath(url)), exist_ok=True)
    return optuna.storages.JournalStorage(JournalFileBackend(os.path.abspath(url)))


def _numbered(names, base: str) -> list[tuple[int, str]]:
    """The studies of `base` in a storage: base itself (1) and base-2, base-3, ... (new_study)."""
    found = []
    for name in names:
        if name == base:
            found.append((1, name))
        else:
            match = re.fullmatch(re.escape(base) + r"-(\d+)", name)
            if match:
                found.append((int(match.group(1)), name))
    return sorted(found)


@dataclasses.dataclass
class Plan:
    """What this command does with its study: its storage and name, whether it exists (and so is
    resumed), and the search it must match."""

    storage: str
    name: str
    exists: bool
    space: dict[str, str]
    objective: str
    done: int = 0  # trials of an existing study that ended (complete, failed or pruned)


def plan(config) -> Plan:
    """Find this command's study without changing the storage; StudyError for a changed search."""
    sweeper = config.hydra.sweeper
    base = str(sweeper.get("study_name") or key(config, grid=False))
    url = storage_url(config, base)
    space, _ = search(config)
    wanted = spaces.describe_all(space)
    goal = objective(config)
    if not is_database(url) and not os.path.exists(url):
        return Plan(url, base, False, wanted, goal)
    storage = open_storage(url)
    studies = {s.study_name: s for s in storage.get_all_studies()}
    numbered = _numbered(studies, base)
    if sweeper.get("new_study"):
        name = f"{base}-{numbered[-1][0] + 1}" if numbered else base
        return Plan(url, name, False, wanted, goal)
    if not numbered:
        return Plan(url, base, False, wanted, goal)
    name = numbered[-1][1]
    attrs = studies[name].user_attrs
    had, had_goal = attrs.get(SPACE_ATTR), attrs.get(OBJECTIVE_ATTR)
    changes = []
    if had is not None and had != wanted:
        changes.append(spaces.difference(had, wanted))
    if had_goal is not None and had_goal != goal:
        changes.append(f"objective {had_goal} -> {goal}")
    if changes:
        raise StudyError(
            f"the search changed since study {name} was made ({'; '.join(changes)}): a study keeps one search"
            " space; add hydra.sweeper.new_study=true to start a new study, or set hydra.sweeper.study_name."
            f" Storage: {url}")
    from optuna.trial import TrialState

    ended = storage.get_all_trials(studies[name]._study_id, deepcopy=False,
                                   states=(TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED))
    return Plan(url, name, True, wanted, goal, len(ended))


def create_or_load(config, plan_: Plan):
    """The study of `plan_`, created with its search and objective if it does not exist yet."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(plan_.storage)
    direction = str(config.hydra.sweeper.direction)
    study = optuna.create_study(study_name=plan_.name, storage=storage, direction=direction, load_if_exists=True)
    if SPACE_ATTR not in study.user_attrs:
        study.set_user_attr(SPACE_ATTR, plan_.space)
        study.set_user_attr(OBJECTIVE_ATTR, plan_.objective)
    return study


# --- many workers on one study ------------------------------------------------------------------

_engines: dict[str, object] = {}
_engines_lock = threading.Lock()


@contextlib.contextmanager
def locked(url: str, name: str):
    """Held by one worker of the study at a time, across threads, processes and (on PostgreSQL)
    machines: what a worker reads from the study and then writes must not interleave with another
    worker's (creating the sweep's parent run once, counting trials then asking one, claiming an
    interrupted trial). Optuna's storages have no compare-and-set for these, so the lock is the
    database's (a PostgreSQL advisory lock) or a file's (flock: a journal or SQLite file, which one
    machine shares; any other database gets a lock file in the temporary folder, this host only)."""
    digest = hashlib.sha256(f"{url}\n{name}".encode()).digest()
    if url.startswith("postgresql"):
        import sqlalchemy

        with _engines_lock:
            if url not in _engines:
                _engines[url] = sqlalchemy.create_engine(url, pool_pre_ping=True)
        key = int.from_bytes(digest[:8], "big", signed=True)
        with _engines[url].connect() as connection:  # a session of its own: the lock is per session
            connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": key})
            try:
                yield
            finally:
                connection.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), {"key": key})
        return
    if not is_database(url):
        path = f"{os.path.abspath(url)}.sweep-lock"
    elif url.startswith("sqlite:///") and url[len("sqlite:///"):] not in ("", ":memory:"):
        path = f"{os.path.abspath(url[len('sqlite:///'):])}.sweep-lock"
    else:
        path = os.path.join(tempfile.gettempdir(), f"trainer-study-{digest.hex()[:16]}.lock")
    # Each holder opens the file itself: flock excludes other open files, in this process too.
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


# --- who runs a trial -----------------------------------------------------------------------------

def owner() -> str:
    """This process, as a trial or sweep records it: host, pid and the process's start time (a
    reused pid is another process)."""
    import psutil

    return f"{socket.gethostname()}:{os.getpid()}:{psutil.Process().create_time():.2f}"


def owner_alive(recorded: str | None) -> bool | None:
    """Whether the process `recorded` names still runs: True or False on this host, None (cannot
    tell) for another host or no record."""
    import psutil

    if not recorded:
        return None
    host, _, rest = recorded.partition(":")
    pid, _, started = rest.partition(":")
    if host != socket.gethostname():
        return None
    try:
        return f"{psutil.Process(int(pid)).create_time():.2f}" == started
    except (psutil.Error, ValueError):
        return False


def counts(study) -> dict[str, int]:
    from optuna.trial import TrialState

    found = {"done": 0, "failed": 0, "pruned": 0, "running": 0}
    for trial in study.get_trials(deepcopy=False):
        if trial.state == TrialState.COMPLETE:
            found["done"] += 1
        elif trial.state == TrialState.FAIL:
            found["done"] += 1
            found["failed"] += 1
        elif trial.state == TrialState.PRUNED:
            found["done"] += 1
            found["pruned"] += 1
        elif trial.state == TrialState.RUNNING:
            found["running"] += 1
    return found


def interrupted(study) -> list:
    """RUNNING trials whose process is gone (killed, or the machine rebooted): a rerun runs them
    again with the same overrides, so each resumes from its own checkpoint. A trial of another host
    cannot be judged, so it is never taken: its own worker, or a rerun on its host, runs it."""
    from optuna.trial import TrialState

    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            if owner_alive(t.user_attrs.get(OWNER_ATTR)) is False]


def sampler(name: str, seed, space: dict[str, dict], trials_so_far: int):
    """An Optuna sampler, seeded from `seed` and the number of trials the study already holds: a
    resumed study must not draw the first trials' values again."""
    import numpy as np
    import optuna

    if name == "grid":
        # The grid sampler's seed shuffles the grid that its trials' grid ids index: every rerun and
        # every worker of the study must use the same seed, or an id names another point.
        return optuna.samplers.GridSampler({k: spaces.grid_values(d) for k, d in space.items()},
                                           seed=None if seed is None else int(seed))
    if seed is not None:
        seed = int(np.random.SeedSequence([int(seed), trials_so_far]).generate_state(1)[0])
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed)
    raise StudyError(f"hydra.sweeper.sampler must be one of {', '.join(SAMPLERS)}. Received: hydra.sweeper.sampler={name}")
