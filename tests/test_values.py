"""The value and path checks of trainer/config/checks.py and trainer/config/validate.py: every number is finite,
`seed` fits numpy, tracking paths are checked before anything is written, unknown top-level keys
are config keys, and a message never echoes more than a few hundred characters of a value.

In-process (a composition costs milliseconds); the rejected-input table (docs/rejected-input.md)
runs the same inputs through the real CLI.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sqlite3
import subprocess
import sys

import numpy as np
import pytest
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hypothesis import given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

import models
from models import registry
from trainer.config import checks
from trainer.config.validate import MAX_SEED, validate
from trainer.errors import ConfigError

from tests.conftest import REPO


def _error(make_cfg, *overrides) -> str:
    return _message(lambda: validate(make_cfg(*overrides)))


def _message(call) -> str:
    with pytest.raises(ConfigError) as err:
        call()
    message = str(err.value)
    assert "\n" not in message
    return message


def _with(cfg, key: str, value):
    """A copy of composed config `cfg` with `key` set to the value (as Hydra would have parsed it),
    so one composition serves many cases."""
    cfg = cfg.copy()
    OmegaConf.update(cfg, key, value, force_add=True)
    return cfg


def _numeric_keys() -> dict[tuple[str, ...], list[str]]:
    """{group choices: keys} for every int or float leaf of every option of the groups that hold
    numbers, read from the real conf/ tree, so a key added there is covered without a new row."""
    choices = [(), ("schedule=constant",)] + [(f"{group}={option}",) for group, options in {
        "optimizer": ("adam", "adamw", "sgd", "rmsprop"),
        "schedule": ("exponential", "reduce_on_plateau"),
        "model": ("mlp", "conditional", "dynamic", "cnn", "resnet"),
    }.items() for option in options]
    found, seen = {}, set()
    GlobalHydra.instance().clear()
    with initialize_config_module("conf", version_base="1.3"):
        for choice in choices:
            cfg = OmegaConf.to_container(compose("config", overrides=list(choice)), resolve=False)
            stack = [("", cfg)]
            while stack:
                prefix, node = stack.pop()
                for key, value in node.items():
                    if isinstance(value, dict):
                        stack.append((f"{prefix}{key}.", value))
                    elif isinstance(value, (int, float)) and not isinstance(value, bool) and f"{prefix}{key}" not in seen:
                        seen.add(f"{prefix}{key}")
                        found.setdefault(choice, []).append(f"{prefix}{key}")
    GlobalHydra.instance().clear()
    return found


NUMERIC_KEYS = _numeric_keys()


def test_the_numeric_keys_cover_every_kind_of_setting():
    keys = {key for keys in NUMERIC_KEYS.values() for key in keys}
    assert {"seed", "epochs", "optimizer.learning_rate", "optimizer.momentum", "optimizer.weight_decay",
            "schedule.warmup_fraction", "schedule.alpha", "schedule.decay_rate", "schedule.factor", "schedule.min_lr",
            "callbacks.early_stopping.min_delta", "data.validation_fraction", "data.augment.translate",
            "resume.every_seconds", "dropout", "l2"} <= keys, keys


@pytest.mark.parametrize("choice", list(NUMERIC_KEYS), ids=[" ".join(c) or "defaults" for c in NUMERIC_KEYS])
def test_every_numeric_key_rejects_nan_and_infinity(make_cfg, choice):
    cfg = make_cfg(*choice)
    for key in NUMERIC_KEYS[choice]:
        for value in (math.nan, math.inf, -math.inf):
            message = _message(lambda: validate(_with(cfg, key, value)))
            assert message.startswith(f"{key} must be "), message
            assert message.endswith(f"Received: {key}={value}"), message


def test_every_spelling_of_nan_and_infinity_is_rejected(make_cfg):
    """Hydra's grammar reads nan, inf and -inf as floats, 1e400 overflows to inf, and a YAML-style
    .nan stays a string: every one of them is refused, in one composition each."""
    for value in ("nan", "NaN", "inf", "-inf", "+inf", ".nan", ".inf", "1e400", "-1e400", "'nan'"):
        message = _error(make_cfg, f"optimizer.learning_rate={value}")
        assert message.startswith("optimizer.learning_rate must be a finite number > 0.0. Received: "), message


def test_nan_in_lists_is_rejected(make_cfg):
    assert _error(make_cfg, "model=resnet", "widths=[16,nan,64]").startswith("widths must be a list of integers >= 1")
    assert _error(make_cfg, "data.image_size=[8,inf]").startswith("data.image_size must be null or [height, width]")


@settings(max_examples=200, deadline=None)
@given(st.floats(allow_nan=True, allow_infinity=True) | st.integers(min_value=-(10**400), max_value=10**400))
def test_number_checks_accept_only_finite_numbers_in_range(value):
    """NaN compares False with every bound, so a check written as `not value <= low` would pass it."""
    for check, accepts in (
        (lambda v: checks.number_above("x", v, 0.0), lambda v: v > 0),
        (lambda v: checks.number_above("x", v, 0.0, inclusive=True), lambda v: v >= 0),
        (lambda v: checks.number_in("x", v, 0.0, 1.0), lambda v: 0 <= v < 1),
        (lambda v: checks.number_in("x", v, 0.0, 1.0, low_open=True, high_open=False), lambda v: 0 < v <= 1),
    ):
        finite = not isinstance(value, float) or math.isfinite(value)
        try:
            got = check(value)
        except ConfigError as err:
            assert not (finite and abs(value) < 1e300 and accepts(value)), (value, err)
            assert str(err).startswith("x must be ") and "Received: x=" in str(err) and len(str(err)) < 500
        else:
            assert finite and accepts(value) and math.isfinite(got), value


def test_seed_is_an_unsigned_32_bit_integer(make_cfg):
    cfg = make_cfg()
    for seed in (0, MAX_SEED):
        assert validate(_with(cfg, "seed", seed))["seed"] == seed
    for seed, shown in ((-1, "-1"), (MAX_SEED + 1, "4294967296"), (True, "true"), (1.0, "1.0"), ("7", "'7'")):
        assert _message(lambda: validate(_with(cfg, "seed", seed))) == (
            f"seed must be an integer in [0, 4294967295]. Received: seed={shown}")
    # The bound is numpy's (keras.utils.set_random_seed seeds numpy): the largest seed works there.
    np.random.seed(MAX_SEED)
    with pytest.raises(ValueError):
        np.random.seed(MAX_SEED + 1)


# --- tracking paths ---------------------------------------------------------------------------

def _uri_error(cfg, uri: str) -> str:
    return _message(lambda: validate(_with(cfg, "tracking.uri", uri)))


def test_sqlite_uris_that_lose_runs_or_name_no_file_are_refused(make_cfg, tmp_path):
    cfg = make_cfg()
    for uri in ("sqlite:///", "sqlite://", "sqlite:", "sqlite:///:memory:", "sqlite://localhost/x.db",
                f"sqlite:///{tmp_path}/new/"):
        assert _uri_error(cfg, uri).startswith("tracking.uri must be sqlite:/// followed by the path of a"
                                                    " database file"), uri


def test_sqlite_uri_must_name_a_database_or_a_new_file(make_cfg, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not a database, long enough to have a header")
    short = tmp_path / "short.db"
    short.write_bytes(b"SQLite")
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)  # opening it to read the header would block: its type is checked first
    expected = "tracking.uri must be an SQLite database, or a new file in a folder this user can write to"
    cfg = make_cfg()
    for path, problem in ((tmp_path, f"{tmp_path} is a folder"), (text, f"{text} is not an SQLite database"),
                          (short, f"{short} is not an SQLite database"), (fifo, f"{fifo} is not a regular file"),
                          (text / "x.db", f"{text} is a file, not a folder")):
        assert _uri_error(cfg, f"sqlite:///{path}") == (
            f"{expected} ({problem}). Received: tracking.uri=sqlite:///{path}")
    assert text.read_text().startswith("not a database")  # nothing written to the user's file


def test_checking_a_store_this_process_holds_open_keeps_its_locks(make_cfg, tmp_path):
    # A sweep's process holds the store open while it validates each job's config. Reading the
    # file's header with open() and close() dropped every POSIX lock the process held on it, so a
    # second sweep on the same store got the write lock under the first one (and a first sweep
    # failed with SQLITE_IOERR_SHORT_READ).
    path = tmp_path / "mlflow.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("create table t (x)")
    holder.execute("begin immediate")  # this process now holds the write lock
    holder.execute("insert into t values (1)")
    validate(_with(make_cfg(), "tracking.uri", f"sqlite:///{path}"))
    other = subprocess.run([sys.executable, "-c", "import sqlite3, sys; db = sqlite3.connect(sys.argv[1], timeout=0,"
                            " isolation_level=None); db.execute('begin immediate')", str(path)],
                           capture_output=True, text=True)
    holder.execute("commit")
    holder.close()
    assert "database is locked" in other.stderr, other.stderr or "another process took the write lock"


def test_valid_sqlite_stores_are_accepted(make_cfg, tmp_path, monkeypatch):
    from trainer.tracking import store

    fresh = tmp_path / "not" / "yet" / "there" / "mlflow.db"
    empty = tmp_path / "empty.db"
    empty.touch()
    plain = tmp_path / "plain.db"
    sqlite3.connect(plain).execute("create table t (x)").connection.close()
    real = tmp_path / "real" / "mlflow.db"
    store.prepare_store(f"sqlite:///{real}")  # a real MLflow store: tables, WAL journal, lock file
    monkeypatch.chdir(tmp_path)
    cfg = make_cfg()
    for uri in (f"sqlite:///{fresh}", f"sqlite:///{empty}", f"sqlite:///{plain}", f"sqlite:///{real}",
                "sqlite:///relative.db", f"sqlite+pysqlite:///{fresh}"):
        assert validate(_with(cfg, "tracking.uri", uri))["tracking"]["uri"] == uri
    assert not fresh.parent.exists()  # checking creates nothing


def test_sqlite_store_in_a_read_only_folder_is_refused(make_cfg, tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    if os.geteuid() == 0:  # root writes through permission bits, not through a read-only mount
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro", "tmpfs", str(folder)], capture_output=True)
        if done.returncode:
            pytest.skip(f"cannot mount a read-only tmpfs here: {done.stderr.decode().strip()}")
    else:
        folder.chmod(0o555)
    try:
        assert _uri_error(make_cfg(), f"sqlite:///{folder}/mlflow.db") == (
            "tracking.uri must be an SQLite database, or a new file in a folder this user can write to"
            f" ({folder} is not writable). Received: tracking.uri=sqlite:///{folder}/mlflow.db")
    finally:
        if os.geteuid() == 0:
            subprocess.run(["umount", "-l", str(folder)], check=False)
        else:
            folder.chmod(0o755)


def test_paths_are_not_checked_when_tracking_is_off(make_cfg, tmp_path):
    plain = validate(make_cfg("tracking=none", f"tracking.uri=sqlite:///{tmp_path}"))
    assert plain["tracking"]["enabled"] is False


def test_unknown_schemes_are_refused_with_what_mlflow_accepts(make_cfg, tmp_path):
    cfg = make_cfg()
    for uri in ("postgres://db/mlflow", "mlflow.db", "s3://bucket/x", "databricks-uc", "postgresql+a+b://db/m", 3):
        message = _uri_error(cfg, uri)
        assert message.startswith("tracking.uri must be an MLflow tracking URI such as sqlite:///path/mlflow.db or"
                                  " http://host:5000 (schemes: sqlite, postgresql, mysql, mssql (each also as"
                                  " <database>+<driver>), http, https, file, databricks)"), message
    assert _uri_error(cfg, "postgres://ann:hunter22@db/m").endswith("Received: tracking.uri=postgres://ann:***@db/m")
    for uri in ("postgresql://u@db/m", "postgresql+psycopg2://u@db/m", "mysql+pymysql://u@db/m", "mssql+pyodbc://db/m",
                "http://127.0.0.1:5000", "https://mlflow.example.com", "databricks", "databricks://profile",
                f"file://{tmp_path}/store", f"file:{tmp_path}"):
        assert validate(_with(cfg, "tracking.uri", uri))["tracking"]["uri"] == uri
    (tmp_path / "notes.txt").write_text("x")
    assert _uri_error(cfg, f"file://{tmp_path}/notes.txt") == (
        f"tracking.uri must be a file: URI of a folder this user can write to ({tmp_path}/notes.txt is a file, not a"
        f" folder). Received: tracking.uri=file://{tmp_path}/notes.txt")


def test_artifact_location_is_a_local_folder(make_cfg, tmp_path):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")
    key = "tracking.artifact_location"
    cfg = make_cfg()

    def error(value):
        return _message(lambda: validate(_with(cfg, key, value)))

    for path in (a_file, a_file / "sub"):
        assert error(str(path)) == (
            f"{key} must be a folder this user can write to ({a_file} is a file, not a folder). Received: {key}={path}")
    broken = tmp_path / "gone"
    broken.symlink_to(tmp_path / "nowhere")
    assert f"({broken} is a broken symbolic link)" in error(f"{broken}/store")
    for value in ("s3://bucket/artifacts", "", 3):
        assert error(value).startswith(f"{key} must be null or the path of a local folder")
    for path in (tmp_path, tmp_path / "new" / "folder"):
        assert validate(_with(cfg, key, str(path)))["tracking"]["artifact_location"] == str(path)
    assert validate(make_cfg("tracking=server", "tracking.uri=http://127.0.0.1:5000"))["tracking"]["artifact_location"] is None


def test_data_dir_is_a_folder_that_may_be_read_only(make_cfg, tmp_path):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")
    cfg = make_cfg()
    for path in (a_file, a_file / "sub"):
        assert _message(lambda: validate(_with(cfg, "data.data_dir", str(path)))) == (
            f"data.data_dir must be null or a folder ({a_file} is a file, not a folder). Received: data.data_dir={path}")
    # A shared dataset cache is only read once prepared: an existing folder need not be writable.
    for path in (tmp_path / "new" / "data", "/proc"):
        assert validate(_with(cfg, "data.data_dir", str(path)))["data"]["data_dir"] == str(path)


def test_counts_fit_in_64_bits(make_cfg):
    cfg = make_cfg()
    assert validate(_with(cfg, "data.shuffle_buffer", checks.INT64_MAX))["data"]["shuffle_buffer"] == checks.INT64_MAX
    for key in ("epochs", "batch_size", "data.shuffle_buffer", "tracking.log_every_n_steps"):
        message = _message(lambda: validate(_with(cfg, key, 2**63)))
        assert message == f"{key} must be an integer in [{0 if 'log' in key else 1}, {2**63 - 1}]. Received: {key}={2**63}"


# --- keys -------------------------------------------------------------------------------------

UNKNOWN = ("is not a config key of this run (see `python -m trainer --cfg job`; a model knob must be listed by"
           " the selected model).")


def test_an_added_top_level_key_is_a_config_key_not_a_knob(make_cfg):
    assert _error(make_cfg, "+colour=red") == f"colour {UNKNOWN} Received: colour=red"
    assert _error(make_cfg, "+colour.shade=red") == f"colour.shade {UNKNOWN} Received: colour.shade=red"
    assert _error(make_cfg, "+colour={a:1,b:2}") == f"colour {UNKNOWN} Received: colour={{a: 1, b: 2}}"
    # A real knob slot keeps its message.
    assert _error(make_cfg, "model=mlp", "depth=3") == (
        "depth is not a knob of model 'mlp'; its knobs are: width, activation, l2. Received: depth=3")


@dataclasses.dataclass
class _OwnKnobs(models.Definition):
    """A model of one's own whose knobs are not built-in knob slots, one of them a mapping."""

    width: int
    activation: str
    l2: float
    units: int
    layout: dict

    def __post_init__(self):
        self.units = checks.int_at_least("units", self.units, 1)


