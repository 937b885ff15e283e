"""How a store's runs are reviewed: the `mlflow ui` command that the end of every run and
`python -m trainer --help` print. Plain Python, so `--help` stays free of MLflow."""

from __future__ import annotations

UI_URL = "http://127.0.0.1:5000"  # where the UI that ui_command starts answers


def ui_command(uri: str) -> str:
    """The command that shows this store's runs in the MLflow UI, reachable from this machine only
    (docs/security.md)."""
    return f"mlflow ui --backend-store-uri {uri} --host 127.0.0.1 --port 5000"
