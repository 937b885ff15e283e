"""Property-based tests over random command lines: `preflight` either accepts a command line or
prints exactly one `error: ... Received: ...` line and exits 2; it never raises anything else.

Examples run in-process (a composition costs milliseconds; a CLI subprocess costs a TensorFlow
start-up), the keys come from the real composed config tree, and the accepted ones are checked
further: the model really builds, and one really trains through the real CLI.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import re

from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hypothesis import HealthCheck, Phase, assume, example, given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

import models
from trainer.cli import resolvers
from trainer.cli.command import preflight
from trainer.config.validate import validate

resolvers.register()

# CI replays the same examples every time (a landing must not depend on luck); a developer's run
# explores new ones, which is where new bugs are found.
settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")
# No shrinking: on this 2-core machine a shrink can take minutes; the failing example is printed as found.
_PHASES = (Phase.explicit, Phase.reuse, Phase.generate)
# Keys whose values name files, servers or modules: random values there would write or import
# things; each is covered by its own row in the rejected-input table (docs/rejected-input.md)
# instead.
_SIDE_EFFECT_KEYS = ("paths.", "tracking.uri", "tracking.artifact_location", "data.data_dir", "model.module",
                     "resume.dir")
# What the fallback line of trainer.cli.command says when a check crashed instead of answering.
_CRASHED = "the config could not be checked"


def _leaves(tree: dict, prefix: str = ""):
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _tree() -> tuple[list[str], dict[str, list[str]]]:
    """(every leaf key of the default config, {group: options}) from the real conf/ tree."""
    from importlib.resources import files

    GlobalHydra.instance().clear()
    with initialize_config_module("conf", version_base="1.3"):
        cfg = compose("config")
    GlobalHydra.instance().clear()
    keys = [k for k, _ in _leaves(OmegaConf.to_container(cfg, resolve=False))
            if not k.startswith(_SIDE_EFFECT_KEYS)]
    groups = {}
    for folder in files("conf").iterdir():
        if folder.is_dir() and folder.name not in ("hydra", "paths", "__pycache__"):
            options = sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))
            if options:
                groups[folder.name] = options
    return keys, groups


KEYS, GROUPS = _tree()

_words = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=10)
_scalars = st.one_of(
    st.integers(min_value=-10, max_value=10),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(allow_nan=False, allow_infinity=False, width=32).map(lambda f: f"{f:g}"),
    st.sampled_from(["nan", "inf", "-inf", "null", "true", "false", "''", "1e-3", "0.5", "1.0", "-0.0"]),
    _words,
)
_values = st.one_of(
    _scalars.map(str),
    st.lists(_scalars.map(str), max_size=3).map(lambda xs: "[" + ",".join(xs) + "]"),
    st.dictionaries(_words, _scalars.map(str), max_size=2).map(
        lambda d: "{" + ",".join(f"{k}:{v}" for k, v in d.items()) + "}"),
    st.text(alphabet="abc012=.,[]{}()'\"$:/-+ ", max_size=8),  # broken syntax on purpose
)
_value_override = st.builds(lambda k, v: f"{k}={v}", st.sampled_from(KEYS), _values)
_group_override = st.sampled_from(sorted(GROUPS)).flatmap(
    lambda g: st.one_of(st.sampled_from(GROUPS[g]), _words, _values).map(lambda v: f"{g}={v}"))
_unknown_override = st.builds(lambda p, k, v: f"{p}{k}={v}", st.sampled_from(["", "+", "++"]), _words, _values)
_sweep_override = st.builds(lambda k, a, b: f"{k}={a},{b}", st.sampled_from(KEYS), _scalars.map(str), _scalars.map(str))
_override = st.one_of(_value_override, _value_override, _group_override, _unknown_override)


def _preflight(argv: list[str]) -> tuple[int | None, str]:
    """(exit code or None when accepted, what was printed to stderr)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            preflight(argv)
        except SystemExit as exit_:
            return exit_.code, err.getvalue()
        finally:
            GlobalHydra.instance().clear()
    return None, err.getvalue()


def _assert_one_clear_line(argv, code, printed):
    lines = printed.splitlines()
    assert code == 2, (argv, code, printed)
    assert len(lines) == 1, (argv, printed)
    assert lines[0].startswith("error: ") and "Received:" in lines[0], (argv, printed)
    assert _CRASHED not in lines[0], f"a check crashed instead of answering: {argv}: {printed}"


