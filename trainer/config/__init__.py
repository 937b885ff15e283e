"""Config validation before TensorFlow: checks, choices, training settings, metric names."""
