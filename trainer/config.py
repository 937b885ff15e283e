"""Validate the composed config once, before TensorFlow is imported, and hand back plain values.

Everything downstream (data, model, loop, tracker) receives plain Python values from here and
never looks at the DictConfig again.
"""

from __future__ import annotations

import os

from omegaconf import DictConfig, ListConfig, OmegaConf

from trainer import checks, loop_config, resume
from trainer.data import settings as data_settings
from trainer.errors import ConfigError

# Top-level scalars that belong to the run rather than to the model.
RUN_KEYS = ("seed", "epochs", "batch_size", "deterministic", "precision")

# Keras activation names (keras.activations.get accepts these; a test keeps the list honest).
ACTIVATIONS = (
    "relu", "gelu", "silu", "swish", "tanh", "sigmoid", "elu", "selu", "leaky_relu", "relu6",
    "softplus", "softsign", "mish", "hard_sigmoid", "hard_silu", "linear",
)



def _check_knob(name: str, value):
    """Range and type rules for the knobs the built-in models share; others pass through."""
    if name in ("depth", "width"):
        return checks.int_at_least(name, value, 1)
    if name == "dropout":
        return checks.number_in(name, value, 0.0, 1.0)
    if name == "l2":
        return checks.number_above(name, value, 0.0, inclusive=True)
    if name == "activation":
        return checks.one_of(name, value, ACTIVATIONS)
    if name in ("filters", "stages"):
        return checks.int_at_least(name, value, 1)
    if name == "widths":
        widths = OmegaConf.to_container(value) if isinstance(value, ListConfig) else value
        if not isinstance(widths, list) or not widths or not all(checks.is_int(w) and w >= 1 for w in widths):
            raise checks.fail(name, "a list of integers >= 1, one per stage, such as [16,32,64]", value)
        return widths
    # A knob of the user's own model: its builder validates it (before the MLflow run starts).
    return OmegaConf.to_container(value, resolve=True) if isinstance(value, ListConfig) else value


def _check_knobs_together(knobs: dict) -> None:
    """Rules that involve more than one knob."""
    if "widths" in knobs and "stages" in knobs and len(knobs["widths"]) != knobs["stages"]:
        stages = knobs["stages"]
        raise ConfigError(
            f"widths must list one width per stage ({stages} integers >= 1, since stages={stages})."
            f" Received: widths={knobs['widths']}"
        )


def _check_model_module(module) -> None:
    """`model.module` names the module that registers a model of the user's own; find it
    without importing it (that would start TensorFlow) so a typo fails in a second."""
    import importlib.util

    if module is None:
        return
    if not isinstance(module, str) or not all(part.isidentifier() for part in module.split(".")):
        raise checks.fail("model.module", "null or a dotted Python module name such as my_models.tiny", module)
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise checks.fail(
            "model.module",
            "an importable Python module (run from the folder that holds it or put that folder on PYTHONPATH)",
            module,
        )


def model_knobs(cfg: DictConfig) -> dict:
    """The selected model's knob values; a knob set for a model that does not use it is an error."""
    declared = list(cfg.model.knobs)
    knob_slots = [k for k, v in cfg.items() if k not in RUN_KEYS and not isinstance(v, DictConfig)]
    for key in knob_slots:
        if key not in declared and cfg[key] is not None:
            raise ConfigError(
                f"{key} is not a knob of model '{cfg.model.name}'; its knobs are:"
                f" {', '.join(declared) or 'none'}. Received: {key}={cfg[key]}"
            )
    missing = [k for k in declared if k not in cfg or cfg[k] is None]
    if missing:
        raise ConfigError(
            f"model '{cfg.model.name}' lists knob {missing[0]} in model.knobs but"
            f" conf/model/{cfg.model.name}.yaml gives it no value. Received: {missing[0]}=null"
        )
    knobs = {k: _check_knob(k, cfg[k]) for k in declared}
    _check_knobs_together(knobs)
    return knobs


