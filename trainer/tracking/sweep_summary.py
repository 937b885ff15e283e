"""A sweep's summary, printed and on its parent run: the best value of `sweep.metric` at the last
epoch and at its best epoch (read from each run's metric history), the best overrides, how many
jobs finished, failed and were pruned, the configurations ranked by their mean over seeds when the
sweep varies `seed`, the jobs table (`jobs.csv`, and `jobs.json` as an MLflow table), and for an
Optuna study its plots. Every write goes through the sweep's masking client (trainer/tracking/sweep.py).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import statistics
import tempfile
import warnings

log = logging.getLogger(__name__)

TRIAL_STATE_TAG = "sweep.trial_state"  # an Optuna trial's runs: COMPLETE, PRUNED or FAILED, as its study recorded the trial
CONFIG_TAG = "sweep.config"       # what a job varies besides `seed` (trainer/tracking/provenance.py)
JOBS_TABLE = "jobs.json"
CONFIGS_TABLE = "configurations.json"
PLOTS_DIR = "study_plots"


def state(job: dict) -> str:
    """FINISHED, PRUNED (a finished run of a pruned trial), or the run's own status (FAILED, KILLED, ...)."""
    if job["status"] == "FINISHED" and job.get("tags", {}).get(TRIAL_STATE_TAG) == "PRUNED":
        return "PRUNED"
    return job["status"]


def _finite(value) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def summarize(jobs: list[dict], metric: str, direction: str, histories: dict[str, list[tuple[int, float]]]) -> dict:
    """The summary of the jobs (dicts with job, name, status, run_id, metrics, tags); `histories` is
    each finished run's (step, value) history of `metric`, its step being the epoch (from 0)."""
    better = max if direction == "maximize" else min
    for job in jobs:
        job["state"] = state(job)
        job["last"] = _finite(job["metrics"].get(metric)) if job["state"] == "FINISHED" else None
        points = [(step, v) for step, v in histories.get(job["run_id"], []) if math.isfinite(v)]
        best_point = better(points, key=lambda p: (p[1], -p[0] if direction == "maximize" else p[0])) if points else None
        job["best"], job["best_epoch"] = (best_point[1], best_point[0]) if best_point and job["state"] == "FINISHED" else (None, None)
    finished = [j for j in jobs if j["last"] is not None]
    at_best_epoch = [j for j in jobs if j["best"] is not None]
    counts = {s: sum(j["state"] == s for j in jobs) for s in ("FINISHED", "PRUNED")}
    counts["FAILED"] = len(jobs) - counts["FINISHED"] - counts["PRUNED"]
    summary = {
        "jobs": jobs, "counts": counts, "metric": metric, "direction": direction,
        "best": better(finished, key=lambda j: j["last"]) if finished else None,
        "best_epoch_job": better(at_best_epoch, key=lambda j: j["best"]) if at_best_epoch else None,
        "configurations": configurations(jobs, direction),
    }
    summary["text"] = _text(summary)
    return summary


def configurations(jobs: list[dict], direction: str) -> list[dict]:
    """When the sweep varies `seed`: each configuration's mean, standard deviation (over its seeds,
    n-1 in the denominator; 0 for a single run) and count of finished runs, best mean first."""
    groups: dict[str, list[dict]] = {}
    for job in jobs:
        name = job.get("tags", {}).get(CONFIG_TAG)
        if name is not None:
            groups.setdefault(name, []).append(job)
    found = []
    for name, members in groups.items():
        values = [j["last"] for j in members if j["last"] is not None]
        found.append({"configuration": name, "runs": len(members), "finished": len(values),
                      "mean": statistics.fmean(values) if values else None,
                      "std": statistics.stdev(values) if len(values) > 1 else (0.0 if values else None)})
    sign = -1 if direction == "maximize" else 1
    return sorted(found, key=lambda c: (c["mean"] is None, sign * (c["mean"] or 0.0), c["configuration"]))