@dataclasses.dataclass
class _ReservedKnob(models.Definition):
    epochs: int


@pytest.fixture
def own_models(monkeypatch):
    """The two models above, registered for one test only (other tests iterate over the registry)."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    models.register("test_own_knobs")(_OwnKnobs)
    models.register("test_reserved_knob")(_ReservedKnob)


def test_a_model_of_ones_own_may_declare_new_knobs_and_checks_them_itself(make_cfg, own_models):
    own = ("model.name=test_own_knobs", "+layout={a:1}")
    plain = validate(make_cfg(*own, "+units=4"))
    assert plain["model"]["knobs"] == {"width": 128, "activation": "relu", "l2": 0.0, "units": 4, "layout": {"a": 1}}
    assert "layout" not in plain  # a knob, not a section of the config
    assert _error(make_cfg, *own, "+units=0") == "units must be an integer >= 1. Received: units=0"
    assert _error(make_cfg, *own) == ("model 'test_own_knobs' has knob units but its YAML (conf/model/test_own_knobs.yaml"
                                      " or your --config-dir) gives it no value. Received: units=null")


def test_model_name_and_knob_names_are_checked(make_cfg, own_models):
    assert _error(make_cfg, "model.name=[mlp]") == (
        "model.name must be the name of a registered model such as mlp. Received: model.name=[mlp]")
    assert _error(make_cfg, "model.name=test_reserved_knob", "~width", "~activation", "~l2") == (
        "model 'test_reserved_knob' has a knob named epochs, which is a key of the run config; rename the knob in"
        " its definition. Received: knob epochs")


def test_lists_and_booleans_of_the_wrong_type(make_cfg, monkeypatch, tmp_path):
    devices = "strategy.devices must be null or a non-empty list of distinct device names like /cpu:0."
    for value, shown in (("cpu", "cpu"), ("[/cpu:0,/cpu:0]", "[/cpu:0, /cpu:0]"), ("[1]", "[1]"), ("['']", "['']")):
        assert _error(make_cfg, "strategy=mirrored", f"strategy.devices={value}") == f"{devices} Received: strategy.devices={shown}"
    assert _error(make_cfg, "tracking.enabled='true'") == "tracking.enabled must be true or false. Received: tracking.enabled='true'"
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {"worker": "host:1234"}}')  # a string, not a list of addresses
    assert _error(make_cfg, "strategy=multi_worker").startswith("TF_CONFIG must be JSON like")
    image_folder = make_cfg()
    image_folder.data = OmegaConf.merge(
        OmegaConf.load(REPO / "conf" / "data" / "common" / "pipeline.yaml"),
        {k: v for k, v in OmegaConf.load(REPO / "conf" / "data" / "image_folder.yaml").items() if k != "defaults"},
        {"path": ["a"]})
    assert _message(lambda: validate(image_folder)) == (
        "data.path must be a folder with one sub-folder of images per class. Received: data.path=[a]")


# --- how values are shown ---------------------------------------------------------------------

def test_shown_writes_values_as_the_command_line_does():
    assert [checks.shown(v) for v in (None, True, False, 3, 0.5, "relu", "3", "nan", "true", "null", "", [1, "a"])] == [
        "null", "true", "false", "3", "0.5", "relu", "'3'", "'nan'", "'true'", "'null'", "''", "[1, a]"]
    assert checks.shown({"a": [None, "1e3"]}) == "{a: [null, '1e3']}"
    assert checks.shown("two\nlines") == "two lines"


def test_long_values_are_cut_with_a_marker(make_cfg):
    assert checks.shorten("x" * 200) == "x" * 200
    assert checks.shorten("x" * 5000) == "x" * 200 + "... (5000 characters)"
    long = "y" * 5000
    message = str(checks.fail("k", "short", long))
    assert message == f"k must be short. Received: k={'y' * 200}... (5000 characters)"
    cfg = make_cfg()
    for key, value in (("optimizer.learning_rate", long), ("colour", long), ("y" * 5000, 1), ("tracking.uri", long),
                       ("tracking.uri", f"sqlite:///{long}"), ("tracking.experiment", ["a"] * 2000),
                       ("tracking.artifact_location", f"/{long}/{long}"), ("model.name", long)):
        message = _message(lambda: validate(_with(cfg, key, value)))
        assert len(message) < 800 and "characters)" in message, (key[:40], message)
