"""trainer/config/choices.py is the one list of each choice: every option file in conf/ names a declared
choice, every declared choice has its option file, and the builder builds each one, so the
validator (which checks against the same lists) accepts nothing the builders cannot make."""

from __future__ import annotations

import importlib

import keras
import pytest
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra

from tests.conftest import REPO
from trainer.loops import callbacks, compile
from trainer.config import choices
from trainer import loops
from trainer.config.validate import validate

GROUPS = {"loop": choices.LOOPS, "optimizer": choices.OPTIMIZERS, "schedule": choices.SCHEDULES,
          "strategy": choices.STRATEGIES}


@pytest.mark.parametrize("group", GROUPS)
def test_each_option_file_is_a_declared_choice_and_each_choice_has_one(group, make_cfg):
    options = sorted(p.stem for p in (REPO / "conf" / group).glob("*.yaml"))
    assert options == sorted(GROUPS[group])
    for option in options:
        assert make_cfg(f"{group}={option}")[group].name == option


def test_every_data_option_reads_a_declared_source():
    GlobalHydra.instance().clear()
    with initialize_config_module("conf", version_base="1.3"):
        for path in (REPO / "conf" / "data").glob("*.yaml"):
            assert compose("config", overrides=[f"data={path.stem}"]).data.source in choices.SOURCES, path.name
    GlobalHydra.instance().clear()
    for module in choices.SOURCES.values():
        assert callable(importlib.import_module(module).open_source), module


@pytest.mark.parametrize("name", choices.OPTIMIZERS)
def test_every_optimizer_builds_from_its_validated_options(name, make_cfg):
    settings = validate(make_cfg(f"optimizer={name}"))
    built = compile.build_optimizer(settings["optimizer"], settings["schedule"], steps_per_epoch=10, epochs=1)
    assert type(built) is getattr(keras.optimizers, choices.OPTIMIZERS[name])


@pytest.mark.parametrize("name", choices.SCHEDULES)
def test_every_schedule_builds(name, make_cfg):
    settings = validate(make_cfg(f"schedule={name}", "epochs=2"))
    compile.build_schedule(settings["schedule"], learning_rate=0.01, steps_per_epoch=10, epochs=2)


def test_every_loop_and_progress_choice_has_what_it_names():
    for name in choices.LOOPS:
        assert callable(loops.get(name).run)
    assert {callbacks.verbosity(p) for p in choices.PROGRESS} == {0, 1, 2}  # Keras's verbose levels
