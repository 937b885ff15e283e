"""Small value and path checks that phrase errors the Keras way: what was expected, then what was
received, the value shown as it is written on the command line and never more than a few hundred
characters of it."""

from __future__ import annotations

import math
import os
import re

from omegaconf import DictConfig, ListConfig, OmegaConf

from trainer.errors import ConfigError

# TensorFlow holds every count (steps, batch sizes, buffer sizes) as int64.
INT64_MAX = 2**63 - 1
# A message is one line on a terminal: a pasted file or a runaway interpolation is cut to this.
MAX_SHOWN = 200
# A string that the command line would read as something else (a number, a boolean, null) is
# shown quoted, so `depth='3'` does not read "Received: depth=3" as if 3 were wrong.
_READS_AS_OTHER = re.compile(
    r"[-+]?(\d[\d_]*(\.\d*)?|\.\d+)([eE][-+]?\d+)?|[-+]?\.?(inf|nan)|true|false|null|~|", re.IGNORECASE)


def shorten(text: str, limit: int = MAX_SHOWN) -> str:
    """`text` cut to its first `limit` characters, with a marker saying how long it was."""
    text = str(text)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def shown(value) -> str:
    """A value as it is written on the command line (`null`, `true`, `[1, 2]`), at most a few
    hundred characters long."""
    if isinstance(value, (DictConfig, ListConfig)):
        value = OmegaConf.to_container(value, resolve=False)
    if value is None:
        text = "null"
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str) and _READS_AS_OTHER.fullmatch(value):
        text = f"'{value}'"
    elif isinstance(value, (list, dict)):
        text = _shown_container(value)
    else:
        text = str(value)
    return shorten(" ".join(text.splitlines()) if "\n" in text else text)


def _shown_container(value) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_shown_container(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_shown_container(v)}" for k, v in value.items()) + "}"
    return shown(value)


def is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value) -> bool:
    """An int or a finite float: NaN compares False with every bound, so it would pass them all."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float: no range check or optimizer can use it
        return False


def fail(key: str, expected: str, value) -> ConfigError:
    key = shorten(key)
    return ConfigError(f"{key} must be {expected}. Received: {key}={shown(value)}")


def unknown_key(key: str, value) -> ConfigError:
    """A key that no config group or model declares (a typo, or `+colour=red`): nothing reads it."""
    key = shorten(key)
    return ConfigError(f"{key} is not a config key of this run (see `python -m trainer --cfg job`; a model knob must"
                       f" be listed by the selected model). Received: {key}={shown(value)}")


def int_at_least(key: str, value, low: int) -> int:
    if not is_int(value) or value < low:
        raise fail(key, f"an integer >= {low}", value)
    if value > INT64_MAX:
        raise fail(key, f"an integer in [{low}, {INT64_MAX}]", value)
    return value


def int_in(key: str, value, low: int, high: int) -> int:
    if not is_int(value) or not low <= value <= high:
        raise fail(key, f"an integer in [{low}, {high}]", value)
    return value


def number_in(key: str, value, low: float, high: float, *, low_open=False, high_open=True) -> float:
    ok = is_number(value) and (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not ok:
        lo, hi = ("(" if low_open else "["), (")" if high_open else "]")
        raise fail(key, f"a number in {lo}{low}, {high}{hi}", value)
    return float(value)


def number_above(key: str, value, low: float, *, inclusive=False) -> float:
    if not is_number(value) or (value < low if inclusive else value <= low):
        raise fail(key, f"a finite number {'>=' if inclusive else '>'} {low}", value)
    return float(value)


def one_of(key: str, value, allowed) -> str:
    allowed = list(allowed)
    if value not in allowed:
        raise fail(key, f"one of {', '.join(map(str, allowed))}", value)
    return value


def boolean(key: str, value) -> bool:
    if not isinstance(value, bool):
        raise fail(key, "true or false", value)
    return value


def folder_problem(path: str, *, write: bool = True) -> str | None:
    """Why folder `path` cannot be written to or created, or None; with write=False an existing
    folder only has to be a folder (a shared, read-only data cache). `access` also sees a
    read-only mount, even for root."""
    existing = os.path.abspath(path)
    while True:
        try:
            os.lstat(existing)
            break
        except (FileNotFoundError, NotADirectoryError):  # to be created (or under a file: said below)
            existing = os.path.dirname(existing)
        except OSError as err:  # a name too long, a loop of links: nothing could be created there
            return f"{shorten(existing)} cannot be a folder: {err.strerror}"
    if not os.path.exists(existing):
        return f"{shorten(existing)} is a broken symbolic link"
    if not os.path.isdir(existing):
        return f"{shorten(existing)} is a file, not a folder"
    if (write or existing != os.path.abspath(path)) and not os.access(existing, os.W_OK | os.X_OK):
        return f"{shorten(existing)} is not writable"
    return None
