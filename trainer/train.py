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
    if settings["tracking"]["enabled"]:
        from trainer.store import prepare_store

        prepare_store(settings["tracking"]["uri"])  # a server that is down fails here, before TF loads
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


def _job_num() -> int | None:
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get().job.get("num") if HydraConfig.initialized() else None


def _reset_global_state() -> None:
    # Hydra's basic launcher runs every multirun job in this one process: nothing from the
    # previous job (Keras graph names, dtype policy, an active MLflow run) may leak into the next.
    import keras
    import mlflow

    keras.backend.clear_session(free_memory=True)
    keras.config.set_dtype_policy("float32")
    while mlflow.active_run() is not None:
        mlflow.end_run()


def _run(settings: dict, resolved_yaml: str, *, run_dir: str, overrides: list[str]) -> dict:
    from trainer import resume

    # A bad resume record, or the same command already running, fails here, before any run is
    # touched and before Keras is imported (the reset below imports it: seconds).
    checkpoint = resume.plan(settings, lock=True)
    try:
        _reset_global_state()
        return _run_planned(settings, resolved_yaml, run_dir=run_dir, overrides=overrides, checkpoint=checkpoint)
    finally:
        checkpoint.release()


def _run_planned(settings: dict, resolved_yaml: str, *, run_dir: str, overrides: list[str], checkpoint) -> dict:
    import models
    from trainer import data as data_lib
    from trainer import compile as compile_
    from trainer import distribute, provenance, runtime, signals, tracking

    # Before any other TensorFlow op: a multi-worker strategy configures the collectives.
    strategy = distribute.build(settings["strategy"], batch_size=settings["batch_size"], loop=settings["loop"])
    runtime.configure(seed=settings["seed"], deterministic=settings["deterministic"], precision=settings["precision"])
    model_cfg, data_cfg = settings["model"], settings["data"]
    if model_cfg["module"]:
        models.import_model_module(model_cfg["module"])  # a model of the user's own: runs its @register

    data = data_lib.load(**data_cfg, batch_size=settings["batch_size"], seed=settings["seed"])
    runtime.reseed(settings["seed"])
    with strategy.scope():  # variables created here are mirrored over the strategy's replicas
        model = models.build(
            model_cfg["name"],
            model_cfg["variant"],
            input_shape=data.input_shape,
            num_classes=data.num_classes,
            **model_cfg["knobs"],
        )
        optimizer = compile_.build_optimizer(settings["optimizer"], settings["schedule"], epochs=settings["epochs"],
                                             steps_per_epoch=max(1, int(data.train.cardinality())),
                                             precision=settings["precision"])
    loop = {"strategy": strategy, "optimizer": optimizer, "checkpoint": checkpoint}

    # In a multi-worker cluster only the chief records the run; the others train silently.
    tracker = tracking.create(settings["tracking"]) if distribute.is_chief(strategy) else tracking.NoTracker()
    params = {k: v for k, v in settings.items() if k not in ("tracking", "paths", "sweep")}
    tags = provenance.run_tags(model=model_cfg["name"], variant=model_cfg["variant"], loop=settings["loop"]["name"],
                               dataset=data.name)
    tags.update(data_lib.run_tags(data))
    tags.update(provenance.sweep_tags(_job_num()))
    opening = {"params": params, "tags": tags, "run_name": provenance.child_run_name(overrides, _job_num())}
    with signals.signals_raise():
        final = _tracked(settings, resolved_yaml, overrides, run_dir, model, data, tracker, opening, **loop)
    _report(tracker.run_id, final, run_dir, tracker, chief=distribute.is_chief(strategy))
    return final


