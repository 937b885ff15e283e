"""Regenerate the docs' pictures of the MLflow UI from a real sweep's runs.

    python .ci/ui_screenshot.py [--out-dir .ci]

Runs a small real sweep into a temporary project root, starts `mlflow ui` on 127.0.0.1 at a
free port against its SQLite store, and photographs with headless Chromium (Debian's `chromium`
package: `apt-get install -y chromium`) two pages: the URL a run's `review:` line prints (the
experiment's runs on the "Model training" view, README's picture) and the compare view of the
sweep's child runs (docs/tracking.md's). Nothing in the test suite needs Chromium; this is a
documentation tool.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from trainer.tracking.review import runs_url  # noqa: E402  (the URL the review line prints)

SINGLE = ["epochs=6"]
SWEEP = ["-m", "model=dynamic", "depth=1,3", "width=16,64", "epochs=6"]
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--window-size=1600,1150", "--virtual-time-budget=30000"]
KEEP_WIDTH = 1185  # px from the left of the 1600 px window


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_sweep(root: Path) -> None:
    """One single run and one sweep, as a user starts them."""
    env = {**os.environ, "TRAINER_ROOT": str(root)}
    for command in (SINGLE, SWEEP):
        print("running:", "python -m trainer", " ".join(command), flush=True)
        subprocess.run([sys.executable, "-m", "trainer", *command], cwd=root, env=env, check=True,
                       stdout=subprocess.DEVNULL)


def start_ui(store: str, port: int) -> subprocess.Popen:
    ui = subprocess.Popen([sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", store,
                           "--host", "127.0.0.1", "--port", str(port)],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if ui.poll() is not None:
            raise SystemExit("mlflow ui exited before it answered")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return ui
        except OSError:
            time.sleep(0.5)
    raise SystemExit("mlflow ui did not answer within 120 s")


def experiment_id(store: str) -> str:
    from mlflow.tracking import MlflowClient

    return MlflowClient(store).get_experiment_by_name("trainer").experiment_id


def compare_url(store: str, port: int) -> str:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(store)
    experiment = experiment_id(store)
    children = [r.info.run_id for r in client.search_runs([experiment], "tags.`mlflow.parentRunId` != ''")]
    query = urllib.parse.urlencode({"runs": json.dumps(children), "experiments": json.dumps([experiment])})
    return f"http://127.0.0.1:{port}/#/compare-runs?{query}"


def screenshot(url: str, out: Path, height: int | None = None) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("chromium not found: apt-get install -y chromium")
    with tempfile.TemporaryDirectory() as profile:
        raw = Path(profile) / "raw.png"
        subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}/data", f"--screenshot={raw}", url],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=180)
        shrink(raw, out, height)


def shrink(raw: Path, out: Path, height: int | None = None) -> None:
    """A 256-colour palette keeps the UI's flat colours and text sharp at a fraction of the size."""
    from PIL import Image

    image = Image.open(raw).convert("RGB")
    # MLflow 3.17 opens its "Assistant" chat panel on the right of every page; the comparison is the rest.
    image = image.crop((0, 0, KEEP_WIDTH, height or image.height))
    image.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(out, optimize=True)
    print(f"wrote {out} ({out.stat().st_size // 1024} KB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out-dir", type=Path, default=REPO / ".ci")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="trainer-screenshot-") as tmp:
        root = Path(tmp)
        run_sweep(root)
        store = f"sqlite:///{root / 'outputs' / 'mlflow.db'}"
        port = free_port()
        ui = start_ui(store, port)
        try:
            # The runs table is a few rows: keep its top, not the empty page below.
            pages = {"mlflow-ui-runs.png": (runs_url(f"http://127.0.0.1:{port}", experiment_id(store)), 340),
                     "mlflow-ui-compare.png": (compare_url(store, port), None)}
            for name, (url, height) in pages.items():
                print("opening", url, flush=True)
                screenshot(url, args.out_dir / name, height)
        finally:
            os.killpg(ui.pid, signal.SIGTERM)
            try:
                ui.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(ui.pid, signal.SIGKILL)


if __name__ == "__main__":
    main()
