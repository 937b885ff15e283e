"""What `python -m trainer --help` prints: the composed config's `hydra.help.template` (in
conf/hydra/default.yaml), its $NAMEs filled in from the config tree, the model registry and the config.

The groups come from Hydra's config repository (the user's --config-dir included), the models
and their knob docs from the registry, the knob defaults from each model's YAML, so nothing here
repeats what those declare. No TensorFlow, Keras or MLflow: `--help` answers in well under a second.
"""

from __future__ import annotations

import copy
import re
import shutil
import string
import textwrap

from hydra._internal.hydra import Hydra
from hydra._internal.utils import get_args_parser
from hydra.core.hydra_config import HydraConfig
from hydra.core.object_type import ObjectType
from omegaconf import DictConfig, OmegaConf

import models
from trainer.config.choices import VARIANTS
from trainer.tracking.review import UI_URL, ui_command


def render(hydra: Hydra, cfg: DictConfig, *, resolve: bool = False) -> str:
    """The help text for the config `cfg` that `hydra` composed from this command line."""
    repository = hydra.config_loader.repository
    groups = _groups(repository)
    app_groups = [g for g in groups if not _is_hydra(g)]
    choices = OmegaConf.to_container(cfg.hydra.runtime.choices)
    table = _model_table(repository)
    width = min(max(shutil.get_terminal_size((100, 24)).columns, 80), 120)  # wrap long lines here
    fields = _Fields({
        "CONFIG_GROUPS": lambda: _groups_text(repository, app_groups, choices),
        "RUN_KEYS": lambda: _run_keys(cfg, {g.split("/")[0] for g in app_groups}
                                      | {knob for *_, knobs in table for knob, _, _ in knobs}, width),
        "MODELS": lambda: _models_text(table, width),
        "VARIANTS": lambda: "|".join(VARIANTS),
        "OUTPUT_DIR": lambda: str(_value(cfg, "paths.output_dir", "outputs/")),
        "TRACKING": lambda: _tracking(cfg),
        # Hydra's own placeholders, for a template written for Hydra's app_help
        "APP_CONFIG_GROUPS": lambda: _groups_text(repository, app_groups),
        "HYDRA_CONFIG_GROUPS": lambda: _groups_text(repository, [g for g in groups if _is_hydra(g)]),
        "FLAGS_HELP": lambda: Hydra.format_args_help(get_args_parser()),
        "CONFIG": lambda: OmegaConf.to_yaml(hydra.get_sanitized_cfg(copy.deepcopy(cfg), "job"), resolve=resolve),
    })
    HydraConfig.instance().set_config(cfg)  # as Hydra's app_help does, so `${hydra:...}` resolves
    return string.Template(cfg.hydra.help.template).safe_substitute(fields)


class _Fields(dict):
    """The template's values, each computed only if the template names it."""

    def __init__(self, makers):
        super().__init__()
        self._makers = makers

    def __missing__(self, name):
        value = self[name] = self._makers[name]()  # an unknown $NAME: KeyError, left as written
        return value


def _is_hydra(group: str) -> bool:
    return group == "hydra" or group.startswith("hydra/")


def _groups(repository, parent: str = "") -> list[str]:
    """Every config group that has options, nested ones included, as Hydra's list_all_config_groups
    finds them (but from one repository, not a new one per group)."""
    found = []
    for child in repository.get_group_options(parent, ObjectType.GROUP):
        group = f"{parent}/{child}" if parent else child
        if repository.get_group_options(group, ObjectType.CONFIG):
            found.append(group)
        found.extend(_groups(repository, group))
    return sorted(found)


def _groups_text(repository, groups: list[str], choices: dict | None = None) -> str:
    """`group: a, b*, c` per group, `*` on this command's choice; Hydra's format without choices."""
    lines = []
    for group in groups:
        options = repository.get_group_options(group, ObjectType.CONFIG)
        if choices is None:
            lines.append(f"{group}: {', '.join(options)}")
        else:
            shown = [f"{o}*" if o == choices.get(group) else o for o in options]
            lines.append(f"{group + ':':<16}{', '.join(shown)}")
    return "\n".join(lines)


