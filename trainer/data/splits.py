"""Which examples make up train/validation/test: a dataset's own splits, or TFDS slices of its
train split (`train[:80%]`, `train[80%:90%]`, `train[90%:]`)."""

from __future__ import annotations

from trainer.errors import ConfigError

AUTO = "auto"


def _percent(value: float) -> str:
    return f"{round(value * 100, 6):g}"


def _own(key: str, requested, default_name: str, available: set) -> str | None:
    """The split to read for `key`, or None to carve it off the train split."""
    if requested is None:
        return None
    if requested == AUTO:
        # Before preparation (or under tfds.testing.mock_data) TFDS knows no split names;
        # then only an explicit split name selects one.
        return default_name if default_name in available else None
    if available and str(requested).split("[")[0] not in available:
        raise ConfigError(f"{key} must be a split of the dataset ({', '.join(sorted(available))}), {AUTO}, or"
                          f" null to carve it off the train split. Received: {key}={requested}")
    return str(requested)


def resolve(*, train_split: str, validation_split, test_split, validation_fraction: float,
            test_fraction: float, available: set) -> dict[str, str]:
    """{"train": spec, "validation": spec, "test": spec} as TFDS split strings."""
    if available and train_split.split("[")[0] not in available:
        raise ConfigError(f"data.train_split must be a split of the dataset ({', '.join(sorted(available))})."
                          f" Received: data.train_split={train_split}")
    validation = _own("data.validation_split", validation_split, "validation", available)
    test = _own("data.test_split", test_split, "test", available)
    carve_validation = validation_fraction if validation is None else 0.0
    carve_test = test_fraction if test is None else 0.0
    if not carve_validation and not carve_test:
        return {"train": train_split, "validation": validation, "test": test}
    if "[" in train_split:
        raise ConfigError("data.train_split must be a whole split name when validation or test examples are"
                          f" carved off it by fraction. Received: data.train_split={train_split}")
    if carve_validation + carve_test >= 1.0:
        raise ConfigError("data.validation_fraction + data.test_fraction must leave training examples (sum < 1)."
                          f" Received: data.validation_fraction={validation_fraction},"
                          f" data.test_fraction={test_fraction}")
    # Layout of the train split: [ train | validation | test ], cut at fixed percentages.
    train_end = 1.0 - carve_validation - carve_test
    validation_end = 1.0 - carve_test
    specs = {"train": f"{train_split}[:{_percent(train_end)}%]"}
    validation_stop = f"{_percent(validation_end)}%" if carve_test else ""
    specs["validation"] = validation or f"{train_split}[{_percent(train_end)}%:{validation_stop}]"
    specs["test"] = test or f"{train_split}[{_percent(validation_end)}%:]"
    return specs
