"""`python -m benchmarks [--quick] [--only NAMES] [--out DIR] [--update-docs]`."""

from __future__ import annotations

import argparse
import datetime
import importlib
import os
import shlex
import sys
import tempfile
import time
import traceback
from pathlib import Path

from benchmarks import report
from benchmarks.results import say, section
from benchmarks.session import FULL, QUICK, REPO, Session

# overhead before startup: startup reuses the overhead processes' first-step times.
BENCHMARKS = ("overhead", "startup", "loops", "levers", "tracking", "pipeline", "variants", "compute", "scaling",
              "predict", "pruning", "workers")


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to check the harness works")
    parser.add_argument("--only", default=",".join(BENCHMARKS),
                        help=f"comma-separated subset of: {', '.join(BENCHMARKS)}")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default outputs/benchmarks/<UTC timestamp>)")
    parser.add_argument("--update-docs", action="store_true",
                        help="copy the tables into the benchmark blocks of docs/*.md"
                             " (docs/performance.md, docs/variants.md) and the figures into docs/")
    args = parser.parse_args(argv)
    args.only = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = [name for name in args.only if name not in BENCHMARKS]
    if unknown:
        parser.error(f"--only must name some of {', '.join(BENCHMARKS)}. Received: {unknown[0]}")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    started = datetime.datetime.now(datetime.timezone.utc)
    out = args.out or REPO / "outputs" / "benchmarks" / started.strftime("%Y-%m-%dT%H-%M-%SZ")
    out.mkdir(parents=True, exist_ok=True)
    say(f"benchmarks -> {out}")

    from benchmarks import machine

    sections = []
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="trainer-bench-") as scratch:
        session = Session(QUICK if args.quick else FULL, Path(scratch), out / "training.log")
        session.prepare()
        description = machine.describe()
        for name in BENCHMARKS:
            if name not in args.only:
                continue
            say(f"{name} ...")
            start = time.time()
            try:
                result = importlib.import_module(f"benchmarks.{name}").run(session)
            except Exception as err:  # one broken benchmark must not lose the others' results
                traceback.print_exc()
                result = section(name, name, "A", "B", [])
                result["error"] = f"{type(err).__name__}: {err}"
            result["seconds"] = time.time() - start
            say(f"{name}: {result['seconds']:.0f} s")
            sections.append(result)

    results = {
        "started": started.strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join(["python -m benchmarks", *map(shlex.quote, argv)]).strip(),
        "quick": args.quick,
        "seconds": time.time() - t0,
        "load_average_end": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "machine": description,
        "sections": sections,
    }
    json_path, md_path = report.write(results, out)
    if args.update_docs:
        for path in report.update_docs(results, REPO / "docs"):
            say(f"updated {path}")
    say(f"wrote {json_path}\nwrote {md_path}")
    print(md_path.read_text())
    return 1 if any(s.get("error") for s in sections) else 0


if __name__ == "__main__":
    sys.exit(main())
