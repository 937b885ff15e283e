"""Validate the composed config once, before TensorFlow is imported, and hand back plain values.

Everything downstream (data, model, loop, tracker) receives plain Python values from here and
never looks at the DictConfig again.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import importlib.util
import os
import re
import sqlite3
import stat
import urllib.parse
from importlib.metadata import entry_points
from importlib.resources import files

from omegaconf import DictConfig, ListConfig, OmegaConf

import models
from trainer.config import checks, choices, training
from trainer.run import resume
from trainer.data import settings as data_settings
from trainer.errors import ConfigError
from trainer.use import export_config

# Top-level scalars that belong to the run rather than to the model.
RUN_KEYS = ("seed", "epochs", "batch_size", "deterministic", "precision", "label_smoothing")

# keras.utils.set_random_seed seeds numpy too, whose seeds are unsigned 32-bit integers.
MAX_SEED = 2**32 - 1

# What MLflow accepts as a tracking URI (mlflow/tracking/_tracking_service/utils.py registers
# these; mlflow/store/db/db_types.py lists the databases, each also as <db>+<driver>). A plain path
# would be a file store too, but it is refused: `tracking.uri=mlflow.db` is a typo of sqlite:///.
DATABASE_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")
OTHER_SCHEMES = ("http", "https", "file", "databricks")
_SCHEME = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*):")


@functools.cache
def _primary_config() -> DictConfig:
    """conf/config.yaml as written (not composed): which top-level keys the config tree has."""
    return OmegaConf.create((files("conf") / "config.yaml").read_text())


def knob_slots() -> tuple[str, ...]:
    """The top-level keys conf/config.yaml leaves for model knobs (`depth: null`, ...)."""
    primary = _primary_config()
    return tuple(k for k in primary if k not in RUN_KEYS and k != "defaults" and not OmegaConf.is_dict(primary[k]))


def sections() -> tuple[str, ...]:
    """Top-level sections of the composed config: one per config group of the defaults list, the
    ones conf/config.yaml writes itself (resume, sweep), and Hydra's own."""
    primary = _primary_config()
    groups = [next(iter(d)) for d in primary.defaults if OmegaConf.is_dict(d)]
    return (*groups, *(k for k in primary if OmegaConf.is_dict(primary[k])), "hydra")



def _check_model_module(module) -> None:
    """`model.module` names the module that registers a model of the user's own; find it before
    importing it, so a typo fails with the key named rather than an ImportError."""
    if module is None:
        return
    if not isinstance(module, str) or not all(part.isidentifier() for part in module.split(".")):
        raise checks.fail("model.module", "null or a dotted Python module name such as my_models.tiny", module)
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise checks.fail(
            "model.module",
            "an importable Python module (run from the folder that holds it or put that folder on PYTHONPATH)",
            module,
        )
    # The user's own code, named by their model YAML: its definition registers the model and its knob
    # rules. A definition imports no Keras (models/definition.py), so this stays before TensorFlow.
    models.import_model_module(module)


def _plain(value):
    return OmegaConf.to_container(value, resolve=True) if isinstance(value, (ListConfig, DictConfig)) else value


def model_knobs(cfg: DictConfig) -> dict:
    """The selected model's knob values, checked by the model's own definition (models/<name>.py).
    A knob set for a model that does not have it is an error, and a top-level key that is neither
    a knob slot nor a section is not a config key at all."""
    name = cfg.model.name
    if not isinstance(name, str) or not name.strip():
        raise checks.fail("model.name", "the name of a registered model such as mlp", name)
    declared = models.knobs(name)
    reserved = [k for k in declared if k in (*RUN_KEYS, *sections())]
    if reserved:  # a knob named like a run setting or a section would be handed the wrong value
        raise ConfigError(f"model '{checks.shorten(name)}' has a knob named {reserved[0]}, which is a key of the run"
                          f" config; rename the knob in its definition. Received: knob {reserved[0]}")
    slots, known_sections = knob_slots(), sections()
    for key, value in cfg.items():
        if key in RUN_KEYS or key in declared or (key in known_sections and isinstance(value, DictConfig)):
            continue
        if key not in slots:
            while isinstance(value, DictConfig) and len(value) == 1:  # `+foo.bar=1`: name foo.bar
                inner = next(iter(value))
                key, value = f"{key}.{inner}", value[inner]
            raise checks.unknown_key(key, value)
        if value is not None:
            raise ConfigError(
                f"{key} is not a knob of model '{checks.shorten(name)}'; its knobs are:"
                f" {checks.shorten(', '.join(declared) or 'none')}. Received: {key}={checks.shown(value)}"
            )
    missing = [checks.shorten(k) for k in declared if k not in cfg or cfg[k] is None]
    if missing:
        raise ConfigError(
            f"model '{checks.shorten(name)}' has knob {missing[0]} but its YAML (conf/model/{checks.shorten(name)}.yaml"
            f" or your --config-dir) gives it no value. Received: {missing[0]}=null"
        )
    return models.define(name, {k: _plain(cfg[k]) for k in declared}).knobs()


