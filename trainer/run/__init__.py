"""What a run does around the loop: resume (its folder and snapshots), signals, distribution, runtime."""
