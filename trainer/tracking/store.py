"""The MLflow store itself, without TensorFlow: make a SQLite file safe for parallel jobs, make a
tracking server fail fast (unreachable, or refusing our credentials), and retry a write that SQLite
refused because another job held the lock. The sweep callback uses this in Hydra's main process,
which never imports TensorFlow.
"""

from __future__ import annotations

import base64
import configparser
import contextlib
import errno
import os
import sqlite3
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request

from trainer.tracking import secrets
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
    commit no longer waits for fsync (a write costs about half as much), and a crash of
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
    so that a wrong address or wrong credentials fail in seconds, before any training, with one line.
    """
    if uri.startswith("sqlite:///"):
        path = uri[len("sqlite:///"):]
        try:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            with contextlib.closing(sqlite3.connect(path, timeout=30)) as db:
                if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                    with_lock_retries(db.execute, "PRAGMA journal_mode=WAL")
            _sync_at_checkpoints(os.path.realpath(path))
            _create_tables_one_process_at_a_time(uri, path)
        except Exception as err:
            reason = _write_refused(err)
            if reason is None:
                raise
            # Nothing is recorded yet, so this is the one line, not a traceback from deep in SQLAlchemy.
            raise ConfigError(
                f"tracking.uri must be an SQLite store this user can write; preparing {path} failed ({reason}:"
                f" a full disk, a quota or a file-size limit?). No run was recorded. Received: tracking.uri={uri}"
            ) from None
    elif uri.startswith(("http://", "https://")):
        for name, value in HTTP_DEFAULTS.items():
            os.environ.setdefault(name, value)
        if secrets.redact_text(uri) != uri:
            # MLflow prints "View run ... at: <tracking URI>/#/..." whenever a run ends, password and all.
            os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
        _probe_server(uri)


# What SQLite (directly, or wrapped by SQLAlchemy and MLflow) says when the disk refuses a write.
_SQLITE_WRITE_ERRORS = ("disk I/O error", "database or disk is full", "attempt to write a readonly database")


def _write_refused(err: BaseException) -> str | None:
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS):
            return err.strerror or str(err)
        found = next((text for text in _SQLITE_WRITE_ERRORS if text in str(err)), None)
        if found:
            return found
        err = err.__cause__ or err.__context__
    return None


# A read every authenticated user may make; `/health` would not do, as a server with
# authentication answers it without asking who is calling.
_PROBE_PATH = "/api/2.0/mlflow/experiments/search?max_results=1"


def _probe_server(uri: str) -> None:
    """One request as MLflow's own client would make it (mlflow.utils.credentials): the same
    credentials and the same TLS settings, so that passing it means MLflow's requests will pass."""
    shown = secrets.redact_text(uri)  # never the password of an `http://user:password@host` URI
    try:
        base, headers, who = _credentials(uri)
        url = base + _PROBE_PATH
        if os.environ.get("MLFLOW_TRACKING_AUTH"):
            # An auth plugin of MLflow's signs the requests; only MLflow can, so check the server is up.
            url, headers = base + "/health", {}
        request = urllib.request.Request(url, headers=headers)
        context = _tls_context() if url.startswith("https://") else None
        with urllib.request.urlopen(request, timeout=_timeout(), context=context) as answer:
            answer.read()
    except urllib.error.HTTPError as err:
        if err.code in (401, 403):
            raise ConfigError(
                f"tracking.uri must be a tracking server that accepts your credentials (MLFLOW_TRACKING_USERNAME and"
                f" MLFLOW_TRACKING_PASSWORD, or MLFLOW_TRACKING_TOKEN; see docs/teams.md); it answered"
                f" {err.code} {_one_line(err.reason)} {who}. Received: tracking.uri={shown}"
            ) from None
        raise _unreachable(f"HTTP {err.code} {err.reason}", shown) from None
    except (urllib.error.URLError, OSError, ValueError) as err:
        reason = getattr(err, "reason", err)
        if isinstance(reason, ssl.SSLCertVerificationError):
            reason = f"{reason} (MLFLOW_TRACKING_SERVER_CERT_PATH names a CA bundle to trust)"
        raise _unreachable(reason, shown) from None


def _timeout() -> float:
    # MLflow's own request timeout: a server that checks a password hash per request can take
    # seconds to answer on a busy machine, and what MLflow waits for, the probe waits for too.
    default = HTTP_DEFAULTS["MLFLOW_HTTP_REQUEST_TIMEOUT"]
    try:
        return float(os.environ.get("MLFLOW_HTTP_REQUEST_TIMEOUT", default))
    except ValueError:
        return float(default)


def _unreachable(reason, shown: str) -> ConfigError:
    return ConfigError(
        f"tracking.uri must be a reachable MLflow tracking server (start one with `mlflow server`;"
        f" see docs/teams.md); it did not answer: {_one_line(reason)}. Received: tracking.uri={shown}"
    )


def _one_line(text) -> str:
    return secrets.redact_text(" ".join(str(text).split()))


def _credentials(uri: str) -> tuple[str, dict, str]:
    """(the server's URL without any user:password@, request headers, who we are for the message).

    MLflow's order: MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD (or ~/.mlflow/credentials),
    then MLFLOW_TRACKING_TOKEN; a `user:password@` in the URI is used when neither is set, as the
    HTTP library under MLflow does."""
    parts = urllib.parse.urlsplit(uri.rstrip("/"))
    userinfo, _, host = parts.netloc.rpartition("@")
    url = urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))
    username, password = _mlflow_credentials()
    who = f"for MLFLOW_TRACKING_USERNAME={username}"
    if not (username and password) and userinfo:
        username, _, password = (urllib.parse.unquote(p) for p in userinfo.partition(":"))
        who = f"for the user {username} of tracking.uri"
    if username and password:
        basic = base64.standard_b64encode(f"{username}:{password}".encode()).decode()
        return url, {"Authorization": f"Basic {basic}"}, who
    token = os.environ.get("MLFLOW_TRACKING_TOKEN")
    if token:
        return url, {"Authorization": f"Bearer {token}"}, "for the token in MLFLOW_TRACKING_TOKEN"
    return url, {}, "to a request without credentials (MLFLOW_TRACKING_USERNAME is not set)"


def _mlflow_credentials() -> tuple[str | None, str | None]:
    file = configparser.ConfigParser()
    file.read(os.path.expanduser("~/.mlflow/credentials"))
    saved = file["mlflow"] if "mlflow" in file else {}
    return (os.environ.get("MLFLOW_TRACKING_USERNAME") or saved.get("mlflow_tracking_username"),
            os.environ.get("MLFLOW_TRACKING_PASSWORD") or saved.get("mlflow_tracking_password"))


def _tls_context() -> ssl.SSLContext:
    """MLflow's TLS settings: MLFLOW_TRACKING_INSECURE_TLS skips verification,
    MLFLOW_TRACKING_SERVER_CERT_PATH is the CA bundle to trust, MLFLOW_TRACKING_CLIENT_CERT_PATH
    the client's certificate (and key) in one .pem file."""
    context = ssl.create_default_context(cafile=os.environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH") or None)
    if os.environ.get("MLFLOW_TRACKING_INSECURE_TLS", "").strip().lower() in ("true", "1"):
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    client_cert = os.environ.get("MLFLOW_TRACKING_CLIENT_CERT_PATH")
    if client_cert:
        context.load_cert_chain(client_cert)
    return context


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
