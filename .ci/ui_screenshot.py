"""Regenerate README's picture of the MLflow UI comparing a real sweep's runs.

    python .ci/ui_screenshot.py [--out .ci/mlflow-ui-compare.png]

Runs a small real sweep into a temporary project root, starts `mlflow ui` on 127.0.0.1 at a
free port against its SQLite store, opens the compare view of the sweep's child runs in headless
Chromium (Debian's `chromium` package: `apt-get install -y chromium`) and writes a PNG. Nothing
in the test suite needs Chromium; this is a documentation tool.
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
    env = {**os.environ, "TRAINER_ROOT": str(root), "TF_CPP_MIN_LOG_LEVEL": "2"}
    print("running the sweep:", "python -m trainer", " ".join(SWEEP), flush=True)
    subprocess.run([sys.executable, "-m", "trainer", *SWEEP], cwd=root, env=env, check=True,
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


def compare_url(store: str, port: int) -> str:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(store)
    experiment = client.get_experiment_by_name("trainer").experiment_id
    children = [r.info.run_id for r in client.search_runs([experiment], "tags.`mlflow.parentRunId` != ''")]
    query = urllib.parse.urlencode({"runs": json.dumps(children), "experiments": json.dumps([experiment])})
    return f"http://127.0.0.1:{port}/#/compare-runs?{query}"


def screenshot(url: str, out: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("chromium not found: apt-get install -y chromium")
    with tempfile.TemporaryDirectory() as profile:
        raw = Path(profile) / "raw.png"
        subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}/data", f"--screenshot={raw}", url],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=180)
        shrink(raw, out)


def shrink(raw: Path, out: Path) -> None:
    """A 256-colour palette keeps the UI's flat colours and text sharp at a fraction of the size."""
    from PIL import Image

    image = Image.open(raw).convert("RGB")
    # MLflow 3.17 opens its "Assistant" chat panel on the right of every page; the comparison is the rest.
    image = image.crop((0, 0, KEEP_WIDTH, image.height))
    image.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(out, optimize=True)
    print(f"wrote {out} ({out.stat().st_size // 1024} KB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / ".ci" / "mlflow-ui-compare.png")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="trainer-screenshot-") as tmp:
        root = Path(tmp)
        run_sweep(root)
        store = f"sqlite:///{root / 'outputs' / 'mlflow.db'}"
        port = free_port()
        ui = start_ui(store, port)
        try:
            url = compare_url(store, port)
            print("opening", url, flush=True)
            screenshot(url, args.out)
        finally:
            os.killpg(ui.pid, signal.SIGTERM)
            try:
                ui.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(ui.pid, signal.SIGKILL)


if __name__ == "__main__":
    main()
