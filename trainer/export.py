"""`python -m trainer.export run=<run id | models:/ URI | file.keras> format=[saved_model,onnx,litert]`:
every format written, checked against the Keras model and logged to the run (trainer/use/export.py),
with the command line checked before TensorFlow loads (trainer/use/cli.py): an unknown format, a
package a format needs, a run that is not in the store, each one line, exit 2, nothing written."""

from __future__ import annotations

from omegaconf import DictConfig

from trainer.run import console
from trainer.use import cli, export_config


def _check(cfg: DictConfig) -> None:
    export_config.validate(cfg)
    # MLflow, not TensorFlow: an unknown run, a run without a model or a missing store is one line.
    from trainer.use import source

    run = cfg.run
    source.locate(run, None if str(run).endswith(".keras") else cfg.tracking.uri)


def _job(cfg: DictConfig) -> None:
    settings = export_config.validate(cfg)
    # The TensorFlow boundary: the checks above it import none.
    with console.tensorflow_start_up_quiet():
        from trainer.run import runtime
        from trainer.use.export import export_command

        runtime.probe_devices()

    export_command(settings)


def main() -> None:
    cli.main("export", _check, _job)


if __name__ == "__main__":
    main()
