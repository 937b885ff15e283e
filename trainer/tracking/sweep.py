"""A multirun as one MLflow family: a parent run for the sweep, one child run per job, and the
sweep's summary (trainer/tracking/sweep_summary.py) on the parent at the end.

`MlflowSweep` is a Hydra callback (conf/hydra/default.yaml). It runs in Hydra's main process,
which never imports TensorFlow. The parent run id reaches the jobs through environment
variables, set before jobs start and again in `on_job_start`, which Hydra calls in the process
that runs the job, so joblib's worker processes get it too. Everything the sweep writes to MLflow
or prints passes through trainer.tracking.secrets first (`_MaskedClient`), as a single run's does.

A rerun of an interrupted sweep continues it in the same parent run, reopened: for an Optuna sweep
the run the study names (trainer/sweeps/study.py), for a grid the last parent run tagged with the
same `sweep.search` that did not finish and whose process is gone (trainer/sweeps/grid_sweep.py
then skips the jobs that finished).
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import json
import logging
import os
import signal
import tempfile
import traceback

from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from trainer.tracking import provenance, secrets, store, sweep_summary
from trainer.run import signals
from trainer.errors import ConfigError

log = logging.getLogger(__name__)

# Jobs of the last sweep in this process that did not finish (read by `python -m trainer` for its exit code).
failed_jobs: list[str] = []
FAILED_MARKER = "job_failed.txt"  # in a job's output folder: how it failed


def mark_failed(err: BaseException) -> None:
    """Called by the job that failed (in whatever process ran it): leave the traceback, masked, in its folder."""
    path = os.path.join(HydraConfig.get().runtime.output_dir, FAILED_MARKER)
    with open(path, "w") as f:
        f.write(secrets.redact_text("".join(traceback.format_exception(type(err), err, err.__traceback__))))


def _marked_jobs(sweep_dir: str) -> list[int]:
    found = glob.glob(os.path.join(sweep_dir, "*", FAILED_MARKER))
    return sorted(int(os.path.basename(os.path.dirname(p))) for p in found if os.path.basename(os.path.dirname(p)).isdigit())


def _job_overrides(sweep_dir: str, job: int) -> str:
    """The overrides Hydra recorded for a job, as one line (its folder's .hydra/overrides.yaml)."""
    path = os.path.join(sweep_dir, str(job), ".hydra", "overrides.yaml")
    try:
        return " ".join(secrets.redact_override(str(o)) for o in OmegaConf.load(path)) or f"job {job}"
    except Exception:  # the job died before Hydra wrote it
        return f"job {job}"


def swept_keys(config: DictConfig) -> list[str]:
    """The keys a sweep varies: comma/range overrides on the command line and the sweeper's own params."""
    parsed = OverridesParser.create().parse_overrides(list(config.hydra.overrides.task))
    keys = [o.get_key_element() for o in parsed if o.is_sweep_override()]
    params = OmegaConf.select(config, "hydra.sweeper.params") or {}
    keys += [str(k) for k in params if str(k) not in keys]
    if _repeats(config) > 1 and "seed" not in keys:  # seed replicates vary the seed (trainer/sweeps/replicates.py)
        keys.append("seed")
    return keys


def _repeats(config: DictConfig) -> int:
    """hydra.sweeper.repeats of an Optuna sweep; 0 for a sweep without trials."""
    return int(OmegaConf.select(config, "hydra.sweeper.repeats", default=1)) if sweeper_kind(config) == "optuna" else 0


def _short_target(node) -> str:
    target = str(OmegaConf.select(node, "_target_", default="") or "")
    return target.rsplit(".", 1)[-1] or "unknown"


class MlflowSweep(Callback):
    def __init__(self) -> None:
        self.parent_run_id: str | None = None
        self.sweep_id: str | None = None
        self.uri: str | None = None
        self.keys = ""
        self.repeats = 0
        self._restore_sigterm = False

    # -- main process -------------------------------------------------------------------------
    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        failed_jobs.clear()
        secrets.mask_log_records()
        if not config.tracking.enabled:
            return
        self.uri = config.tracking.uri
        try:
            store.prepare_store(self.uri)
        except ConfigError as err:  # a server that does not answer: one line, before any job starts
            from trainer.cli.command import fail

            fail(str(err))
        client = _MaskedClient(self.uri)
        # Creating the experiment here, before any job starts, means parallel jobs never race to create it.
        experiment = store.experiment_id(client, config.tracking.experiment, config.tracking.artifact_location)
        sweep_dir = str(config.hydra.sweep.dir)
        kind = sweeper_kind(config)
        study, guard = None, contextlib.nullcontext()
        if kind == "optuna":
            from trainer.sweeps import optuna_sweep
            from trainer.sweeps.study import locked

            plan, study = optuna_sweep.prepare(config)
            # Workers of one study that start at once must find or make one parent run between them.
            guard = locked(plan.storage, plan.name)
        with guard:
            resumed = None
            if study is not None:
                from trainer.sweeps.study import PARENT_ATTR

                resumed = _existing_run(client, study.user_attrs.get(PARENT_ATTR))
            elif kind == "grid":
                resumed = _interrupted_grid(client, experiment, config)
            if resumed is not None:  # the same command again, or another worker: the sweep goes on in its parent run
                self.sweep_id = resumed.data.tags.get("sweep", resumed.info.run_id)
                client.reopen(resumed.info.run_id, tags={"sweep.owner": sweep_owner()})
                self.parent_run_id = resumed.info.run_id
            else:
                self._create_parent(client, experiment, config, kind, study)
        self.keys = ",".join(swept_keys(config))
        self.repeats = _repeats(config)
        self._export()
        os.makedirs(sweep_dir, exist_ok=True)
        with open(os.path.join(sweep_dir, "mlflow_parent_run_id"), "w") as f:
            f.write(self.parent_run_id + "\n")
        # Ctrl-C or SIGTERM between or during jobs: the parent must not stay RUNNING.
        atexit.register(self._end_interrupted)
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _sigterm_to_interrupt)
            self._restore_sigterm = True
        log.info("sweep %s: MLflow parent run %s", self.sweep_id, self.parent_run_id)

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        if self.parent_run_id is None:
            failed_jobs.extend(f"#{n} (see {n}/{FAILED_MARKER})" for n in _marked_jobs(str(config.hydra.sweep.dir)))
            return
        client = _MaskedClient(self.uri)
        jobs = _children(client, self.parent_run_id)
        metric, direction = config.sweep.metric, config.sweep.direction
        # Trials other workers of the study still run: not failures, and the parent run stays
        # RUNNING for the last worker to end (this one's summary covers the trials ended so far).
        elsewhere = _running_elsewhere(config)
        if elsewhere:
            jobs = [j for j in jobs if j["status"] != "RUNNING"]
        failed_jobs.extend(f"#{j['job']} {j['name']}" for j in jobs if j["status"] != "FINISHED")
        recorded = {j["job"] for j in jobs}
        # Jobs that failed before their run was created (bad data for that job, an identical job
        # already running, say) have no child run; they still count, as rows without a run.
        sweep_dir = str(config.hydra.sweep.dir)
        unrecorded = [n for n in _marked_jobs(sweep_dir) if n not in recorded]
        failed_jobs.extend(f"#{n} (no run: see {n}/{FAILED_MARKER})" for n in unrecorded)
        jobs = sorted(jobs + [{"job": n, "name": _job_overrides(sweep_dir, n), "status": "FAILED", "run_id": "",
                               "metrics": {}} for n in unrecorded], key=lambda j: (j["job"], j["name"]))
        histories = {j["run_id"]: [(m.step, m.value) for m in client.get_metric_history(j["run_id"], metric)]
                     for j in jobs if j["status"] == "FINISHED"}
        summary = sweep_summary.summarize(jobs, metric, direction, histories)
        sweep_summary.log_summary(client, self.parent_run_id, summary, sweep_dir)
        if sweeper_kind(config) == "optuna":
            from trainer.sweeps import optuna_sweep

            sweep_summary.log_study_plots(client, self.parent_run_id, optuna_sweep.prepare(config)[1])
        status = "FINISHED" if summary["counts"]["FAILED"] < len(jobs) else "FAILED"
        if not elsewhere:
            store.with_lock_retries(client.set_terminated, self.parent_run_id, status=status)
        atexit.unregister(self._end_interrupted)
        print(secrets.redact_text(summary["text"]), flush=True)
        if elsewhere:
            print(f"  {elsewhere} trials still run in other workers of the study; the parent run"
                  f" {self.parent_run_id} ends when the last of them ends", flush=True)
        self._clear()

    def _create_parent(self, client, experiment: str, config: DictConfig, kind: str | None, study) -> None:
        """A new parent run for the sweep; an Optuna study records it for its reruns and other workers."""
        sweep_dir = str(config.hydra.sweep.dir)
        self.sweep_id = os.path.relpath(sweep_dir, os.path.join(str(config.paths.output_dir), "multiruns"))
        tags = {
            "sweep": self.sweep_id,
            "sweep.role": "parent",
            "sweep.sweeper": _short_target(config.hydra.sweeper),
            "sweep.launcher": _short_target(config.hydra.launcher),
            "sweep.overrides": " ".join(secrets.redact_override(o) for o in config.hydra.overrides.task),
            "sweep.metric": f"{config.sweep.metric} ({config.sweep.direction})",
            "sweep.owner": sweep_owner(),
            **provenance.source_tags(),
        }
        if kind == "grid":
            from trainer.sweeps.study import key

            tags["sweep.search"] = key(config, grid=True)
        if study is not None:
            tags["sweep.study"] = study.study_name
        run = store.with_lock_retries(client.create_run, experiment, tags=tags, run_name=f"sweep {self.sweep_id}")
        self.parent_run_id = run.info.run_id
        if study is not None:
            from trainer.sweeps.study import PARENT_ATTR

            study.set_user_attr(PARENT_ATTR, self.parent_run_id)

    # -- every process that runs a job ---------------------------------------------------------
    def on_job_start(self, config: DictConfig, **kwargs) -> None:
        secrets.mask_log_records()  # a joblib worker is a process of its own
        if self.parent_run_id is not None:
            self._export()

    # -----------------------------------------------------------------------------------------
    def _export(self) -> None:
        os.environ[provenance.PARENT_RUN_ENV] = self.parent_run_id
        os.environ[provenance.SWEEP_ENV] = self.sweep_id
        os.environ[provenance.SWEPT_KEYS_ENV] = self.keys
        os.environ[provenance.REPEATS_ENV] = str(self.repeats)

    def _clear(self) -> None:
        if self._restore_sigterm:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            self._restore_sigterm = False
        os.environ.pop(provenance.PARENT_RUN_ENV, None)
        os.environ.pop(provenance.SWEEP_ENV, None)
        os.environ.pop(provenance.SWEPT_KEYS_ENV, None)
        os.environ.pop(provenance.REPEATS_ENV, None)
        self.parent_run_id = None

    def _end_interrupted(self) -> None:
        if self.parent_run_id is None:
            return
        from mlflow.tracking import MlflowClient

        try:
            client = MlflowClient(self.uri)
            # A sweep that sweep.continue_on_failure=false stopped at a failing job ended FAILED, like
            # that job; one stopped by Ctrl-C or SIGTERM was KILLED, like the job it interrupted.
            statuses = {job["status"] for job in _children(client, self.parent_run_id)}
            status = "FAILED" if "FAILED" in statuses and "KILLED" not in statuses else "KILLED"
            client.set_terminated(self.parent_run_id, status=status)
        except Exception:  # the process is exiting; nothing better can be done
            pass
        self._clear()


