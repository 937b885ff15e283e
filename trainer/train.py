"""`train(cfg) -> metrics`: the lifecycle of one run, top to bottom in `train`. Bad input is refused
before TensorFlow loads and before any MLflow run exists; once the run exists, it ends with a status."""

from __future__ import annotations

import contextlib
import gc
import os
import sys
from dataclasses import dataclass

from omegaconf import DictConfig, OmegaConf

from trainer.run import console, resume
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
        with _kept_for_good():  # MLflow's modules and its cached store
            prepare_store(settings["tracking"]["uri"])
    job = _hydra_job()

    # ==========================================================================================
    # 2. Plan the resume. Resuming (trainer/run/resume.py) takes five steps, in this order:
    #      (1) plan, here, before Keras loads: hold this command's resume folder, read which MLflow
    #          run it continues (a bad record, or the same command running elsewhere, fails here);
    #      (2) record_run, right after the MLflow run exists: from then on a kill resumes that run;
    #      (3) restore, once the model and optimizer are built: the snapshot into them, and the
    #          metrics the killed attempt logged that the store may not have received;
    #      (4) finish, once the run has ended FINISHED: nothing is left to resume;
    #      (5) release, on leaving the `with` however the run ended: the lock, and an empty folder.
    with resume.plan(settings, lock=True) as planned:
        # The TensorFlow boundary: everything below imports TensorFlow, Keras or MLflow.
        with console.tensorflow_start_up_quiet(), _kept_for_good():
            from models import net
            from trainer.tracking import artifacts, best_model, export, provenance, tracker as tracking
            from trainer.run import distribute, runtime, signals
            from trainer import loops
            from trainer.loops import callbacks as callbacks_lib
            from trainer.loops import compile as compile_
            from trainer import data as data_lib
            from trainer.use import export as exporting
            from trainer.sweeps import pruning

            runtime.probe_devices()

        _reset_global_state()

        # ======================================================================================
        # 3. Build: the strategy first (a multi-worker strategy sets up its collectives before any
        #    other TensorFlow op), seeds, the data, then model and optimizer inside the strategy's
        #    scope, so their variables are mirrored over its replicas.
        strategy = distribute.build(settings["strategy"], batch_size=settings["batch_size"], loop=settings["loop"])
        chief = distribute.is_chief(strategy)  # only the chief tracks the run and writes the resume folder
        runtime.configure(seed=settings["seed"], deterministic=settings["deterministic"], precision=settings["precision"])
        model_cfg, loop_cfg = settings["model"], settings["loop"]
        data = data_lib.load(**settings["data"], batch_size=settings["batch_size"], seed=settings["seed"])
        runtime.reseed(settings["seed"])
        with strategy.scope():
            model = net.build(model_cfg["name"], model_cfg["variant"], input_shape=data.input_shape,
                              num_classes=data.num_classes, **model_cfg["knobs"])
            optimizer = compile_.build_optimizer(settings["optimizer"], settings["schedule"], epochs=settings["epochs"],
                                                 steps_per_epoch=max(1, int(data.train.cardinality())),
                                                 precision=settings["precision"])

        # ======================================================================================
        # 4. Start tracking: open the MLflow run, named by what it trains (or reopen the one being
        #    resumed, name and all), record what it trains while its machine is sampled until it ends,
        #    and restore the resume snapshot into the model and optimizer.
        tracker = tracking.create(settings["tracking"]) if chief else tracking.NoTracker()
        tags = provenance.run_tags(model=model_cfg["name"], variant=model_cfg["variant"], loop=loop_cfg["name"],
                                   dataset=data.name)
        tags.update(data_lib.run_tags(data))
        tags.update(provenance.sweep_tags(job.num, job.overrides))
        run_name = provenance.run_name(model=model_cfg["name"], dataset=data.name, loop=loop_cfg["name"],
                                       overrides=job.overrides, job_num=job.num)
        loggers = [tracking.EpochLogger(tracker, examples_per_epoch=next(iter(data.split_sizes.values()), None))]
        if settings["tracking"]["log_every_n_steps"]:
            loggers.append(tracking.StepLogger(tracker, settings["tracking"]["log_every_n_steps"]))
        with signals.signals_raise():
            with _ends_run(tracker, job.run_dir):
                run_id = tracker.start(params={k: v for k, v in settings.items() if k not in ("tracking", "paths", "sweep")},
                                       tags=tags, run_name=run_name, resume_run_id=planned.run_id)
                planned.record_run(run_id, chief=chief)
                data_lib.log_input(tracker, data)
                tracker.log_text(OmegaConf.to_yaml(settings), "config.yaml")
                tracker.log_text("\n".join(job.overrides) + "\n", "overrides.txt")
                tracker.log_text(export.summary_text(model), "model_summary.txt")
                snapshot_callback, epochs_done = planned.restore(model, optimizer, strategy, tracker, chief=chief)

                # ==============================================================================
                # 5. Run the loop: `fit` or the GradientTape loop, with the same callbacks, from
                #    the epoch the snapshot had reached (and, for a trial of a sweep that prunes,
                #    until the epoch its trial is pruned at).
                reporter = pruning.job_reporter(settings["sweep"]["metric"], settings["epochs"]) if chief else None
                history, test_metrics = loops.get(loop_cfg["name"]).run(
                    model, data, epochs=settings["epochs"], optimizer=optimizer, strategy=strategy,
                    loss=compile_.build_loss(settings["label_smoothing"]),
                    callbacks=callbacks_lib.build(settings["callbacks"], settings["schedule"], run_dir=job.run_dir,
                                                  loggers=loggers, snapshot_callback=snapshot_callback,
                                                  report=reporter),
                    steps_per_execution=loop_cfg["steps_per_execution"],
                    jit_compile=compile_.resolve_jit_compile(loop_cfg["jit_compile"],
                                                             distributed=not distribute.is_default(strategy)),
                    verbose=callbacks_lib.verbosity(settings["callbacks"]["progress"]),
                    initial_epoch=epochs_done,
                )

                # ==============================================================================
                # 6. Evaluate and log: test metrics, curves and confusion matrix, the model (and
                #    its registration and exports when asked), the run folder.
                tracker.log_metrics(test_metrics, step=settings["epochs"])
                artifacts.log_evaluation(tracker, model, data, history)
                example = next(iter(data.test.unbatch().batch(4).take(1)))[0].numpy()
                model_uri = tracker.log_model(model, input_example=example)
                if settings["callbacks"]["checkpoint"]["enabled"]:  # its best epoch: the LoggedModel "best"
                    best_model.log_best(tracker, job.run_dir, example)
                if settings["tracking"]["register_as"]:
                    version = tracker.register_model(settings["tracking"]["register_as"], model_uri)
                    tracker.set_tags({"registered_model": f"{settings['tracking']['register_as']} v{version}"})
                if settings["export"]["formats"] and chief:  # a failed check fails the run
                    exporting.export_trained(model, data, settings["export"]["formats"], job.run_dir, tracker)
                artifacts.log_run_folder(tracker, job.run_dir)

            # ==================================================================================
            # 7. End with a status: the run is FINISHED (`_ends_run`), so nothing is left to
            #    resume; the next identical command starts a new run.
            planned.finish(chief=chief)
    # A run resumed after its last epoch trains none now: its last epoch's values come from the snapshot.
    final = {**({k: float(v[-1]) for k, v in history.items() if v} or planned.epoch_logs), **test_metrics}
    _report(tracker, final, job.run_dir, chief=chief)
    return final


def _hydra_job() -> _Job:
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return _Job(os.path.abspath(os.getcwd()), [], None)
    hydra = HydraConfig.get()
    return _Job(hydra.runtime.output_dir, list(hydra.overrides.task), hydra.job.get("num"))


@contextlib.contextmanager
def _kept_for_good():
    """Around the first imports of a process, whose objects live until it exits: the garbage
    collector pauses while they are made and then never walks them again (`gc.freeze`). Otherwise
    every full collection, the ones importing TensorFlow and MLflow set off and `clear_session`'s,
    and the last one at interpreter exit, walks all of TensorFlow's, Keras's and MLflow's objects
    again. Once TensorFlow is loaded (the next job of a sweep, a test session), nothing is frozen:
    what a previous job left must stay collectable."""
    if "tensorflow" in sys.modules or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()


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
        f"  review:  {tracker.review()}",
        flush=True,
    )
