"""MLflow tracking: the tracker, store, stale runs, provenance, secrets, artifacts, plots, export, sweeps."""