def _running_elsewhere(config) -> int:
    """RUNNING trials of this Optuna sweep's study once this worker is done: other workers' (this
    one tells every trial it ran before the sweep ends), less those whose process is known gone
    (a rerun of the command continues them)."""
    if sweeper_kind(config) != "optuna":
        return 0
    from trainer.sweeps import optuna_sweep
    from trainer.sweeps.study import counts, interrupted

    study = optuna_sweep.prepare(config)[1]
    return counts(study)["running"] - len(interrupted(study))


def sweeper_kind(config) -> str | None:
    """"optuna" or "grid" for trainer's own sweepers (hydra_plugins/trainer_sweeper), else None."""
    target = str(OmegaConf.select(config, "hydra.sweeper._target_", default="") or "")
    if not target.startswith("hydra_plugins.trainer_sweeper."):
        return None
    return {"OptunaSweeper": "optuna", "GridSweeper": "grid"}.get(target.rsplit(".", 1)[-1])


def sweep_owner() -> str:
    from trainer.sweeps.study import owner

    return owner()


def _existing_run(client, run_id: str | None):
    if not run_id:
        return None
    try:
        return client.get_run(run_id)
    except Exception:  # recorded in another tracking store, or deleted: the sweep gets a new parent
        return None


def _interrupted_grid(client, experiment: str, config):
    """The parent run of this grid sweep's last attempt when it did not finish and its process is
    gone; None to start a new sweep (hydra.sweeper.new_study=true always does)."""
    from trainer.sweeps.study import key, owner_alive

    if OmegaConf.select(config, "hydra.sweeper.new_study", default=False):
        return None
    runs = client.search_runs([experiment], filter_string=f"tags.`sweep.search` = '{key(config, grid=True)}'",
                              order_by=["attributes.start_time DESC"], max_results=1)
    if not runs or runs[0].info.status == "FINISHED" or owner_alive(runs[0].data.tags.get("sweep.owner")):
        return None
    return runs[0]


