"""What a run does around the loop: resume, checkpoints, signals, distribution, runtime."""
