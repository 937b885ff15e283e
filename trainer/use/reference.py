"""What `run=` names, read from its text alone (no MLflow, no TensorFlow), so a typo is one line
before anything heavy loads. trainer/use/source.py finds and loads what it names."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from trainer.config.checks import shorten
from trainer.errors import ConfigError

RUN_ID = re.compile(r"[0-9a-f]{32}")
# models:/<model id> (MLflow 3's LoggedModel ids are m-<32 hex>), models:/<name>/<version>,
# models:/<name>@<alias>.
_MODEL_ID = re.compile(r"models:/(m-[0-9a-f]{32})")
_VERSION = re.compile(r"models:/([^/@]+)/(\d+)")
_ALIAS = re.compile(r"models:/([^/@]+)@([^/@]+)")

ALLOWED = ("a run id (32 hex characters), models:/<model id>, models:/<name>/<version>, models:/<name>@<alias>"
           " or a path to a .keras file")


@dataclass(frozen=True)
class Reference:
    """`run=` parsed: exactly one of run_id, model_id, (name, version or alias), file is set."""
    text: str
    run_id: str | None = None
    model_id: str | None = None
    name: str | None = None
    version: str | None = None
    alias: str | None = None
    file: str | None = None


def parse(run) -> Reference:
    """`run=`'s value -> a Reference, or ConfigError naming what `run` may be. A file must exist."""
    text = "" if run is None else str(run).strip()
    if not text:
        raise ConfigError(f"run must be {ALLOWED}. Received: run={'null' if run is None else repr(run)}")
    if RUN_ID.fullmatch(text):
        return Reference(text, run_id=text)
    if text.startswith("models:/"):
        if match := _MODEL_ID.fullmatch(text):
            return Reference(text, model_id=match.group(1))
        if match := _VERSION.fullmatch(text):
            return Reference(text, name=match.group(1), version=match.group(2))
        if match := _ALIAS.fullmatch(text):
            return Reference(text, name=match.group(1), alias=match.group(2))
        raise ConfigError(f"run must be {ALLOWED}; {shorten(text)} is not a models:/ URI of one of those forms."
                          f" Received: run={shorten(text)}")
    if text.endswith(".keras") or os.sep in text:
        path = os.path.abspath(os.path.expanduser(text))
        if not os.path.isfile(path):
            raise ConfigError(f"run must be {ALLOWED}; the file {shorten(path)} does not exist."
                              f" Received: run={shorten(text)}")
        if not path.endswith(".keras"):
            raise ConfigError(f"run must be {ALLOWED}; {shorten(path)} is not a .keras file."
                              f" Received: run={shorten(text)}")
        return Reference(text, file=path)
    raise ConfigError(f"run must be {ALLOWED}. Received: run={shorten(text)}")
