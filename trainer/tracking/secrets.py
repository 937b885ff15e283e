"""Keep secrets out of MLflow: every param, tag, run name, text and file artifact (a single run's
and a sweep's), the command line, and a sweep's printed summary and log pass through here first.

Two kinds of secret are masked as `***`:
- the value of any environment variable whose name contains TOKEN, PASSWORD, SECRET or KEY
  (however it got into the config: `${oc.env:...}`, a pasted value, a log line), and
- the value of any config key or `key=value` override whose own name ends in one of those words
  (`+tracking.api_key=...` typed on the command line), wherever it is nested (a YAML, JSON or
  Python dict or list), and the password in a `user:password@` URL.
Plain Python, no MLflow or TensorFlow, so the tracker and its tests stay cheap.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from contextlib import contextmanager

MASK = "***"
SECRET_WORDS = ("TOKEN", "PASSWORD", "SECRET", "KEY")
# Shorter values would mask ordinary words and numbers all over the logs ("true", "1", "a");
# a real credential is longer than this.
MIN_SECRET_LENGTH = 6
# Text artifacts are read whole to be masked; anything larger or binary is copied unchanged.
_MAX_TEXT_BYTES = 16 * 1024 * 1024

_SECRET_WORD = "(?:" + "|".join(SECRET_WORDS) + ")"
# A config key names a secret when one of its words ends in a secret word (`api_key`, `apikey`,
# `db.password`), but not when the word only starts with one (`KeyboardInterrupt`, `tokenizer`).
_SECRET_KEY = re.compile(_SECRET_WORD + r"s?(?![a-z])", re.IGNORECASE)
# `key=value` (overrides, command lines), `key: value` (YAML) and `'key': value` (a dict printed by
# Python, JSON) whose key names a secret. The value is a quoted string, a flow list or mapping
# (`api_keys: [a, b]`, masked whole), or a bare word up to the next separator.
_ASSIGNMENT = re.compile(r"(?P<key>['\"]?[\w.+~/-]*" + _SECRET_WORD + r"s?(?![a-z])[\w.-]*['\"]?)(?P<sep>[ \t]*[=:][ \t]*)"
                         r"(?P<value>'[^'\n]*'|\"[^\"\n]*\"|\[[^\]\n]*\]|\{[^}\n]*\}|[^\s,}\]'\"]+)", re.IGNORECASE)
# The password of a `scheme://user:password@host` URL. A password may itself hold `/`, `@` and
# `:`, so it runs to the LAST `@` before the URL ends (at a space or a quote): masking too much of
# an odd URL is the safe way to be wrong; a comma followed by another URL (a swept list) ends it
# too. Hydra writes `:` in swept values as `\:`.
_SCHEME = r"[a-z][a-z0-9+.-]*\\?://"
_URL_PASSWORD = re.compile(r"(?P<head>\b" + _SCHEME + r"[^\s/@:'\"\\]*\\?:)(?:[^\s'\",]|,(?!" + _SCHEME + r"))*@",
                           re.IGNORECASE)


def is_secret_name(name: str) -> bool:
    """An environment variable whose name contains a secret word (`MY_API_TOKEN`, `PGPASSWORD`)."""
    return any(word in name.upper() for word in SECRET_WORDS)


def is_secret_key(key: str) -> bool:
    """A config key (last dotted part) or override key that names a secret."""
    return bool(_SECRET_KEY.search(key.rsplit(".", 1)[-1]))


def secret_values(environ=None) -> list[str]:
    """Values of the environment's secret-named variables, longest first (so a secret that
    contains another is masked whole)."""
    environ = _environ_now() if environ is None else environ
    found = {value for name, value in environ.items() if is_secret_name(name) and len(value) >= MIN_SECRET_LENGTH}
    return sorted(found, key=len, reverse=True)


def _environ_now() -> dict:
    """A copy of os.environ. Another thread may change it while it is read: MLflow's telemetry
    thread unsets `_MLFLOW_TELEMETRY_SESSION_ID` when its server does not answer, and reading
    os.environ meanwhile raises KeyError (a name listed, then gone) or RuntimeError."""
    while True:
        try:
            return dict(os.environ)
        except (KeyError, RuntimeError):
            continue


def redact_text(text: str, environ=None) -> str:
    """`text` with every secret environment value and every secret-named assignment masked."""
    for value in secret_values(environ):
        text = text.replace(value, MASK)
    text = _URL_PASSWORD.sub(lambda m: f"{m.group('head')}{MASK}@", text)
    return _ASSIGNMENT.sub(_mask_assignment, text)


def mask_log_records() -> None:
    """From now on every log record made in this process carries its message masked, whichever
    logger made it and wherever its handlers write (Hydra's launchers and sweepers log each job's
    overrides; Hydra replaces the handlers before every job, so a filter on them would not last)."""
    make = logging.getLogRecordFactory()
    if getattr(make, "masks_secrets", False):
        return

    def masked(*args, **kwargs):
        record = make(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a malformed logging call: leave it to logging's own error report
            return record
        record.msg, record.args = redact_text(message), None
        return record

    masked.masks_secrets = True
    logging.setLogRecordFactory(masked)


def redact_override(override: str, environ=None) -> str:
    """One `key=value` override (one command-line argument): under a secret-named key the whole
    value is the secret, spaces and all; any other value is masked as text."""
    key, sep, value = override.partition("=")
    if sep and is_secret_key(key.lstrip("+~")) and value not in ("", "null", "None", "~", MASK):
        return f"{key}={MASK}"
    return redact_text(override, environ)


def _mask_assignment(match: re.Match) -> str:
    value = match.group("value")
    if value in (MASK, "null", "None", "~", "''", '""'):
        return match.group(0)
    return f"{match.group('key')}{match.group('sep')}{MASK}"


def redact_value(key: str, value, environ=None):
    """A param or tag value: masked whole under a secret-named key, else with secrets masked."""
    if value is None:
        return value
    if is_secret_key(key):
        return MASK
    text = str(value)
    cleaned = redact_text(text, environ)
    return value if cleaned == text else cleaned


def redact_mapping(items: dict, environ=None) -> dict:
    """{key: value} -> the same keys with every value passed through `redact_value`."""
    return {key: redact_value(key, value, environ) for key, value in items.items()}


def _redact_file(source: str, target: str, environ) -> None:
    if os.path.getsize(source) <= _MAX_TEXT_BYTES:
        with open(source, "rb") as f:
            raw = f.read()
        if b"\0" not in raw:
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                pass
            else:
                with open(target, "w", encoding="utf-8") as out:
                    out.write(redact_text(text, environ))
                return
    shutil.copyfile(source, target)


@contextmanager
def redacted_copy(path: str, environ=None):
    """A temporary copy of a file or folder with every text file masked; binary files (plots,
    weights) are copied as they are. Yields the copy's path; removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="trainer-redacted-") as tmp:
        target = os.path.join(tmp, os.path.basename(os.path.normpath(path)))
        if os.path.isdir(path):
            for folder, _, files in os.walk(path):
                out_dir = os.path.join(target, os.path.relpath(folder, path))
                os.makedirs(out_dir, exist_ok=True)
                for name in files:
                    _redact_file(os.path.join(folder, name), os.path.join(out_dir, name), environ)
        else:
            _redact_file(path, target, environ)
        yield target
