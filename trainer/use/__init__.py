"""Using a trained model: find it (a run, a models:/ URI or a .keras file), predict, evaluate."""
