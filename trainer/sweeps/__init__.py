"""Hyperparameter sweeps on Optuna: the search space (space), the study that persists and resumes
(study), and the Hydra sweepers that run them (optuna_sweep, grid_sweep; registered with Hydra by
hydra_plugins/trainer_sweeper)."""
