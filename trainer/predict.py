"""`python -m trainer.predict run=<...> source=<...>`: class probabilities for images from a trained
model (trainer/use/predict.py), with the command line checked before TensorFlow loads."""

from __future__ import annotations

from trainer.run import console
from trainer.use import checks, cli


def _job(cfg) -> None:
    # The TensorFlow boundary: the checks above it import none.
    with console.tensorflow_start_up_quiet():
        from trainer.run import runtime
        from trainer.use.predict import predict

        runtime.probe_devices()

    predict(cfg)


def main() -> None:
    cli.main("predict", checks.predict, _job)


if __name__ == "__main__":
    main()
