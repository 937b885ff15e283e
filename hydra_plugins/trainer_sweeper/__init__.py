"""trainer's Hydra sweepers, found by Hydra's plugin discovery (the `hydra_plugins` namespace):
`hydra/sweeper=optuna` (hparams_search=optuna) and `hydra/sweeper=grid` (every `-m` grid, the
default in conf/config.yaml). Both keep their sweep across runs of the same command: see
trainer/sweeps/ and docs/sweeps.md. Hydra imports every module here when it scans for plugins, so
these stay free of Optuna, MLflow and TensorFlow."""