@settings(max_examples=120, deadline=None, phases=_PHASES, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_override, min_size=1, max_size=4))
@example(["optimizer.learning_rate=nan"])  # NaN passes every comparison-based range check
@example(["resume.every_seconds=inf", "+colour=red"])
def test_random_command_lines_are_accepted_or_answered_in_one_line(argv):
    code, printed = _preflight(argv)
    if code is None:
        assert printed == "", (argv, printed)
        _assert_numbers_are_finite(argv)
    else:
        _assert_one_clear_line(argv, code, printed)


def _assert_numbers_are_finite(argv):
    """What an accepted command line hands to training holds no NaN or infinity anywhere."""
    GlobalHydra.instance().clear()
    with initialize_config_module("conf", version_base="1.3"):
        plain = validate(compose("config", overrides=argv))
    GlobalHydra.instance().clear()
    stack = [plain]
    while stack:
        node = stack.pop()
        values = node.values() if isinstance(node, dict) else node
        for value in values:
            if isinstance(value, (dict, list)):
                stack.append(value)
            assert not isinstance(value, float) or math.isfinite(value), (argv, plain)


@settings(max_examples=40, deadline=None, phases=_PHASES)
@given(st.lists(_override, max_size=2), _sweep_override)
def test_random_sweeps_are_accepted_or_answered_in_one_line(argv, sweep):
    argv = ["-m", *argv, sweep]
    code, printed = _preflight(argv)
    if code is not None:
        _assert_one_clear_line(argv, code, printed)


def _knob_value(name: str):
    """Valid values for the knobs the built-in models share (trainer/config/validate.py's rules), small
    enough to build in milliseconds."""
    return {
        "depth": st.integers(1, 3),
        "width": st.integers(1, 16),
        "dropout": st.sampled_from([0, 0.0, 0.25, 0.5, 0.99]),
        "l2": st.sampled_from([0, 0.0, 1e-4, 0.1]),
        "activation": st.sampled_from(["relu", "gelu", "tanh", "linear", "selu"]),
        "filters": st.integers(1, 8),
        "stages": st.integers(1, 2),
        "widths": st.lists(st.integers(1, 8), min_size=1, max_size=2).map(lambda xs: "[" + ",".join(map(str, xs)) + "]"),
    }.get(name)


def _model_overrides():
    def for_model(name):
        knobs = models.knobs(name)
        strategies = [_knob_value(k).map(lambda v, k=k: f"{k}={v}") for k in knobs if _knob_value(k) is not None]
        variant = st.sampled_from(["functional", "subclassed"]).map(lambda v: f"model.variant={v}")
        return st.tuples(st.just(f"model={name}"), variant, *strategies).map(list)

    return st.sampled_from(GROUPS["model"]).flatmap(for_model)


@settings(max_examples=12, deadline=None, phases=_PHASES, suppress_health_check=[HealthCheck.too_slow])
@given(_model_overrides())
def test_accepted_model_settings_really_build(argv):
    import keras

    from models import net

    code, printed = _preflight(argv)
    if code is not None:  # a knob combination the model rejects (resnet: one width per stage)
        _assert_one_clear_line(argv, code, printed)
    assume(code is None)
    GlobalHydra.instance().clear()
    with initialize_config_module("conf", version_base="1.3"):
        plain = validate(compose("config", overrides=argv))
    GlobalHydra.instance().clear()
    model_cfg = plain["model"]
    keras.backend.clear_session()
    model = net.build(model_cfg["name"], model_cfg["variant"], input_shape=(8, 8, 1), num_classes=10,
                      **model_cfg["knobs"])
    out = model(keras.ops.zeros((2, 8, 8, 1)), training=False)
    assert tuple(out.shape) == (2, 10), argv


def test_an_accepted_command_line_really_trains(cli):
    """An accepted combination off the defaults through the real CLI (one epoch): accepted means
    trainable. One subprocess only: the in-process test above builds the others' models."""
    argv = ["model=conditional", "dropout=0.0", "model.variant=subclassed", "activation=tanh", "optimizer=sgd",
            "batch_size=256"]
    result = cli(*argv, "epochs=1", "tracking.enabled=false")
    assert result.returncode == 0, result.stderr[-3000:]
    assert re.search(r"test_accuracy=\d", result.stdout), result.stdout[-2000:]
