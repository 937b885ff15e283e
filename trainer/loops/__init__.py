"""Training loops. Each takes a built model, the data and callbacks, and returns the history."""