def _check_tracking(tracking: DictConfig) -> None:
    checks.boolean("tracking.enabled", tracking.enabled)
    uri = tracking.uri
    if not isinstance(uri, str) or "://" not in uri and not uri.startswith(("databricks", "file:")):
        raise checks.fail("tracking.uri", "an MLflow tracking URI such as sqlite:///path/mlflow.db or"
                          " http://host:5000", uri)
    if not isinstance(tracking.experiment, str) or not tracking.experiment.strip():
        raise checks.fail("tracking.experiment", "a non-empty experiment name", tracking.experiment)
    checks.int_at_least("tracking.log_every_n_steps", tracking.log_every_n_steps, 0)
    name = tracking.register_as
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise checks.fail("tracking.register_as", "null or a registered-model name", name)


def _check_sweep(sweep: DictConfig) -> None:
    if not isinstance(sweep.metric, str) or not sweep.metric:
        raise checks.fail("sweep.metric", "the name of a metric the run reports, such as val_accuracy", sweep.metric)
    checks.one_of("sweep.direction", sweep.direction, ("maximize", "minimize"))
    checks.boolean("sweep.continue_on_failure", sweep.continue_on_failure)


def _check_writable(key: str, path) -> None:
    """A folder the run will write to must be writable (or creatable) now, not after a TensorFlow
    start-up and an hour of training. `access` also sees a read-only mount, even for root."""
    if path is None or "://" in str(path):
        return
    existing = os.path.abspath(str(path))
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing) or not os.access(existing, os.W_OK | os.X_OK):
        raise checks.fail(key, f"a folder this user can write to ({existing} is not writable)", path)


def _check_contradictions(cfg: DictConfig) -> None:
    """Settings that are each valid but cannot hold together; caught here rather than after a
    TensorFlow start-up (Keras rejects both clips only when it builds the optimizer)."""
    if cfg.tracking.register_as is not None and not cfg.tracking.enabled:
        raise ConfigError(
            "tracking.register_as needs tracking.enabled=true: an untracked run logs no model to register."
            f" Received: tracking.register_as={cfg.tracking.register_as}, tracking.enabled=false"
        )
    if cfg.optimizer.get("clipnorm") is not None and cfg.optimizer.get("clipvalue") is not None:
        raise ConfigError(
            "optimizer.clipnorm and optimizer.clipvalue cannot both be set (Keras clips one way); keep one."
            f" Received: optimizer.clipnorm={cfg.optimizer.clipnorm}, optimizer.clipvalue={cfg.optimizer.clipvalue}"
        )


def validate(cfg: DictConfig) -> dict:
    """Check the whole config; return it as plain containers with `model.knobs` as a dict."""
    checks.int_at_least("epochs", cfg.epochs, 1)
    checks.int_at_least("batch_size", cfg.batch_size, 1)
    checks.int_at_least("seed", cfg.seed, 0)
    checks.one_of("model.variant", cfg.model.variant, ("functional", "subclassed"))
    loop_config.check(cfg)
    data_settings.check(cfg.data)
    _check_model_module(cfg.model.module)
    knobs = model_knobs(cfg)
    _check_tracking(cfg.tracking)
    _check_sweep(cfg.sweep)
    _check_contradictions(cfg)
    if cfg.tracking.enabled:
        _check_writable("tracking.artifact_location", cfg.tracking.artifact_location)

    # The hydra node (present when a test composes with return_hydra_config) is Hydra's own.
    plain = {
        key: OmegaConf.to_container(cfg[key], resolve=True, throw_on_missing=True)
        for key in cfg
        if key != "hydra" and isinstance(cfg[key], DictConfig)
    }
    plain.update({key: cfg[key] for key in RUN_KEYS})
    plain["model"]["knobs"] = knobs
    resume.check_folder(plain)  # a resume.dir of the user's files, or of another config, is refused here
    return plain
