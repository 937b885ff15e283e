"""`train(cfg) -> metrics`: validate the config, then build data, model and loop, and track the run.

Everything that can fail on bad input (config, dataset, model knobs) happens before the MLflow
run is created, so a rejected run leaves nothing behind in the store.
"""

from __future__ import annotations

import os

from omegaconf import DictConfig, OmegaConf

from trainer.config import validate


def train(cfg: DictConfig) -> dict:
    settings = validate(cfg)
    resolved_yaml = OmegaConf.to_yaml(settings)
    return _run(settings, resolved_yaml, run_dir=_run_dir(), overrides=_overrides())


def _run_dir() -> str:
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        return HydraConfig.get().runtime.output_dir
    return os.path.abspath(os.getcwd())


def _overrides() -> list[str]:
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def _reset_global_state() -> None:
    # Hydra's basic launcher runs every multirun job in this one process: nothing from the
    # previous job (Keras graph names, an active MLflow run) may leak into the next.
    import keras
    import mlflow

    keras.backend.clear_session(free_memory=True)
    while mlflow.active_run() is not None:
        mlflow.end_run()


def _run(settings: dict, resolved_yaml: str, *, run_dir: str, overrides: list[str]) -> dict:
    import keras

    import models
    from trainer import data as data_lib
    from trainer import tracking
    from trainer.loops import fit

    _reset_global_state()
    keras.utils.set_random_seed(settings["seed"])
    model_cfg, data_cfg = settings["model"], settings["data"]

    data = data_lib.load(
        name=data_cfg["name"],
        data_dir=data_cfg["data_dir"],
        train_split=data_cfg["train_split"],
        test_split=data_cfg["test_split"],
        validation_fraction=data_cfg["validation_fraction"],
        batch_size=settings["batch_size"],
        seed=settings["seed"],
    )
    model = models.build(
        model_cfg["name"],
        model_cfg["variant"],
        input_shape=data.input_shape,
        num_classes=data.num_classes,
        **model_cfg["knobs"],
    )

    tracker = tracking.Tracker(
        uri=settings["tracking"]["uri"],
        artifact_location=settings["tracking"]["artifact_location"],
        experiment=settings["tracking"]["experiment"],
    )
    params = {k: v for k, v in settings.items() if k not in ("tracking", "paths")}
    tags = {"model": model_cfg["name"], "variant": model_cfg["variant"], "loop": settings["loop"]["name"], "dataset": data.name}
    run_id = tracker.start(params=params, tags=tags)
    try:
        tracker.log_text(resolved_yaml, "config.yaml")
        tracker.log_text("\n".join(overrides) + "\n", "overrides.txt")
        history, test_metrics = fit.run(
            model,
            data,
            epochs=settings["epochs"],
            optimizer=settings["optimizer"],
            callbacks=[tracking.EpochLogger(tracker)],
        )
        tracker.log_metrics(test_metrics, step=settings["epochs"])
        example = next(iter(data.test.unbatch().batch(4).take(1)))[0].numpy()
        tracker.log_model(model, input_example=example)
    except KeyboardInterrupt as err:
        tracker.end(tracking.KILLED, err)
        raise
    except BaseException as err:
        tracker.end(tracking.FAILED, err)
        raise
    tracker.end(tracking.FINISHED)

    final = {**{k: float(v[-1]) for k, v in history.items()}, **test_metrics}
    _report(run_id, final, run_dir, tracker)
    return final


def _report(run_id: str, metrics: dict, run_dir: str, tracker) -> None:
    shown = "  ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items()))
    print(
        f"\nrun {run_id} finished\n"
        f"  metrics: {shown}\n"
        f"  outputs: {run_dir}\n"
        f"  tracking store: {tracker.uri}\n"
        f"  review:  {tracker.ui_command()}",
        flush=True,
    )
