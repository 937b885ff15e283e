"""The MLflow store itself, without TensorFlow: make a SQLite file safe for parallel jobs, make a
tracking server fail fast, and retry a write that SQLite refused because another job held the lock.
The sweep callback uses this in Hydra's main process, which never imports TensorFlow.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
import urllib.error
import urllib.request

from trainer.errors import ConfigError

# A tracking server that is down must cost seconds, not MLflow's default of 7 retries with
# exponential backoff and a 120 s timeout per request. Users can still override all three.
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
                 "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}
_LOCK_RETRIES = 8


def is_locked(err: BaseException) -> bool:
    return "database is locked" in str(err) or "database is busy" in str(err)


def with_lock_retries(call, *args, **kwargs):
    """Run one MLflow write, retrying when SQLite reports a lock.

    MLflow's SQLite sessions wait 20 s for a lock, but a transaction that read before it writes
    gets SQLITE_BUSY at once when another process wrote in between (waiting could deadlock), so
    parallel jobs need a retry of the whole call on top of the busy timeout.
    """
    for attempt in range(_LOCK_RETRIES):
        try:
            return call(*args, **kwargs)
        except Exception as err:
            if not is_locked(err) or attempt == _LOCK_RETRIES - 1:
                raise
            time.sleep(0.05 * 2**attempt)


_WAL_STORES: set[str] = set()


def _sync_at_checkpoints(path: str) -> None:
    """MLflow's connections to this store use synchronous=NORMAL, SQLite's advice for WAL: a
    commit no longer waits for fsync (a write costs ~11 ms instead of ~19 ms here), and a crash of
    the process still loses nothing; only a power cut can lose the last commits. Other SQLite
    databases in the process (an Optuna storage, say) are left as they are."""
    if not _WAL_STORES:
        import sqlalchemy
        from sqlalchemy import event

        @event.listens_for(sqlalchemy.engine.Engine, "connect")
        def _on_connect(dbapi_connection, connection_record):
            if not isinstance(dbapi_connection, sqlite3.Connection):
                return
            files = {os.path.realpath(row[2]) for row in dbapi_connection.execute("PRAGMA database_list") if row[2]}
            if files & _WAL_STORES:
                dbapi_connection.execute("PRAGMA synchronous=NORMAL")

    _WAL_STORES.add(path)


def prepare_store(uri: str) -> None:
    """Make a SQLite store ready for parallel jobs (WAL journal); check that a server answers.

    WAL lets readers and one writer work at the same time and is a property of the file, so
    setting it once serves every later process. An http(s) store is probed with one request
    so that a wrong address fails in seconds, before any training, with one line.
    """
    if uri.startswith("sqlite:///"):
        path = uri[len("sqlite:///"):]
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with contextlib.closing(sqlite3.connect(path, timeout=30)) as db:
            if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                with_lock_retries(db.execute, "PRAGMA journal_mode=WAL")
        _sync_at_checkpoints(os.path.realpath(path))
        _create_tables_one_process_at_a_time(uri, path)
    elif uri.startswith(("http://", "https://")):
        for name, value in HTTP_DEFAULTS.items():
            os.environ.setdefault(name, value)
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=10) as answer:
                answer.read()
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise ConfigError(
                f"tracking.uri must be a reachable MLflow tracking server (start one with `mlflow server`;"
                f" see README, Teams); it did not answer: {reason}. Received: tracking.uri={uri}"
            ) from None


def _create_tables_one_process_at_a_time(uri: str, path: str) -> None:
    """Open the store once while holding an exclusive lock on <store>.lock, so MLflow creates or
    upgrades its tables in one process at a time. Commands started together on a new store
    otherwise all run MLflow's migrations, and all but one fail ("Online migration expected to
    match one row", "duplicate column name": tests/test_concurrency.py). A separate lock file,
    because closing any descriptor of the database itself would drop SQLite's own locks."""
    import fcntl

    from mlflow.tracking import MlflowClient

    with open(path + ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed
        MlflowClient(uri)  # builds (and caches, per process) the store: tables created or checked


def experiment_id(client, name: str, artifact_location: str | None) -> str:
    """The id of experiment `name`, created on first use with its artifacts under artifact_location."""
    import mlflow

    found = with_lock_retries(client.get_experiment_by_name, name)
    if found is not None:
        return found.experiment_id
    location = None
    if artifact_location:
        os.makedirs(artifact_location, exist_ok=True)
        location = "file://" + os.path.abspath(artifact_location)
    try:
        return client.create_experiment(name, artifact_location=location)
    except mlflow.exceptions.MlflowException:
        # Another job of the same sweep created it first.
        return with_lock_retries(client.get_experiment_by_name, name).experiment_id
