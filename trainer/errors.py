"""The one exception a user is meant to read: a config error, printed as one line."""


class ConfigError(ValueError):
    """Bad user input. Its message names the key, the value received and what is allowed."""
