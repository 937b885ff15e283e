"""Small value checks that phrase errors the Keras way: what was expected, then what was received."""

from __future__ import annotations

from trainer.errors import ConfigError


def is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def fail(key: str, expected: str, value) -> ConfigError:
    return ConfigError(f"{key} must be {expected}. Received: {key}={value}")


def int_at_least(key: str, value, low: int) -> int:
    if not is_int(value) or value < low:
        raise fail(key, f"an integer >= {low}", value)
    return value


def number_in(key: str, value, low: float, high: float, *, low_open=False, high_open=True) -> float:
    ok = is_number(value) and (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not ok:
        lo, hi = ("(" if low_open else "["), (")" if high_open else "]")
        raise fail(key, f"a number in {lo}{low}, {high}{hi}", value)
    return float(value)


def number_above(key: str, value, low: float, *, inclusive=False) -> float:
    if not is_number(value) or (value < low if inclusive else value <= low):
        raise fail(key, f"a number {'>=' if inclusive else '>'} {low}", value)
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