def _text(summary: dict) -> str:
    metric, direction, counts = summary["metric"], summary["direction"], summary["counts"]
    lines = [f"\nsweep: {len(summary['jobs'])} jobs, {counts['FINISHED']} finished, {counts['FAILED']} failed,"
             f" {counts['PRUNED']} pruned"]
    best, at_epoch = summary["best"], summary["best_epoch_job"]
    if best is not None:
        lines.append(f"  best {metric}={best['last']:.4f} ({direction}) at the last epoch: {best['name']}  run {best['run_id']}")
    if at_epoch is not None:
        lines.append(f"  best {metric}={at_epoch['best']:.4f} at its best epoch, epoch {at_epoch['best_epoch']}:"
                     f" {at_epoch['name']}  run {at_epoch['run_id']}")
    if summary["configurations"]:
        lines.append(f"  by configuration, {metric} at the last epoch: mean ± standard deviation over seeds (runs finished)")
        for rank, c in enumerate(summary["configurations"], 1):
            value = "-" if c["mean"] is None else f"{c['mean']:.4f} ± {c['std']:.4f}"
            lines.append(f"  {rank:>3}. {value:<17} ({c['finished']} of {c['runs']})  {c['configuration']}")
    for row in rows(summary):
        lines.append(f"  #{row['job']:<3} {row['status']:<9} {metric}={row[metric] or '-':<10}"
                     f" best={row['best_' + metric] or '-'}@{row['best_epoch'] if row['best_epoch'] != '' else '-'}"
                     f"  {row['overrides']}")
    return "\n".join(lines)


def rows(summary: dict) -> list[dict]:
    """The jobs table: one row per job."""
    metric = summary["metric"]

    def number(v):
        return "" if v is None else f"{v:.6g}"

    return [{"job": j["job"], "overrides": j["name"], "status": j["state"], metric: number(j["last"]),
             f"best_{metric}": number(j["best"]), "best_epoch": "" if j["best_epoch"] is None else j["best_epoch"],
             "run_id": j["run_id"]} for j in summary["jobs"]]