def finished_jobs(uri: str, parent_run_id: str, metric: str) -> dict[int, float | None]:
    """{job number: its `metric`} of the sweep's children that FINISHED."""
    return {j["job"]: j["metrics"].get(metric) for j in _children(_MaskedClient(uri), parent_run_id)
            if j["status"] == "FINISHED" and j["job"] >= 0}


class _MaskedClient:
    """The MlflowClient calls the sweep makes, with every tag, run name, metric key, text and file
    masked by trainer.tracking.secrets on the way out. Only calls that carry no text of the user's pass
    through unmasked; any other call is an AttributeError rather than an unmasked write."""

    _PLAIN = frozenset({"get_experiment_by_name", "create_experiment", "get_run", "search_runs", "set_terminated",
                        "get_metric_history"})

    def __init__(self, uri: str) -> None:
        from mlflow.tracking import MlflowClient

        self._client = MlflowClient(uri)

    def __getattr__(self, name: str):
        if name not in self._PLAIN:
            raise AttributeError(f"{name}: not a call the sweep makes unmasked (see _MaskedClient)")
        return getattr(self._client, name)

    def create_run(self, experiment_id: str, *, tags: dict, run_name: str):
        return self._client.create_run(experiment_id, tags=secrets.redact_mapping(tags),
                                       run_name=secrets.redact_text(run_name))

    def log_batch(self, run_id: str, *, metrics=(), tags=()) -> None:
        from mlflow.entities import Metric, RunTag

        metrics = [Metric(secrets.redact_text(m.key), m.value, m.timestamp, m.step) for m in metrics]
        tags = [RunTag(secrets.redact_text(t.key), secrets.redact_value(t.key, t.value)) for t in tags]
        self._client.log_batch(run_id, metrics=metrics, tags=tags)

    def reopen(self, run_id: str, *, tags: dict) -> None:
        """A parent run of an interrupted sweep, RUNNING again for the rerun that continues it."""
        from mlflow.entities import RunTag

        store.with_lock_retries(self._client.update_run, run_id, status="RUNNING")
        self.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        self._client.log_text(run_id, secrets.redact_text(text), artifact_file)

    def log_artifact(self, run_id: str, path: str) -> None:
        with secrets.redacted_copy(path) as copy:
            self._client.log_artifact(run_id, copy)

    def log_table(self, run_id: str, table: list[dict], artifact_file: str) -> None:
        """`table` (rows of one set of columns) as an MLflow table: the file `MlflowClient.log_table`
        writes, and the run's tag that lists it as a table for the UI. Written here rather than by
        log_table, which appends to a file the run already has: a continued sweep's summary covers
        every job again and would list each twice."""
        from mlflow.utils.mlflow_tags import MLFLOW_LOGGED_ARTIFACTS

        with tempfile.TemporaryDirectory(prefix="trainer-table-") as tmp:
            path = os.path.join(tmp, artifact_file)
            with open(path, "w") as f:
                f.write(sweep_summary.table_json(table))
            self.log_artifact(run_id, path)
        listed = json.loads(self._client.get_run(run_id).data.tags.get(MLFLOW_LOGGED_ARTIFACTS, "[]"))
        entry = {"path": artifact_file, "type": "table"}
        if entry not in listed:
            self._client.set_tag(run_id, MLFLOW_LOGGED_ARTIFACTS, json.dumps(listed + [entry]))


