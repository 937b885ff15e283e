"""`python -m trainer.evaluate run=<...> data=<group>`: a trained model's metrics and per-class report
on a dataset, recorded in MLflow (trainer/use/evaluate.py), the command line checked before
TensorFlow loads."""

from __future__ import annotations

from trainer.run import console
from trainer.use import checks, cli


def _job(cfg) -> None:
    # The TensorFlow boundary: the checks above it import none.
    with console.tensorflow_start_up_quiet():
        from trainer.run import runtime
        from trainer.use.evaluate import evaluate

        runtime.probe_devices()

    evaluate(cfg)


def main() -> None:
    cli.main("evaluate", checks.evaluate, _job)


if __name__ == "__main__":
    main()