def _other_schemes() -> list[str]:
    """http, https, file, databricks and the schemes of installed MLflow store plugins."""
    plugins = {ep.name for ep in entry_points(group="mlflow.tracking_store")}
    return [*OTHER_SCHEMES, *sorted(plugins - set(OTHER_SCHEMES) - set(DATABASE_SCHEMES))]


def _check_uri_scheme(uri) -> str:
    """The scheme of tracking.uri (without a +driver) if MLflow has a store for it."""
    found = _SCHEME.match(uri) if isinstance(uri, str) else None
    scheme = found and found["scheme"]
    base, _, driver = (scheme or "").partition("+")
    if uri == "databricks" or (base in DATABASE_SCHEMES and "+" not in driver) or scheme in _other_schemes():
        return "databricks" if uri == "databricks" else base
    allowed = f"{', '.join(DATABASE_SCHEMES)} (each also as <database>+<driver>), {', '.join(_other_schemes())}"
    raise checks.fail("tracking.uri", "an MLflow tracking URI such as sqlite:///path/mlflow.db or"
                      f" http://host:5000 (schemes: {allowed})", _without_password(uri))


def _without_password(uri):
    return re.sub(r"(//[^/@:]*:)[^/@]*@", r"\1***@", uri) if isinstance(uri, str) else uri


def _sqlite_problem(path: str) -> str | None:
    """Why `path` cannot hold the run's SQLite store, or None: it must be an SQLite database
    (or an empty file) or not exist yet, and its folder must take the journal and lock files."""
    try:
        info = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return checks.folder_problem(os.path.dirname(os.path.abspath(path)))
    except OSError as err:
        return f"{checks.shorten(path)} cannot be read: {err.strerror}"
    if stat.S_ISDIR(info.st_mode):
        return f"{checks.shorten(path)} is a folder"
    if not stat.S_ISREG(info.st_mode):
        return f"{checks.shorten(path)} is not a regular file"
    if not os.access(path, os.R_OK):
        return f"{checks.shorten(path)} cannot be read: {os.strerror(errno.EACCES)}"
    try:
        # Read through SQLite, never open() and close(): closing any descriptor of a database file
        # drops every POSIX lock this process holds on it, SQLite's own included (SQLite defers its
        # own closes while the process holds locks). A sweep's process keeps the store open while it
        # checks each job's config, so another process started on the same store would then rebuild
        # the WAL index under this one's readers (SQLITE_IOERR_SHORT_READ), or write under them.
        # immutable=1: only page 1 is read, and no -wal or -shm file is created next to the user's.
        with contextlib.closing(sqlite3.connect(f"file:{urllib.parse.quote(path)}?mode=ro&immutable=1",
                                                uri=True)) as db:
            db.execute("PRAGMA schema_version").fetchone()
    except sqlite3.DatabaseError as err:
        if err.sqlite_errorcode == sqlite3.SQLITE_NOTADB:
            return f"{checks.shorten(path)} is not an SQLite database"
        return f"{checks.shorten(path)} cannot be read: {err}"
    if not os.access(path, os.W_OK):
        return f"{checks.shorten(path)} is not writable"
    return checks.folder_problem(os.path.dirname(os.path.abspath(path)))


def _check_sqlite_uri(uri: str) -> None:
    # MLflow's store reads sqlite:///<path> (a relative path) or sqlite:////<absolute path>;
    # sqlite:/// or sqlite:// alone is an in-memory database that is gone when the run ends.
    rest = uri.partition(":")[2]
    path = rest[3:].partition("?")[0] if rest.startswith("///") else ""
    if not path or path == ":memory:" or path.endswith("/"):
        raise checks.fail("tracking.uri", "sqlite:/// followed by the path of a database file, such as"
                          " sqlite:///mlflow.db or sqlite:////abs/path/mlflow.db (without a path MLflow keeps"
                          " the runs in memory and loses every one)", uri)
    problem = _sqlite_problem(path)
    if problem:
        raise checks.fail("tracking.uri", "an SQLite database, or a new file in a folder this user can write to"
                          f" ({problem})", uri)