def _shown(value) -> str:
    """A value as it is typed on the command line: null, true, [16,32,64]."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return f"[{','.join(_shown(v) for v in value)}]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{_shown(v)}" for k, v in value.items()) + "}"
    return str(value)


def _wrapped(words: list[str], width: int) -> str:
    return textwrap.fill("  ".join(words), width, break_long_words=False, break_on_hyphens=False)


def _flat(node, prefix: str = ""):
    for key, value in node.items():
        if isinstance(value, dict) and value:
            yield from _flat(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _run_keys(cfg: DictConfig, owned: set[str], width: int) -> str:
    """The root's keys that no config group and no model owns (seed, epochs, resume.*...)."""
    raw = OmegaConf.to_container(cfg, resolve=False)
    top = {k: v for k, v in raw.items() if k != "hydra" and k not in owned}
    scalars = [f"{k}={_shown(v)}" for k, v in top.items() if not isinstance(v, dict)]
    sections = [_wrapped([f"{k}={_shown(v)}" for k, v in _flat({key: value})], width)
                for key, value in top.items() if isinstance(value, dict)]
    return "\n".join([_wrapped(scalars, width), *sections])


def _model_table(repository) -> list[tuple[str, str, list[tuple[str, object, str]]]]:
    """(option of the model group, its summary line, [(knob, default, doc)]) for each model YAML,
    then each registered model that no YAML selects (with no defaults to show)."""
    table, named = [], set()
    for option in repository.get_group_options("model", ObjectType.CONFIG):
        try:
            result = repository.load_config(f"model/{option}")
            yaml = OmegaConf.to_container(result.config, resolve=False) if result is not None else {}
        except Exception as err:  # noqa: BLE001 (a broken YAML fails only the run that picks it)
            table.append((option, f"(its YAML could not be read: {type(err).__name__})", []))
            continue
        section = yaml.get("model") if isinstance(yaml.get("model"), dict) else {}
        name = section.get("name") or option
        if name in models.names():
            named.add(name)
            definition = models.get(name)
            summary = definition.summary() if name == option else f"model {name}: {definition.summary()}"
            docs = definition.knob_docs()
            knobs = [(k, yaml.get(k), docs.get(k, "")) for k in models.knobs(name)]
        else:  # a model of the user's own, registered when a run imports model.module
            module = section.get("module")
            summary = (f"registered when a run imports model.module {module}" if module
                       else "not a registered model, and its YAML names no model.module to import")
            summary = summary if name == option else f"model {name}, {summary}"
            knobs = [(k, v, "") for k, v in yaml.items() if k not in ("model", "defaults")]
        table.append((option, summary, knobs))
    for name in models.names():
        if name not in named:
            summary = f"{models.get(name).summary()} (no model/{name}.yaml: not selectable)"
            table.append((name, summary, [(k, None, d) for k, d in models.get(name).knob_docs().items()]))
    return table


def _models_text(table, width: int) -> str:
    settings = [[f"{knob}={_shown(default)}" for knob, default, _ in knobs] for *_, knobs in table]
    column = max((len(s) for row in settings for s in row), default=0) + 4  # one column for every model
    lines = []
    for (option, summary, knobs), row in zip(table, settings):
        lines.append(_fill(f"{option}: {summary}", width, 4))
        lines.extend(_fill(f"  {setting:<{column - 2}}{doc}", width, column) if doc else f"  {setting}"
                     for setting, (_, _, doc) in zip(row, knobs))
    return "\n".join(lines)


def _fill(text: str, width: int, indent: int) -> str:
    """Wrapped, never leaving a word of up to 3 characters alone at the start of a line (">= 1.")."""
    glued = re.sub(r" (?=\S{1,3}(?:\s|$))", "\xa0", text)  # textwrap breaks at ASCII whitespace only
    return textwrap.fill(glued, width, subsequent_indent=" " * indent).replace("\xa0", " ")


def _value(cfg: DictConfig, key: str, default):
    found = OmegaConf.select(cfg, key, default=default, throw_on_resolution_failure=False)
    return default if found is None else found


def _tracking(cfg: DictConfig) -> str:
    if not _value(cfg, "tracking.enabled", True):
        return "MLflow records nothing: tracking is off (tracking.enabled=false)."
    uri = str(_value(cfg, "tracking.uri", ""))
    if uri.startswith(("http://", "https://")):
        return f"MLflow store (tracking.uri): the tracking server {uri}\nReview runs: open it in a browser"
    return (f"MLflow store (tracking.uri): {uri}\nReview runs: {ui_command(uri)}\n"
            f"             then open {UI_URL} (comparing runs: docs/tracking.md)")