def _csv(table: list[dict], columns: list[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(table)
    return buffer.getvalue()


def _markdown(table: list[dict], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return "\n".join(lines + ["| " + " | ".join(str(r[c]) for c in columns) + " |" for r in table]) + "\n"


def log_summary(client, run_id: str, summary: dict, sweep_dir: str) -> None:
    """Write the summary on the parent run: metrics and tags, `sweep_summary.md`, `jobs.csv`, the
    MLflow tables `jobs.json` (and `configurations.json`), and the Optuna sweeper's results file."""
    from mlflow.entities import Metric, RunTag

    metric, counts = summary["metric"], summary["counts"]
    table = rows(summary)
    columns = list(table[0]) if table else ["job", "overrides", "status", metric, f"best_{metric}", "best_epoch", "run_id"]
    tags = [RunTag("sweep.jobs", str(len(table))), RunTag("sweep.failed_jobs", str(counts["FAILED"])),
            RunTag("sweep.pruned_jobs", str(counts["PRUNED"]))]
    metrics = [Metric("sweep_jobs", len(table), 0, 0), Metric("sweep_failed_jobs", counts["FAILED"], 0, 0),
               Metric("sweep_finished_jobs", counts["FINISHED"], 0, 0), Metric("sweep_pruned_jobs", counts["PRUNED"], 0, 0)]
    header = ["# Sweep summary\n", f"jobs: {len(table)}, finished: {counts['FINISHED']}, failed: {counts['FAILED']},"
              f" pruned: {counts['PRUNED']}\n"]
    best, at_epoch = summary["best"], summary["best_epoch_job"]
    if best is not None:
        header += [f"best {metric} at the last epoch: {best['last']:.6g} (run {best['run_id']})\n",
                   f"best overrides: {best['name']}\n"]
        tags += [RunTag("best_overrides", best["name"]), RunTag("best_run_id", best["run_id"])]
        metrics.append(Metric(f"best_{metric}", best["last"], 0, 0))
    if at_epoch is not None:
        header.append(f"best {metric} at its best epoch: {at_epoch['best']:.6g} at epoch {at_epoch['best_epoch']}"
                      f" ({at_epoch['name']}, run {at_epoch['run_id']})\n")
        tags += [RunTag("best_epoch_overrides", at_epoch["name"]), RunTag("best_epoch_run_id", at_epoch["run_id"])]
        metrics += [Metric(f"best_epoch_{metric}", at_epoch["best"], 0, 0), Metric("best_epoch", at_epoch["best_epoch"], 0, 0)]
    text = "\n".join(header) + "\n" + _markdown(table, columns)
    ranked = [c for c in summary["configurations"] if c["mean"] is not None]
    if ranked:
        top = ranked[0]
        tags.append(RunTag("best_configuration", top["configuration"]))
        metrics += [Metric(f"best_configuration_{metric}_mean", top["mean"], 0, 0),
                    Metric(f"best_configuration_{metric}_std", top["std"], 0, 0)]
        text += "\n## By configuration (mean over seeds)\n\n" + _markdown(
            [{**c, "mean": "" if c["mean"] is None else f"{c['mean']:.6g}", "std": "" if c["std"] is None else f"{c['std']:.6g}"}
             for c in summary["configurations"]], ["configuration", "mean", "std", "finished", "runs"])
    from trainer.tracking import store

    store.with_lock_retries(client.log_batch, run_id, metrics=metrics, tags=tags)
    client.log_text(run_id, text, "sweep_summary.md")
    client.log_text(run_id, _csv(table, columns), "jobs.csv")
    client.log_table(run_id, table, JOBS_TABLE)
    if summary["configurations"]:
        client.log_table(run_id, summary["configurations"], CONFIGS_TABLE)
    results = os.path.join(sweep_dir, "optimization_results.yaml")  # written by the Optuna sweeper
    if os.path.exists(results):
        client.log_artifact(run_id, results)


def table_json(table: list[dict]) -> str:
    """A table in the layout MLflow's `log_table` writes (pandas' orient="split"), which the UI's
    artifact view shows as a table and `MlflowClient.load_table` reads."""
    columns = list(table[0]) if table else []
    return json.dumps({"columns": columns, "data": [[r[c] for c in columns] for r in table]})


# Optuna's own matplotlib plots of the study, under PLOTS_DIR/ on the parent run, with the finished
# trials each needs to say anything: Optuna draws an empty frame with fewer, and importances
# compare trials with each other.
_PLOTS = {"optimization_history": ("plot_optimization_history", 1),
          "parallel_coordinate": ("plot_parallel_coordinate", 1),
          "param_importances": ("plot_param_importances", 2)}


def log_study_plots(client, run_id: str, study) -> list[str]:
    """Draw the study's plots and log those that could be drawn; a plot that cannot be (too few
    finished trials, or Optuna fails on it) is skipped with one log line and never fails the sweep.
    The names logged."""
    import matplotlib

    matplotlib.use("Agg")  # the sweep's main process has no display
    import matplotlib.pyplot as plt
    from optuna.trial import TrialState
    from optuna.visualization import matplotlib as optuna_plots

    completed = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    drawn = []
    with tempfile.TemporaryDirectory(prefix="trainer-study-plots-") as tmp:
        folder = os.path.join(tmp, PLOTS_DIR)
        os.makedirs(folder)
        for name, (function, needs) in _PLOTS.items():
            if completed < needs:
                log.info("study plot %s skipped: it needs %d finished trials, the study has %d", name, needs, completed)
                continue
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # Optuna's ExperimentalWarning for its matplotlib plots
                    axes = getattr(optuna_plots, function)(study)
                figure = (axes.flat[0] if hasattr(axes, "flat") else axes).get_figure()
                figure.savefig(os.path.join(folder, f"{name}.png"), dpi=100, bbox_inches="tight")
                plt.close(figure)
                drawn.append(name)
            except Exception as err:  # noqa: BLE001 (too few trials, a space Optuna cannot plot, ...)
                log.info("study plot %s skipped: %s: %s", name, type(err).__name__, " ".join(str(err).split())[:200])
            finally:
                plt.close("all")
        if drawn:
            client.log_artifact(run_id, folder)
    return drawn
