"""trainer: config-driven training for TensorFlow and Keras 3 (Hydra configs, MLflow tracking).

Entry point: `python -m trainer`; library entry: `trainer.train.train(cfg)`.
"""