def _tracked(settings, resolved_yaml, overrides, run_dir, model, data, tracker, opening, *, strategy, optimizer,
             checkpoint) -> dict:
    """Open the run, train and record; from the moment the run exists it ends FINISHED, FAILED (with
    its traceback) or KILLED (Ctrl-C, SIGTERM), and every metric logged before a failure is kept."""
    from trainer import artifacts, export, tracking
    from trainer import callbacks as callbacks_lib
    from trainer import data as data_lib
    from trainer import compile as compile_
    from trainer import distribute, loops

    tracking_cfg = settings["tracking"]
    # split_sizes lists the train split first (data/loading.py), so this is the examples per epoch.
    train_examples = next(iter(data.split_sizes.values()), None)
    callbacks = [tracking.EpochLogger(tracker, examples_per_epoch=train_examples)]
    if tracking_cfg["log_every_n_steps"]:
        callbacks.append(tracking.StepLogger(tracker, tracking_cfg["log_every_n_steps"]))
    try:
        # Inside the try: a failure while the new run records itself (its params, the resume
        # record on a full disk) must end that run FAILED, not leave it RUNNING.
        run_id = tracker.start(**opening, resume_run_id=checkpoint.run_id)
        if checkpoint.enabled and distribute.is_chief(strategy):
            checkpoint.record_run(run_id)
        data_lib.log_input(tracker, data)
        tracker.log_text(resolved_yaml, "config.yaml")
        tracker.log_text("\n".join(overrides) + "\n", "overrides.txt")
        tracker.log_text(export.summary_text(model), "model_summary.txt")
        saver, epochs_done = _open_checkpoint(checkpoint, model, optimizer, strategy, tracker)
        loop_cfg = settings["loop"]
        history, test_metrics = loops.get(loop_cfg["name"]).run(
            model,
            data,
            epochs=settings["epochs"],
            optimizer=optimizer,
            callbacks=callbacks_lib.build(settings["callbacks"], settings["schedule"], run_dir=run_dir, loggers=callbacks),
            strategy=strategy,
            steps_per_execution=loop_cfg["steps_per_execution"],
            jit_compile=compile_.resolve_jit_compile(loop_cfg["jit_compile"], distributed=not distribute.is_default(strategy)),
            verbose=callbacks_lib.verbosity(settings["callbacks"]["progress"]),
            checkpoint=saver,
            initial_epoch=epochs_done,
        )
        tracker.log_metrics(test_metrics, step=settings["epochs"])
        artifacts.log_evaluation(tracker, model, data, history)
        example = next(iter(data.test.unbatch().batch(4).take(1)))[0].numpy()
        model_uri = tracker.log_model(model, input_example=example)
        if tracking_cfg["register_as"]:
            version = tracker.register_model(tracking_cfg["register_as"], model_uri)
            tracker.set_tags({"registered_model": f"{tracking_cfg['register_as']} v{version}"})
        artifacts.log_run_folder(tracker, run_dir)
    except KeyboardInterrupt as err:
        _end_with_folder(tracker, tracking.KILLED, err, run_dir)
        raise
    except BaseException as err:
        _end_with_folder(tracker, tracking.FAILED, err, run_dir)
        raise
    tracker.end(tracking.FINISHED)
    if checkpoint.enabled and distribute.is_chief(strategy):
        checkpoint.finish()  # finished: the next identical command starts a new run
    return {**{k: float(v[-1]) for k, v in history.items()}, **test_metrics}


def _open_checkpoint(checkpoint, model, optimizer, strategy, tracker):
    """(the resume checkpoint callback, epochs it had completed), restored into the model and
    optimizer, or (None, 0) with resume off. A corrupt or mismatched checkpoint raises ResumeError.

    In a multi-worker cluster every worker restores the chief's checkpoint (the workers hold one
    model in lockstep), and only the chief writes it: saving needs no collective op, so the
    others need no checkpoint of their own."""
    if not checkpoint.enabled:
        return None, 0
    from trainer import checkpoint as checkpoint_lib
    from trainer import distribute, resume

    with strategy.scope():  # the optimizer's slots are created, mirrored, before they are restored
        if not optimizer.built:
            optimizer.build(model.trainable_variables)
        saver = checkpoint_lib.EpochCheckpoint(checkpoint.directory, model, optimizer, tracker.unconfirmed,
                                               every_seconds=checkpoint.every_seconds)
        epochs_done, metrics = saver.restore()
    if not distribute.workers_agree(strategy, epochs_done):
        raise resume.ResumeError(checkpoint.directory, ValueError(
            f"this worker found {epochs_done} completed epochs there and another worker found a different"
            " number; every worker must read the chief's checkpoint: set resume.dir to storage all of them share"))
    tracker.replay(metrics)  # what the killed attempt logged but the store may not have received
    return (saver if distribute.is_chief(strategy) else None), epochs_done


def _end_with_folder(tracker, status: str, err: BaseException, run_dir: str) -> None:
    from trainer import artifacts

    try:  # the log says what happened before the failure; the status matters more
        artifacts.log_run_folder(tracker, run_dir)
    except Exception:
        pass
    tracker.end(status, err)


def _report(run_id: str | None, metrics: dict, run_dir: str, tracker, *, chief: bool = True) -> None:
    shown = "  ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items()))
    if not chief:
        print(f"\nrun finished on this worker (worker 0 records it)\n  metrics: {shown}\n  outputs: {run_dir}", flush=True)
        return
    if not tracker.enabled:
        print(f"\nrun finished (tracking off)\n  metrics: {shown}\n  outputs: {run_dir}", flush=True)
        return
    print(
        f"\nrun {run_id} finished\n"
        f"  metrics: {shown}\n"
        f"  outputs: {run_dir}\n"
        f"  tracking store: {tracker.uri}\n"
        f"  review:  {tracker.ui_command()}",
        flush=True,
    )
