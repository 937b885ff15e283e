"""How a store's runs are reviewed: the `mlflow ui` command that the end of every run and
`python -m trainer --help` print. Plain Python, so `--help` stays free of MLflow."""

from __future__ import annotations

UI_URL = "http://127.0.0.1:5000"  # where the UI that ui_command starts answers


def ui_command(uri: str) -> str:
    """The command that shows this store's runs in the MLflow UI, reachable from this machine only
    (docs/security.md)."""
    return f"mlflow ui --backend-store-uri {uri} --host 127.0.0.1 --port 5000"


def runs_url(ui: str, experiment_id: str) -> str:
    """The experiment's runs in the UI's "Model training" view. MLflow 3's UI opens an experiment
    on its GenAI view unless the URL names the workflow (an experiment tag does not change that)."""
    return f"{ui.rstrip('/')}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"


def how_to_review(uri: str, experiment_id: str) -> str:
    """The end of a run's report: where its experiment's runs are, and for a local store the
    command that serves them first."""
    if uri.startswith(("http://", "https://")):
        return runs_url(uri, experiment_id)
    return f"{ui_command(uri)}\n           then open {runs_url(UI_URL, experiment_id)}"