def _sigterm_to_interrupt(signum, frame):
    raise signals.Terminated(f"received signal {signal.Signals(signum).name}")


TRIAL_STATE_TAG = sweep_summary.TRIAL_STATE_TAG


def tag_trial_state(uri: str, parent_run_id: str, job: int, state: str) -> None:
    """Tag the run of trial `job` with how its study recorded it (none for a trial that failed before
    its run existed), so the MLflow UI filters pruned trials: `tags.`sweep.trial_state` = 'PRUNED'`."""
    from mlflow.entities import RunTag

    client = _MaskedClient(uri)
    experiment = client.get_run(parent_run_id).info.experiment_id
    runs = client.search_runs([experiment], filter_string=f"tags.`mlflow.parentRunId` = '{parent_run_id}'"
                              f" and tags.`sweep.job` = '{job}'", order_by=["attributes.start_time DESC"], max_results=1)
    if runs:
        store.with_lock_retries(client.log_batch, runs[0].info.run_id, tags=[RunTag(TRIAL_STATE_TAG, state)])


def _children(client, parent_run_id: str) -> list[dict]:
    """The sweep's jobs, one per job number: a job run again by a resumed sweep without its own
    resume (resume.enabled=false) has a newer run, which stands for it."""
    experiment = client.get_run(parent_run_id).info.experiment_id
    runs = client.search_runs(
        [experiment], filter_string=f"tags.`mlflow.parentRunId` = '{parent_run_id}'", max_results=10000,
        order_by=["attributes.start_time ASC"],
    )
    latest = {}
    for run in runs:
        number = run.data.tags.get("sweep.job")
        latest[run.info.run_id if number is None else number] = run
    jobs = []
    for run in latest.values():
        tags = run.data.tags
        jobs.append({
            "job": int(tags.get("sweep.job", -1)),
            "name": run.info.run_name,
            "status": run.info.status,
            "run_id": run.info.run_id,
            "metrics": run.data.metrics,
            "tags": tags,
        })
    return sorted(jobs, key=lambda j: (j["job"], j["name"]))
