"""`python -m trainer.export run=<run id | models:/ URI | file.keras> format=[saved_model,onnx,litert]`:
check the command line, then export the model and check each file (trainer/use/export.py).

Thin like trainer/__main__.py: Hydra composes conf/export.yaml, trainer.cli.command reports bad
input in one line before TensorFlow is imported (an unknown format, a package the format needs,
a missing file), and the exported files appear only once every format passed its check.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from trainer import errors
from trainer.cli import command, resolvers
from trainer.run import console
from trainer.use import export_config

resolvers.register()

CONFIG_NAME = "export"
COMMAND = "python -m trainer.export"


@hydra.main(config_path=command.CONFIG_PATH, config_name=CONFIG_NAME, version_base="1.3")
def _hydra_main(cfg: DictConfig) -> None:
    settings = export_config.validate(cfg)  # checked already by the preflight: plain values here
    try:
        with console.tensorflow_start_up_quiet():  # the TensorFlow boundary
            from trainer.run import runtime
            from trainer.use import export as exporting

            runtime.probe_devices()
        exporting.export_command(settings)
    except Exception as err:
        end = errors.ending(err, tracked=False)
        if end.line is None or command._full_error():
            raise
        command.fail(end.line, code=end.code)


def main() -> None:
    console.mlflow_defaults()
    command.preflight_tool(COMMAND, CONFIG_NAME, export_config.validate)
    _hydra_main()


if __name__ == "__main__":
    main()
