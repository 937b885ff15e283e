"""The export settings, checked before TensorFlow loads: which formats a config may ask for and
whether this Python can write them (for `python -m trainer.export format=` and for
`export.formats=` at the end of training alike; the formats are declared in
trainer/config/choices.py), and the rest of conf/export.yaml."""

from __future__ import annotations

import importlib.util
import os

from omegaconf import ListConfig, OmegaConf

from trainer.config import checks
from trainer.config.choices import EXPORT_FORMATS, EXPORT_PACKAGES
from trainer.errors import ConfigError
from trainer.use import reference

# What a user installs for the formats that need more than TensorFlow (pyproject.toml's extra).
INSTALL = 'pip install -e ".[export]"'
# The check every export passes, at the end of training and in `python -m trainer.export` alike:
# run in its own runtime on this many test examples, no probability further than TOLERANCE from
# the Keras model's. A contract of the exports rather than a setting (issue 20 asks for these).
CHECK_EXAMPLES = 256
TOLERANCE = 1e-5
# The report an export leaves in its folder (trainer/use/export.py): it marks the folder as one
# an export may write into again.
REPORT_JSON = "export.json"


def check(key: str, value, *, empty_ok: bool) -> list[str]:
    """`value` (one format name or a list of them) as a list of distinct formats, in the order
    given, each a declared format whose packages are installed; otherwise one ConfigError."""
    formats = OmegaConf.to_container(value) if isinstance(value, ListConfig) else value
    if isinstance(formats, str):
        formats = [formats]
    allowed = ", ".join(EXPORT_FORMATS)
    wanted = "a list of" if empty_ok else "one or a list of"
    if not isinstance(formats, list) or (not formats and not empty_ok):
        raise checks.fail(key, f"{wanted} the export formats {allowed} (several: {key}=[onnx,litert])", value)
    for name in formats:
        if name not in EXPORT_FORMATS:
            raise ConfigError(f"{key} must name export formats among {allowed}; {checks.shown(name)} is not one."
                              f" Received: {key}={checks.shown(value)}")
    chosen = list(dict.fromkeys(formats))
    missing = missing_packages(chosen)
    if missing:
        name, package = missing
        raise ConfigError(f"{key} includes {name}, which needs the Python package {package} (not installed here):"
                          f" {INSTALL} installs it. Received: {key}={checks.shown(value)}")
    return chosen


def missing_packages(formats: list[str]) -> tuple[str, str] | None:
    """(format, package) for the first package a chosen format needs that cannot be imported."""
    for name in formats:
        for package in EXPORT_PACKAGES[name]:
            if importlib.util.find_spec(package) is None:
                return name, package
    return None


def validate(cfg) -> dict:
    """conf/export.yaml as composed for `python -m trainer.export`, checked; plain values back."""
    if OmegaConf.is_missing(cfg, "run"):
        raise ConfigError(f"run must name the model to export: {reference.ALLOWED}"
                          " (python -m trainer.export run=<run id> format=onnx). Received: run=???")
    run = cfg.run
    reference.parse(run)  # its form, and a file that must exist
    formats = check("format", cfg.format, empty_ok=False)
    output = cfg.output
    if output is not None:
        if not isinstance(output, str) or not output.strip():
            raise checks.fail("output", "null or the path of a folder", output)
        problem = output_problem(output)
        if problem:
            raise checks.fail("output", f"a new folder, an empty one or one an earlier export wrote ({problem})", output)
    tracking = OmegaConf.to_container(cfg.tracking, resolve=True)
    return {"run": str(run), "formats": formats, "output": output, "tracking_uri": tracking["uri"], "exports_dir": str(cfg.paths.output_dir)}


def output_problem(path: str) -> str | None:
    """Why the export cannot write into folder `path`, or None: a folder holding files of the user's
    own is never written into (an earlier export's folder has its export.json)."""
    problem = checks.folder_problem(path)
    if problem:
        return problem
    if os.path.isdir(path) and os.listdir(path) and not os.path.isfile(os.path.join(path, REPORT_JSON)):
        return f"{checks.shorten(path)} holds other files"
    return None
