"""`train(cfg) -> metrics`: the lifecycle of one run, top to bottom in `train`.

What can fail on bad input (the config, the tracking store, the resume folder) is checked before
TensorFlow loads and before any MLflow run exists, so a refused command leaves nothing behind.
From the moment the run exists it ends with a status: FINISHED, FAILED (with its traceback) or
KILLED (Ctrl-C, SIGTERM), and every metric logged before a failure is kept.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

from omegaconf import DictConfig, OmegaConf

from trainer.run import resume
from trainer.config.validate import validate
from trainer.tracking.store import prepare_store


@dataclass(frozen=True)
class _Job:
    run_dir: str          # Hydra's output folder for this run (the working folder outside Hydra)
    overrides: list[str]  # the command line's overrides, as Hydra recorded them
    num: int | None       # the job's number in a sweep


def train(cfg: DictConfig) -> dict:
    # ==========================================================================================
    # 1. Validate: the whole config, then the store it names (a server that is down or refuses
    #    the credentials, a path that is not an MLflow database), before TensorFlow loads.
    settings = validate(cfg)
    if settings["tracking"]["enabled"]:
        prepare_store(settings["tracking"]["uri"])
    job = _hydra_job()

    # ==========================================================================================
    # 2. Plan the resume: hold this command's checkpoint folder and read which MLflow run it
    #    continues. A bad record, or the same command already running, fails here, still before
    #    Keras loads.
    planned = resume.plan(settings, lock=True)
    try:
        # The TensorFlow boundary: everything below imports TensorFlow, Keras or MLflow.
        import models
        from trainer.tracking import artifacts, export, provenance, tracker as tracking
        from trainer.run import distribute, runtime, signals
        from trainer import loops
        from trainer.loops import callbacks as callbacks_lib
        from trainer.loops import compile as compile_
        from trainer import data as data_lib

        _reset_global_state()

        # ======================================================================================
        # 3. Build: the strategy first (a multi-worker strategy sets up its collectives before any
        #    other TensorFlow op), seeds, the data, then model and optimizer inside the strategy's
        #    scope, so their variables are mirrored over its replicas.
        strategy = distribute.build(settings["strategy"], batch_size=settings["batch_size"], loop=settings["loop"])
        chief = distribute.is_chief(strategy)  # in a cluster, only the chief records and checkpoints
        runtime.configure(seed=settings["seed"], deterministic=settings["deterministic"], precision=settings["precision"])
        model_cfg, loop_cfg = settings["model"], settings["loop"]
        if model_cfg["module"]:
            models.import_model_module(model_cfg["module"])  # a model of the user's own: runs its @register
        data = data_lib.load(**settings["data"], batch_size=settings["batch_size"], seed=settings["seed"])
        runtime.reseed(settings["seed"])
        with strategy.scope():
            model = models.build(model_cfg["name"], model_cfg["variant"], input_shape=data.input_shape,
                                 num_classes=data.num_classes, **model_cfg["knobs"])
            optimizer = compile_.build_optimizer(settings["optimizer"], settings["schedule"], epochs=settings["epochs"],
                                                 steps_per_epoch=max(1, int(data.train.cardinality())),
                                                 precision=settings["precision"])

        # ======================================================================================
        # 4. Start tracking: open the MLflow run (or reopen the one being resumed), record what
        #    it trains, and restore the resume checkpoint into the model and optimizer.
        tracker = tracking.create(settings["tracking"]) if chief else tracking.NoTracker()
        tags = provenance.run_tags(model=model_cfg["name"], variant=model_cfg["variant"], loop=loop_cfg["name"],
                                   dataset=data.name)
        tags.update(data_lib.run_tags(data))
        tags.update(provenance.sweep_tags(job.num))
        loggers = [tracking.EpochLogger(tracker, examples_per_epoch=next(iter(data.split_sizes.values()), None))]
        if settings["tracking"]["log_every_n_steps"]:
            loggers.append(tracking.StepLogger(tracker, settings["tracking"]["log_every_n_steps"]))
        with signals.signals_raise():
            with _ends_run(tracker, job.run_dir):
                run_id = tracker.start(params={k: v for k, v in settings.items() if k not in ("tracking", "paths", "sweep")},
                                       tags=tags, run_name=provenance.child_run_name(job.overrides, job.num),
                                       resume_run_id=planned.run_id)
                if planned.enabled and chief:
                    planned.record_run(run_id)
                data_lib.log_input(tracker, data)
                tracker.log_text(OmegaConf.to_yaml(settings), "config.yaml")
                tracker.log_text("\n".join(job.overrides) + "\n", "overrides.txt")
                tracker.log_text(export.summary_text(model), "model_summary.txt")
                saver, epochs_done = _restore(planned, model, optimizer, strategy, tracker, chief=chief)

                # ==============================================================================
                # 5. Run the loop: `fit` or the GradientTape loop, with the same callbacks, from
                #    the epoch the checkpoint had reached.
                history, test_metrics = loops.get(loop_cfg["name"]).run(
                    model, data, epochs=settings["epochs"], optimizer=optimizer, strategy=strategy,
                    callbacks=callbacks_lib.build(settings["callbacks"], settings["schedule"], run_dir=job.run_dir,
                                                  loggers=loggers, snapshot_callback=saver),
                    steps_per_execution=loop_cfg["steps_per_execution"],
                    jit_compile=compile_.resolve_jit_compile(loop_cfg["jit_compile"],
                                                             distributed=not distribute.is_default(strategy)),
                    verbose=callbacks_lib.verbosity(settings["callbacks"]["progress"]),
                    initial_epoch=epochs_done,
                )

                # ==============================================================================
                # 6. Evaluate and log: test metrics, curves and confusion matrix, the model (and
                #    its registration when asked), the run folder.
                tracker.log_metrics(test_metrics, step=settings["epochs"])
                artifacts.log_evaluation(tracker, model, data, history)
                example = next(iter(data.test.unbatch().batch(4).take(1)))[0].numpy()
                model_uri = tracker.log_model(model, input_example=example)
                if settings["tracking"]["register_as"]:
                    version = tracker.register_model(settings["tracking"]["register_as"], model_uri)
                    tracker.set_tags({"registered_model": f"{settings['tracking']['register_as']} v{version}"})
                artifacts.log_run_folder(tracker, job.run_dir)

            # ==================================================================================
            # 7. End with a status: the run is FINISHED (`_ends_run`), so nothing is left to
            #    resume; the next identical command starts a new run.
            if planned.enabled and chief:
                planned.finish()
    finally:
        planned.release()
    final = {**{k: float(v[-1]) for k, v in history.items()}, **test_metrics}
    _report(tracker, final, job.run_dir, chief=chief)
    return final


def _hydra_job() -> _Job:
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return _Job(os.path.abspath(os.getcwd()), [], None)
    hydra = HydraConfig.get()
    return _Job(hydra.runtime.output_dir, list(hydra.overrides.task), hydra.job.get("num"))


def _reset_global_state() -> None:
    # Hydra's basic launcher runs every multirun job in this one process: nothing from the
    # previous job (Keras graph names, dtype policy, an active MLflow run) may leak into the next.
    import keras
    import mlflow

    keras.backend.clear_session(free_memory=True)
    keras.config.set_dtype_policy("float32")
    while mlflow.active_run() is not None:
        mlflow.end_run()


@contextlib.contextmanager
def _ends_run(tracker, run_dir: str):
    """The one place a run's status is decided: FINISHED when the block completes, KILLED on Ctrl-C
    or SIGTERM, FAILED (with the traceback) on any other exception, which goes on to the command
    line (trainer/errors.py says how it ends the command). A failure while the new run records
    itself (its params, the resume record on a full disk) is inside the block too."""
    from trainer.tracking import artifacts, tracker as tracking

    try:
        yield
    except BaseException as err:
        try:  # the log says what happened before the failure; the status matters more
            artifacts.log_run_folder(tracker, run_dir)
        except Exception:
            pass
        tracker.end(tracking.KILLED if isinstance(err, KeyboardInterrupt) else tracking.FAILED, err)
        raise
    tracker.end(tracking.FINISHED)


def _restore(planned, model, optimizer, strategy, tracker, *, chief: bool):
    """(the resume checkpoint callback, epochs it had completed), restored into the model and
    optimizer, or (None, 0) with resume off. A corrupt or mismatched checkpoint raises ResumeError.

    In a multi-worker cluster every worker restores the chief's checkpoint (the workers hold one
    model in lockstep), and only the chief writes it: saving needs no collective op, so the
    others need no checkpoint of their own."""
    if not planned.enabled:
        return None, 0
    from trainer.run import distribute, snapshot

    with strategy.scope():  # the optimizer's slots are created, mirrored, before they are restored
        if not optimizer.built:
            optimizer.build(model.trainable_variables)
        saver = snapshot.SnapshotCallback(planned.directory, model, optimizer, tracker.unconfirmed,
                                           every_seconds=planned.every_seconds)
        epochs_done, metrics = saver.restore()
    if not distribute.workers_agree(strategy, epochs_done):
        raise resume.ResumeError(planned.directory, ValueError(
            f"this worker found {epochs_done} completed epochs there and another worker found a different"
            " number; every worker must read the chief's checkpoint: set resume.dir to storage all of them share"))
    tracker.replay(metrics)  # what the killed attempt logged but the store may not have received
    return (saver if chief else None), epochs_done


def _report(tracker, metrics: dict, run_dir: str, *, chief: bool) -> None:
    shown = "  ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items()))
    if not chief:
        print(f"\nrun finished on this worker (worker 0 records it)\n  metrics: {shown}\n  outputs: {run_dir}", flush=True)
        return
    if not tracker.enabled:
        print(f"\nrun finished (tracking off)\n  metrics: {shown}\n  outputs: {run_dir}", flush=True)
        return
    print(
        f"\nrun {tracker.run_id} finished\n"
        f"  metrics: {shown}\n"
        f"  outputs: {run_dir}\n"
        f"  tracking store: {tracker.uri}\n"
        f"  review:  {tracker.ui_command()}",
        flush=True,
    )
