"""The command line runs no code it was not meant to, reads its flags as Hydra does, checks the
config that will run, and lets a sweep's bad sampled value fail one trial, not the study.

Cheap one-line refusals are rows of the "Rejected input" table in docs/rejected-input.md
(tests/test_bad_input_table.py); these are the behaviours a row cannot show: what did not run, what
was accepted, what a sweep did.
"""

from __future__ import annotations

import dataclasses

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import REPO, tracking_uri
from trainer.cli import hydra_guard

EVIL_EXPERIMENT = """# @package _global_
hydra:
  callbacks:
    evil:
      _target_: ${oc.env:EVIL_TARGET}
      _args_: ["%s"]
"""


@pytest.mark.parametrize("full_error", [False, True], ids=["plain", "HYDRA_FULL_ERROR=1"])
def test_a_target_built_by_interpolation_in_the_hydra_node_runs_nothing(cli, tmp_path, full_error):
    # A config file (here an experiment in a --config-dir) whose hydra node names a callback by an
    # interpolation: no override text says `_target_`, only the resolved config does.
    marker = tmp_path / "MARKER"
    (tmp_path / "conf" / "experiment").mkdir(parents=True)
    (tmp_path / "conf" / "experiment" / "evil.yaml").write_text(EVIL_EXPERIMENT % marker)
    env = {"EVIL_TARGET": "os.makedirs", **({"HYDRA_FULL_ERROR": "1"} if full_error else {})}
    result = cli("--config-dir", str(tmp_path / "conf"), "experiment=evil", "tracking=none", "epochs=1",
                 "model=mlp", "width=8", extra_env=env)
    assert result.returncode == 2, result.stderr[-3000:]
    assert result.stderr.strip().splitlines() == [
        "error: hydra.callbacks.evil._target_ cannot name code to run (it names os.makedirs): a config may name"
        " only what trainer's own conf/ and the configs of Hydra and its installed plugins name"
        " (trainer.tracking.sweep.MlflowSweep, Hydra's launchers, sweepers and Optuna samplers, the logging handlers)."
        " Received: hydra.callbacks.evil._target_=os.makedirs"]
    assert not marker.exists()
    assert not (tmp_path / "outputs").exists()


def test_a_target_typed_with_hydra_full_error_or_cfg_is_still_refused(cli, tmp_path):
    marker = tmp_path / "MARKER2"
    typed = ("+model.b=get_", f'+model.t="{{_tar${{model.b}}: os.makedirs, _args_: [{marker}]}}"',
             '+hydra.callbacks.x="${oc.decode:${model.t}}"')
    for flags, env in ((["--cfg", "job"], {}), ([], {"HYDRA_FULL_ERROR": "1"})):
        result = cli(*flags, *typed, "tracking=none", "epochs=1", "model=mlp", "width=8", extra_env=env)
        assert result.returncode == 2, result.stderr[-3000:]
        (line,) = result.stderr.strip().splitlines()
        assert line.startswith("error: hydra.callbacks.x is not a Hydra setting the command line may change;"), line
        assert not marker.exists()


def test_hydra_spellings_a_config_dir_primary_config_and_hydra_interpolations_are_accepted(cli, tmp_path):
    # `--multi`, `--config-d` and `--config-n` are argparse prefixes Hydra accepts; the primary
    # config comes from the --config-dir; `${hydra:...}` resolves in a folder and in a value.
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "mine.yaml").write_text("defaults:\n  - config\n  - _self_\n\nepochs: 1\n")
    result = cli("--multi", "--config-d", str(tmp_path / "mine"), "--config-n", "mine", "tracking=none", "model=mlp",
                 "width=8", "seed=${hydra:job.num}", "+model.note=${hydra:runtime.cwd}", f"hydra.sweep.dir={tmp_path}/sweep")
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "sweep" / "0" / ".hydra" / "config.yaml").is_file()
    assert "epochs: 1\n" in (tmp_path / "sweep" / "0" / ".hydra" / "config.yaml").read_text()

    # The config checked is that primary config: its sweep.metric is refused before any job trains.
    (tmp_path / "mine" / "badmetric.yaml").write_text("defaults:\n  - config\n  - _self_\n\nsweep:\n  metric: val_acc\n")
    result = cli("--multi", "-cd", str(tmp_path / "mine"), "-cn", "badmetric", "tracking=none")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: sweep.metric must be one of the metrics the run reports: loss, accuracy, val_loss, val_accuracy,"
        " test_loss, test_accuracy. Received: sweep.metric=val_acc"]


def test_a_grid_larger_than_the_checked_part_says_how_many_jobs_were_checked(cli, tmp_path):
    # The unreachable server stops the sweep after the check and before any job trains.
    result = cli("-m", "model=dynamic", "depth=range(1,103)", "tracking=server", "tracking.uri=http://127.0.0.1:9")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("note: checked the first 100 of the sweep's 102 jobs before starting;"), lines
    assert lines[-1].startswith("error: tracking.uri must be a reachable MLflow tracking server"), lines


def test_a_search_space_that_reaches_past_a_rule_is_refused_before_any_trial(cli, tmp_path):
    # width from {0, 8}: width=0 breaks `width >= 1`, so no trial would be worth starting with it.
    result = cli("-m", "hparams_search=optuna", "hydra.sweeper.n_trials=3", "seed=1", "epochs=1",
                 "hydra.sweeper.params.width='choice(0,8)'", "hydra.sweeper.params.depth='choice(1)'",
                 "hydra.sweeper.params.batch_size='choice(64)'")
    assert result.returncode == 2, result.stderr[-3000:]
    assert result.stderr.strip().splitlines() == [
        "error: the search space of width includes width=0, which breaks a rule (width must be an integer >= 1)."
        " Received: hydra.sweeper.params.width=choice(0,8)"]
    assert not (tmp_path / "outputs" / "mlflow.db").exists() and not (tmp_path / "outputs" / "studies").exists()


def test_the_allowed_hydra_settings_are_fields_of_the_installed_plugins_configs():
    from hydra_plugins.hydra_joblib_launcher.config import JobLibLauncherConf
    from hydra_plugins.trainer_sweeper import config as sweeper_config

    fields = {
        "hydra.launcher": {f.name for f in dataclasses.fields(JobLibLauncherConf)},
        "hydra.sweeper": {f.name for c in (sweeper_config.GridSweeperConf, sweeper_config.OptunaSweeperConf) for f in dataclasses.fields(c)},
    }
    for pattern in hydra_guard.HYDRA_KEYS:
        parent, _, name = pattern.rpartition(".")
        if parent in fields:
            assert name in fields[parent], pattern
            assert hydra_guard.hydra_setting_allowed(pattern)
    for refused in ("hydra.sweeper.custom_search_space", "hydra.sweeper.sampler._target_", "hydra.job.env_set.PATH",
                    "hydra.callbacks.x", "hydra.job_logging.handlers.file.filename", "hydra.launcher._target_"):
        assert not hydra_guard.hydra_setting_allowed(refused), refused


def test_trainers_own_conf_never_sets_hydra_mode():
    # trainer/cli/command.py skips asking Hydra for the mode (a composition) when only conf/ is read.
    from omegaconf import OmegaConf

    files = list((REPO / "conf").rglob("*.yaml"))
    assert len(files) > 20
    for path in files:
        assert OmegaConf.select(OmegaConf.load(path), "hydra.mode") is None, path
        assert not (path.parent.name == "hydra" and "mode" in OmegaConf.load(path)), path