def _check_file_uri(uri: str) -> None:
    path = urllib.parse.urlparse(uri).path
    problem = checks.folder_problem(path) if path else "no folder named"
    if problem:
        raise checks.fail("tracking.uri", f"a file: URI of a folder this user can write to ({problem})", uri)


def _check_tracking(tracking: DictConfig) -> None:
    checks.boolean("tracking.enabled", tracking.enabled)
    scheme = _check_uri_scheme(tracking.uri)
    if tracking.enabled and scheme == "sqlite":
        _check_sqlite_uri(tracking.uri)
    elif tracking.enabled and scheme == "file":
        _check_file_uri(tracking.uri)
    if not isinstance(tracking.experiment, str) or not tracking.experiment.strip():
        raise checks.fail("tracking.experiment", "a non-empty experiment name", tracking.experiment)
    checks.int_at_least("tracking.log_every_n_steps", tracking.log_every_n_steps, 0)
    checks.boolean("tracking.system_metrics", tracking.system_metrics)
    name = tracking.register_as
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise checks.fail("tracking.register_as", "null or a registered-model name", name)


def _check_sweep(sweep: DictConfig) -> None:
    if not isinstance(sweep.metric, str) or not sweep.metric:
        raise checks.fail("sweep.metric", "the name of a metric the run reports, such as val_accuracy", sweep.metric)
    checks.one_of("sweep.direction", sweep.direction, ("maximize", "minimize"))
    checks.boolean("sweep.continue_on_failure", sweep.continue_on_failure)


def _check_writable(key: str, path) -> None:
    """A folder the run will write to must be writable (or creatable) now, not after a TensorFlow
    start-up and an hour of training."""
    if path is None:
        return
    if not isinstance(path, str) or not path.strip() or "://" in path:
        # trainer/tracking/store.py hands MLflow file://<this folder>; a server keeps artifacts where its
        # --artifacts-destination says (tracking=server sets this to null).
        raise checks.fail(key, "null or the path of a local folder (a tracking server keeps artifacts where its"
                          " --artifacts-destination says)", path)
    problem = checks.folder_problem(path)
    if problem:
        raise checks.fail(key, f"a folder this user can write to ({problem})", path)


def _check_contradictions(cfg: DictConfig) -> None:
    """Settings that are each valid but cannot hold together; caught here rather than after a
    TensorFlow start-up (Keras rejects both clips only when it builds the optimizer)."""
    if cfg.tracking.register_as is not None and not cfg.tracking.enabled:
        raise ConfigError(
            "tracking.register_as needs tracking.enabled=true: an untracked run logs no model to register."
            f" Received: tracking.register_as={checks.shown(cfg.tracking.register_as)}, tracking.enabled=false"
        )
    if cfg.optimizer.get("clipnorm") is not None and cfg.optimizer.get("clipvalue") is not None:
        raise ConfigError(
            "optimizer.clipnorm and optimizer.clipvalue cannot both be set (Keras clips one way); keep one."
            f" Received: optimizer.clipnorm={checks.shown(cfg.optimizer.clipnorm)},"
            f" optimizer.clipvalue={checks.shown(cfg.optimizer.clipvalue)}"
        )


def validate(cfg: DictConfig) -> dict:
    """Check the whole config; return it as plain containers with `model.knobs` as a dict."""
    checks.int_at_least("epochs", cfg.epochs, 1)
    checks.int_at_least("batch_size", cfg.batch_size, 1)
    checks.int_in("seed", cfg.seed, 0, MAX_SEED)
    checks.number_in("label_smoothing", cfg.label_smoothing, 0, 1)
    checks.one_of("model.variant", cfg.model.variant, choices.VARIANTS)
    training.check(cfg)
    data_settings.check(cfg.data)
    _check_model_module(cfg.model.module)
    knobs = model_knobs(cfg)
    _check_tracking(cfg.tracking)
    _check_sweep(cfg.sweep)
    export_formats = export_config.check("export.formats", cfg.export.formats, empty_ok=True)
    _check_contradictions(cfg)
    if cfg.tracking.enabled:
        _check_writable("tracking.artifact_location", cfg.tracking.artifact_location)

    # The hydra node (present when a test composes with return_hydra_config) is Hydra's own.
    plain = {
        key: OmegaConf.to_container(cfg[key], resolve=True, throw_on_missing=True)
        for key in cfg
        if key != "hydra" and key not in knobs and isinstance(cfg[key], DictConfig)
    }
    plain.update({key: cfg[key] for key in RUN_KEYS})
    plain["model"]["knobs"] = knobs
    plain["export"]["formats"] = export_formats
    resume.check_folder(plain)  # a resume.dir of the user's files, or of another config, is refused here
    return plain
