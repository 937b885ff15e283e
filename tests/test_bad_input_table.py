"""The "Rejected input" tables of docs/rejected-input.md, checked row by row through the real CLI.

Each row's command runs as `python -m trainer ...` in a fresh project root; it must exit 2 and
print exactly the row's line. Rows in the first table must be answered before TensorFlow is
imported: they run with a `tensorflow` package on PYTHONPATH that fails on import, so a row that
reached TensorFlow would print that failure instead. No row may leave an MLflow store behind.
"""

from __future__ import annotations

import concurrent.futures
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

_AFTER_TF_HEADING = "### Found after TensorFlow loads"


def _cell(text: str) -> str:
    text = text.strip()
    for fence in ("`` ", "`"):
        if text.startswith(fence) and text.endswith(fence[::-1]):
            text = text[len(fence):-len(fence)]
            break
    return text.replace("\\|", "|")


def _cells(line: str) -> list[str]:
    # Split on the table's pipes, not on `\|` inside a message.
    parts, current, escaped = [], "", False
    for char in line.strip().strip("|"):
        if char == "|" and not escaped:
            parts.append(current)
            current = ""
        else:
            current += char
        escaped = char == "\\"
    return [_cell(p) for p in parts + [current]]


def rows() -> list[tuple[str, str, bool]]:
    """(arguments after `python -m trainer`, expected line, answered before TensorFlow) per row."""
    text = (REPO / "docs" / "rejected-input.md").read_text()
    section = text.split("\n## Rejected input\n", 1)[1].split("\n## ", 1)[0]
    found, before_tf = [], True
    for line in section.splitlines():
        if line.startswith("### "):
            before_tf = not line.startswith(_AFTER_TF_HEADING)
        if line.startswith("| `"):
            command, message = _cells(line)
            assert command.startswith("python -m trainer"), line
            found.append((command[len("python -m trainer"):].strip(), message, before_tf))
    return found


ROWS = rows()


def _run(args: str, root: Path, block_tensorflow: bool) -> subprocess.CompletedProcess:
    env = {**os.environ, "TRAINER_ROOT": str(root), "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("HYDRA_FULL_ERROR", None)
    if block_tensorflow:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root.parent / "no_tensorflow"), env.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-m", "trainer", *shlex.split(args)], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)


def test_the_table_covers_what_the_issue_lists():
    args = " ".join(a for a, _, _ in ROWS)
    for needed in ("model=", "model.variant=", "data=", "loop=", "optimizer=", "schedule=", "strategy=",
                   "depth=", "width=", "dropout=", "learning_rate=", "batch_size=", "epochs=",
                   "--config-dir", "data.path=", "_target_"):
        assert needed in args, f"no row rejects {needed}"
    assert len(ROWS) >= 30 and any(not before for _, _, before in ROWS)


def test_rows_answered_before_tensorflow(tmp_path):
    blocker = tmp_path / "no_tensorflow" / "tensorflow"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text('raise ImportError("tensorflow was imported before the config was checked")\n')
    rows_ = [(i, args, message) for i, (args, message, before) in enumerate(ROWS) if before]

    def check(row):
        i, args, message = row
        root = tmp_path / f"row{i}"
        root.mkdir()
        result = _run(args, root, block_tensorflow=True)
        problems = []
        if result.returncode != 2:
            problems.append(f"exit code {result.returncode}")
        if result.stderr.splitlines() != [message]:
            problems.append(f"printed {result.stderr[-600:]!r}")
        if (root / "outputs" / "mlflow.db").exists():
            problems.append("left an MLflow store")
        return [f"python -m trainer {args}: {p}" for p in problems]

    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        problems = [p for found in pool.map(check, rows_) for p in found]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("args, message", [(a, m) for a, m, before in ROWS if not before])
def test_rows_found_after_tensorflow_loads(tmp_path, args, message):
    result = _run(args, tmp_path, block_tensorflow=False)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == message  # TensorFlow's own start-up log may come first
    db = tmp_path / "outputs" / "mlflow.db"
    if db.exists():
        from mlflow.tracking import MlflowClient

        client = MlflowClient(f"sqlite:///{db}")
        experiments = [e.experiment_id for e in client.search_experiments()]
        assert not experiments or client.search_runs(experiments) == []
