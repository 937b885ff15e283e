"""Pruning an Optuna search through the real command line, with the default launcher and with
joblib: a trial whose learning rate is too small to learn is PRUNED in its study after the epoch
its value falls below the median of the finished trials, its MLflow run FINISHED, tagged
`sweep.trial_state=PRUNED`, holding only the epochs it trained (and its test metrics and model);
the summary counts it; a rerun of the command runs no trial again. Bad pruner settings:
docs/rejected-input.md (tests/test_bad_input_table.py)."""

from __future__ import annotations

import optuna
from mlflow.tracking import MlflowClient
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from tests.conftest import tracking_uri

EPOCHS = 3
GOOD, BAD = 0.01, 0.000001  # a learning rate that learns digits in an epoch, and one that cannot


def _search(n_trials: int, *extra: str) -> list[str]:
    # A seeded grid over two learning rates and two widths: its first trial has the good rate (checked
    # below), so every later trial with the bad one falls below the median of the finished trials at
    # epoch 1, the first epoch the pruner judges (n_warmup_steps=1), and is pruned there.
    return ["-m", "hparams_search=optuna", "hydra.sweeper.sampler=grid", f"hydra.sweeper.n_trials={n_trials}",
            f"epochs={EPOCHS}", "callbacks.progress=none", f"optimizer.learning_rate={GOOD},{BAD}",
            "hydra.sweeper.params.width='choice(8,16)'", "hydra.sweeper.params.depth='choice(1)'",
            "hydra.sweeper.params.batch_size='choice(64)'", "dropout=0.0", "hydra.sweeper.study_name=pruned",
            "hydra.sweeper.pruner=median", "hydra.sweeper.pruner_args.n_startup_trials=1",
            "hydra.sweeper.pruner_args.n_warmup_steps=1", *extra]


def _check_pruned_sweep(cli, tmp_path, n_trials: int, judged_from: int, *extra: str) -> None:
    """Run the search; trials from number `judged_from` on start after a trial finished."""
    result = cli(*_search(n_trials, *extra))
    # Where `extra` names no storage, the study is in the default journal file.
    journal = next((o.partition("=")[2] for o in extra if o.startswith("hydra.sweeper.storage=")),
                   tmp_path / "outputs" / "studies" / "pruned.journal")
    assert result.returncode == 0, result.stderr[-3000:]
    study = optuna.load_study(study_name="pruned", storage=optuna.storages.JournalStorage(JournalFileBackend(str(journal))))
    trials = study.trials
    assert trials[0].params["optimizer.learning_rate"] == GOOD, "the seeded grid's order changed: pick another seed"
    bad_later = [t for t in trials[judged_from:] if t.params["optimizer.learning_rate"] == BAD]
    assert bad_later and all(t.state == TrialState.PRUNED for t in bad_later), [(t.number, t.state) for t in trials]
    pruned = [t for t in trials if t.state == TrialState.PRUNED]

    client = MlflowClient(tracking_uri(tmp_path))
    runs = client.search_runs(client.get_experiment_by_name("trainer").experiment_id)
    (parent,) = [r for r in runs if r.data.tags.get("sweep.role") == "parent"]
    children = {int(r.data.tags["sweep.job"]): r for r in runs if r is not parent}
    assert sorted(children) == [t.number for t in trials]
    for trial in trials:
        run = children[trial.number]
        epochs = [m.step for m in client.get_metric_history(run.info.run_id, "loss")]
        assert run.info.status == "FINISHED"
        assert {"test_loss", "test_accuracy"} <= set(run.data.metrics)  # evaluated and logged as any finished run
        if trial.state == TrialState.PRUNED:
            # Stopped after epoch 1 (the first judged), its last reported value its value in the study.
            assert run.data.tags["sweep.trial_state"] == "PRUNED"
            assert epochs == [0, 1] and sorted(trial.intermediate_values) == [0, 1]
            assert trial.user_attrs["sweep.pruned_after_epoch"] == 2
            assert trial.value == trial.intermediate_values[1] == run.data.metrics["val_accuracy"]
        else:
            assert trial.state == TrialState.COMPLETE and run.data.tags["sweep.trial_state"] == "COMPLETE"
            assert epochs == list(range(EPOCHS))
    assert trials[0].value > 0.5  # the good rate learned, so the pruned ones were judged against a real median
    assert f"sweep: {n_trials} jobs, {n_trials - len(pruned)} finished, 0 failed, {len(pruned)} pruned" in result.stdout
    assert parent.data.metrics["sweep_pruned_jobs"] == len(pruned)
    assert all(f"trial {t.number} pruned by the median pruner after epoch 2 of {EPOCHS}" in result.stdout + result.stderr
               for t in pruned)
    # The best is a trial that ran to its last epoch.
    assert parent.data.tags["best_run_id"] in {children[t.number].info.run_id for t in trials if t.state == TrialState.COMPLETE}

    again = cli(*_search(n_trials, *extra))  # a pruned trial is done: nothing runs again
    assert again.returncode == 0 and again.stdout.startswith(f"sweep pruned is complete: {n_trials} of {n_trials} trials done")


def test_a_trial_that_cannot_learn_is_pruned_with_the_default_launcher(cli, tmp_path):
    # A storage of the user's: each trial's job resolves it from its own config.
    _check_pruned_sweep(cli, tmp_path, 3, 1, f"hydra.sweeper.storage={tmp_path / 'mine' / 'pruned.journal'}")


def test_pruning_works_in_joblib_worker_processes(cli, tmp_path):
    # Two trials at a time, each in a joblib worker: the first two run before any trial finished (the
    # pruner judges none of them), the next two against them. The default storage, which the sweeper
    # names in each trial's Hydra overrides.
    _check_pruned_sweep(cli, tmp_path, 4, 2, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "hydra.sweeper.n_jobs=2")
