"""A sweep leaks no secret: a real two-job sweep through the CLI with secrets in the environment
and in its overrides (typed, nested in lists and dicts, a URL password with `/`, `@` and `:`),
then every param, tag, run name, metric key and artifact byte of the parent and both children,
the printed output and the sweep folder are searched for the secret values."""

from __future__ import annotations

from pathlib import Path

from mlflow.tracking import MlflowClient

from tests.conftest import tracking_uri
from trainer.tracking import provenance, secrets

ENV_SECRET = "env-token-5150aa"
TYPED_SECRET = "typed-key-8812bb"
LIST_SECRET = "list-secret-3371cc"
DICT_SECRET = "dict-secret-4490dd"
URL_PASSWORD = "p/a@ss:w0rd"
SECRETS = (ENV_SECRET, TYPED_SECRET, LIST_SECRET, DICT_SECRET, URL_PASSWORD)
# Searched for: each secret, and every piece of the URL password, which Hydra writes with `\:`
# in swept values and a mask that stops at the first `/`, `@` or `:` would leave in part.
SEARCHED = SECRETS + ("p/a@ss", "w0rd")


def test_redaction_of_nested_values_and_url_passwords():
    env = {"MY_API_TOKEN": ENV_SECRET}
    texts = [
        f"+model.extra=[{{api_key: {LIST_SECRET}}}]",
        f"+model.extra={{token: {DICT_SECRET}}}",
        f"[{{'api_key': '{LIST_SECRET}'}}]",  # a list of dicts as a param value (Python's repr)
        f'{{"token": "{DICT_SECRET}"}}',  # JSON
        f"dsn: postgresql://u:{URL_PASSWORD}@host/db",
        f"'+model.dsn=postgresql://u:{URL_PASSWORD}@host/db'",
        f"note={ENV_SECRET}",
    ]
    for text in texts:
        masked = secrets.redact_text(text, env)
        assert not any(s in masked for s in SECRETS), masked
        assert secrets.redact_text(masked, env) == masked  # masking twice changes nothing
    assert secrets.redact_text(f"postgresql://u:{URL_PASSWORD}@host/db") == "postgresql://u:***@host/db"
    # One argument is one override: under a secret key its whole value is the secret, spaces and all.
    command = provenance.command_line(["trainer", "+model.api_key=several words 7781", f"+x.dsn=mysql://u:{URL_PASSWORD}@h"])
    assert command == "python -m trainer '+model.api_key=***' '+x.dsn=mysql://u:***@h'"
    # What is not a credential stays as it was.
    for plain in ("http://127.0.0.1:5000", "file:///srv/a:b/c@d", "s3://bucket/key@1", "width=8 depth=3"):
        assert secrets.redact_text(plain, {}) == plain


def test_a_sweep_logs_no_secret_anywhere(cli, tmp_path):
    # The swept key is the URL, so the secret is in what names the children.
    urls = ",".join(f"postgresql://u:{URL_PASSWORD}@db{n}/x" for n in (1, 2))
    result = cli("-m", "model=mlp", "width=8", "epochs=1", "+model.note=${oc.env:MY_API_TOKEN}",
                 f"+model.api_key={TYPED_SECRET}", f"+model.extra=[{{api_key: {LIST_SECRET}}}]",
                 f"+model.extra2={{token: {DICT_SECRET}}}", f"+model.dsn={urls}",
                 extra_env={"MY_API_TOKEN": ENV_SECRET})
    assert result.returncode == 0, result.stderr[-3000:]

    client = MlflowClient(tracking_uri(tmp_path))
    runs = client.search_runs([client.get_experiment_by_name("trainer").experiment_id])
    parents = [r for r in runs if r.data.tags.get("sweep.role") == "parent"]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and len(children) == 2 and len(runs) == 3
    parent = parents[0]
    assert {"command", "sweep.overrides", "best_overrides"} <= set(parent.data.tags)

    leaks = []

    def scan(where: str, text: str) -> None:
        leaks.extend(f"{where}: {s!r}" for s in SEARCHED if s in text)

    for run in runs:
        name = run.info.run_name
        scan(f"{name} run name", name)
        for key, value in {**run.data.params, **run.data.tags}.items():
            scan(f"{name} {key}", f"{key}={value}")
        for key in run.data.metrics:
            scan(f"{name} metric key", key)
        folder = Path(client.download_artifacts(run.info.run_id, "", str(tmp_path / "downloaded" / run.info.run_id)))
        files = [p for p in folder.rglob("*") if p.is_file()]
        assert files, name
        for path in files:
            scan(f"{name} artifact {path.relative_to(folder)}", path.read_bytes().decode("latin-1"))

    scan("stdout", result.stdout)
    scan("stderr", result.stderr)
    # The sweep folder: what the framework writes there (logs, markers) is masked. Hydra's own
    # record of the config as typed (.hydra/, multirun.yaml) stays on the user's disk as it is,
    # as for a single run; its copies in MLflow were searched above.
    (sweep_dir,) = (tmp_path / "outputs" / "multiruns").glob("*/*")
    for path in sweep_dir.rglob("*"):
        if path.is_file() and ".hydra" not in path.parts and path.name != "multirun.yaml":
            scan(f"sweep folder {path.relative_to(sweep_dir)}", path.read_bytes().decode("latin-1"))
    assert not leaks, "\n".join(leaks)

    # Masked, not dropped: the children are still told apart by their (masked) URL.
    names = sorted(r.info.run_name for r in children)
    assert [name.startswith("+model.dsn=postgresql") and name.endswith(f"***@db{n}/x")
            for n, name in zip((1, 2), names)] == [True, True], names
    summary = Path(client.download_artifacts(parent.info.run_id, "sweep_summary.md", str(tmp_path / "summary")))
    assert "***@db1/x" in summary.read_text() and "***@db2/x" in summary.read_text()
