"""One arm of the `pipeline` benchmark in a process of its own, so that the real pipeline and the
in-memory batches can train in lockstep (benchmarks/probe.py):

    python -m benchmarks.probe OUT.json -- -m benchmarks.pipeline_arm WORKDIR LOG DATASET ARM EXAMPLES OVERRIDES...

WORKDIR and LOG are the parent session's, DATASET a key of pipeline.DATASETS, ARM `real` or
`memory`, EXAMPLES the mock CIFAR-10 split size; OVERRIDES go to `train(cfg)` as in the parent.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from pathlib import Path

from benchmarks import pipeline
from benchmarks.session import QUICK, Session


def main(argv: list[str]) -> None:
    workdir, log, dataset, arm, examples, *overrides = argv
    session = Session(dataclasses.replace(QUICK, cifar_examples=int(examples)), Path(workdir), Path(log))
    session.prepare()  # digits is ready already; this registers the config resolvers
    _, context = pipeline.DATASETS[dataset]
    with context(session), pipeline.batches_in_memory() if arm == "memory" else contextlib.nullcontext():
        session.train(*overrides)


if __name__ == "__main__":
    main(sys.argv[1:])
