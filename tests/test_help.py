"""`python -m trainer --help`: what it prints comes from the config tree, the model registry and
the README, through the real command line, before TensorFlow loads."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
import yaml

import models
from tests.conftest import REPO, without_tensorflow
from tests.test_custom_model import MODEL_YAML
from trainer.tracking.review import UI_URL, ui_command

CONF = REPO / "conf"


@pytest.fixture
def help_text(cli, tmp_path):
    """The help of `python -m trainer --help [args]`, run where `import tensorflow` fails."""

    def _help(*args: str) -> str:
        result = cli("--help", *args, extra_env=without_tensorflow(tmp_path))
        assert result.returncode == 0, result.stderr[-3000:]
        assert result.stderr == ""  # no traceback, no warning, no TensorFlow (importing it fails here)
        return result.stdout

    return _help


def _section(text: str, title: str) -> list[str]:
    """The lines of the help's `== <title>...` section, up to its first blank line."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"== {title}"))
    end = lines.index("", start)
    return lines[start + 1:end]


def _shown(value) -> str:
    """A YAML value as typed on the command line (relu, 0.0, null, [16,32,64])."""
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def _words(text: str) -> str:
    return " ".join(text.split())


def _conf_groups() -> dict[str, list[str]]:
    """{group: options} of the conf/ tree, Hydra's own `hydra` group left out."""
    groups = {}
    for folder in sorted(p for p in CONF.rglob("*") if p.is_dir()):
        group = folder.relative_to(CONF).as_posix()
        options = sorted(p.stem for p in folder.glob("*.yaml"))
        if options and group.split("/")[0] != "hydra":
            groups[group] = options
    return groups


def _help_groups(text: str) -> dict[str, list[str]]:
    return {group: options.split(", ") for group, _, options in
            (re.sub(r":\s+", ":", line, count=1).partition(":") for line in _section(text, "Config groups"))}


def test_help_lists_every_config_group_with_its_options_and_the_default(help_text):
    text = help_text()
    groups = _help_groups(text)
    assert {g: [o.rstrip("*") for o in options] for g, options in groups.items()} == _conf_groups()
    defaults = {}
    for entry in yaml.safe_load((CONF / "config.yaml").read_text())["defaults"]:
        if isinstance(entry, dict):
            defaults.update(entry)
    for group, options in groups.items():
        chosen = [o.rstrip("*") for o in options if o.endswith("*")]
        assert chosen == ([defaults[group]] if defaults.get(group) and group != "hydra" else []), (group, options)


def test_help_lists_the_run_keys_with_their_defaults(help_text):
    run_keys = " ".join(_section(help_text(), "Run keys"))
    knobs = {k for name in models.names() for k in models.knobs(name)}
    root = yaml.safe_load((CONF / "config.yaml").read_text())
    for key, value in root.items():
        if key in knobs or key == "defaults":
            continue
        for name, leaf in (value.items() if isinstance(value, dict) else [(None, value)]):
            shown = f"{key}.{name}={_shown(leaf)}" if name else f"{key}={_shown(value)}"
            assert shown in run_keys.split(), (shown, run_keys)
    assert not knobs & {word.partition("=")[0] for word in run_keys.split()}


def test_help_lists_every_model_with_each_knob_its_default_and_doc(help_text):
    lines = _section(help_text(), "Models")
    blocks: dict[str, list[str]] = {}
    for line in lines[:-1]:  # the last line is about the variants
        if line.startswith(" "):
            blocks[name].append(line)
        else:
            name = line.partition(":")[0]
            blocks[name] = [line]
    assert sorted(blocks) == models.names()
    assert lines[-1].endswith(f"model.variant={'|'.join(models.VARIANTS)}.")
    for name in models.names():
        definition = models.get(name)
        block = blocks[name]
        assert _words(" ".join(block)).startswith(_words(f"{name}: {definition.summary()}")), block
        defaults = yaml.safe_load((CONF / "model" / f"{name}.yaml").read_text())
        shown = [m.groups() for m in (re.match(r"  (\w+)=(\S+)\s", line) for line in block) if m]
        assert shown == [(knob, _shown(defaults[knob])) for knob in models.knobs(name)], block
        for doc in definition.knob_docs().values():
            assert _words(doc) in _words(" ".join(block)), (name, doc)


def test_help_examples_are_the_readmes_command_line(help_text):
    readme = (REPO / "README.md").read_text().split("\n## Command line\n", 1)[1]
    commands = readme.split("```bash\n", 1)[1].split("```", 1)[0].strip().splitlines()
    assert _section(help_text(), "Examples") == commands


def test_help_says_where_runs_go_and_how_to_review_them(help_text, tmp_path):
    text = help_text()
    outputs = tmp_path / "outputs"
    where = "\n".join(_section(text, "Where runs go"))
    assert f"Under {outputs} (paths.output_dir)" in where
    assert all(folder in where for folder in ("runs/", "multiruns/", "checkpoints/"))
    uri = f"sqlite:///{outputs}/mlflow.db"
    assert f"MLflow store (tracking.uri): {uri}" in where
    assert f"Review runs: {ui_command(uri)}" in where and UI_URL in where
    # the same command the README shows at the end of a run, with this project's outputs/
    readme = re.search(r"review:  (mlflow ui .*)", (REPO / "README.md").read_text()).group(1)
    assert readme.replace("/path/to/trainer", str(tmp_path)) in where


def test_help_reads_a_users_config_dir_and_this_command_line(help_text, tmp_path):
    """As Hydra's own help: options from --config-dir, the choices of the command line."""
    conf = tmp_path / "my_conf"
    (conf / "model").mkdir(parents=True)
    (conf / "optimizer").mkdir()
    (conf / "model" / "tiny.yaml").write_text(MODEL_YAML)  # the user's model of docs/models-and-serving.md
    (conf / "optimizer" / "fastsgd.yaml").write_text("name: sgd\nlearning_rate: 0.1\nclipnorm: null\nclipvalue: null\n")
    text = help_text("--config-dir", str(conf), "model=tiny", "optimizer=fastsgd", "tracking=none")
    groups = _help_groups(text)
    assert groups["model"] == ["cnn", "conditional", "dynamic", "mlp", "resnet", "tiny*"]
    assert groups["optimizer"] == ["adam", "adamw", "fastsgd*", "rmsprop", "sgd"]
    assert _section(text, "Models")[-4:-1] == [
        "tiny: registered when a run imports model.module my_models.tiny", "  units=16", "  activation=relu"]
    assert "MLflow records nothing: tracking is off (tracking.enabled=false)." in text
    assert "units=" not in " ".join(_section(text, "Run keys"))


def test_help_with_a_bad_override_is_one_line(cli):
    result = cli("--help", "model=resnt")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "error: model must be one of cnn, conditional, dynamic, mlp, resnet. Received: model=resnt"]


def test_hydra_help_stays_hydras(tmp_path):
    # Not through `cli`: Hydra's help composes only Hydra's config, where data.data_dir is no key.
    env = {**os.environ, "TRAINER_ROOT": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "trainer", "--hydra-help"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "== Flags ==" in result.stdout and "hydra/launcher:" in result.stdout
    assert "== Models" not in result.stdout


@pytest.mark.parametrize("name", models.names())
def test_every_model_documents_every_knob_and_itself(name):
    """The help prints each knob's line of the definition's Args, and the model's summary."""
    definition = models.get(name)
    docs = definition.knob_docs()
    assert list(docs) == models.knobs(name)
    assert all(docs.values()), docs
    assert definition.summary() and not definition.summary().startswith(f"`{name}`")
