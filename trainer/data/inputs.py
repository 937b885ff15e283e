"""The dataset as an MLflow run input: name, source, version, split sizes and a digest, taken
from the dataset's metadata (never by reading the examples again)."""

from __future__ import annotations

import json

import numpy as np
import tensorflow_datasets as tfds
from mlflow.data.dataset import Dataset as MlflowDataset
from mlflow.data.dataset_source import DatasetSource
from mlflow.data.dataset_source_registry import register_dataset_source
from mlflow.data.schema import TensorDatasetSchema
from mlflow.entities import DatasetInput, InputTag
from mlflow.types.schema import Schema, TensorSpec
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

CONTEXT = "training"


class TFDSSource(DatasetSource):
    """A TFDS dataset by name and version in a data dir; `load()` reads it back with tfds.load."""

    def __init__(self, name: str, version: str, data_dir: str):
        self.name, self.version, self.data_dir = name, version, data_dir

    @staticmethod
    def _get_source_type() -> str:
        return "tfds"

    def load(self):
        return tfds.load(self.name, data_dir=self.data_dir)

    @staticmethod
    def _can_resolve(raw_source) -> bool:
        return False  # only ever created explicitly, never guessed from a string

    @classmethod
    def _resolve(cls, raw_source):
        raise NotImplementedError("TFDSSource is created from a name, version and data dir")

    def to_dict(self) -> dict:
        return {"name": self.name, "version": self.version, "data_dir": self.data_dir}

    @classmethod
    def from_dict(cls, source_dict: dict) -> "TFDSSource":
        return cls(**source_dict)


class ImageFolderSource(DatasetSource):
    """A folder of images, one sub-folder per class."""

    def __init__(self, path: str):
        self.path = path

    @staticmethod
    def _get_source_type() -> str:
        return "image_folder"

    def load(self) -> str:
        return self.path

    @staticmethod
    def _can_resolve(raw_source) -> bool:
        return False

    @classmethod
    def _resolve(cls, raw_source):
        raise NotImplementedError("ImageFolderSource is created from a path")

    def to_dict(self) -> dict:
        return {"path": self.path}

    @classmethod
    def from_dict(cls, source_dict: dict) -> "ImageFolderSource":
        return cls(**source_dict)


register_dataset_source(TFDSSource)
register_dataset_source(ImageFolderSource)


class SplitDataset(MlflowDataset):
    """Metadata-only: what was trained on, never the examples themselves."""

    def __init__(self, *, source: DatasetSource, name: str, digest: str, profile: dict, schema):
        self._profile, self._schema = profile, schema
        super().__init__(source=source, name=name, digest=digest)

    def _compute_digest(self) -> str:
        return self._digest  # always given: computed from the prepared files' metadata

    @property
    def profile(self) -> dict:
        return self._profile

    @property
    def schema(self):
        return self._schema

    def to_dict(self) -> dict:
        return {**super().to_dict(), "profile": json.dumps(self._profile), "schema": json.dumps(self._schema.to_dict())}


def describe(data) -> SplitDataset:
    """The MLflow dataset entity for a `trainer.data.Dataset`."""
    if data.source == "tfds":
        source = TFDSSource(data.name, data.version, data.data_dir)
    else:
        source = ImageFolderSource(data.data_dir)
    profile = {
        "num_examples": sum(data.split_sizes.values()),
        "split_sizes": data.split_sizes,
        "splits": data.split_specs,
        "num_classes": data.num_classes,
        "class_names": data.class_names,
        "input_shape": list(data.input_shape),
        "version": data.version,
    }
    schema = TensorDatasetSchema(
        features=Schema([TensorSpec(np.dtype(np.uint8), (-1, *data.input_shape), "image")]),
        targets=Schema([TensorSpec(np.dtype(np.int64), (-1,), "label")]),
    )
    name = f"{data.name}:{data.version}" if data.version else data.name
    return SplitDataset(source=source, name=name, digest=data.digest, profile=profile, schema=schema)


def run_tags(data) -> dict:
    """Searchable run tags: which examples (digest) and what the class indices mean."""
    return {"dataset.digest": data.digest, "dataset.class_names": json.dumps([str(n) for n in data.class_names])}


def log_input(tracker, data) -> None:
    """Record `data` as the run's training input (nothing when tracking is off)."""
    if not tracker.enabled:
        return
    from trainer.tracking.store import with_lock_retries

    entity = describe(data)._to_mlflow_entity()
    tags = [InputTag(key=MLFLOW_DATASET_CONTEXT, value=CONTEXT)]
    inputs = [DatasetInput(dataset=entity, tags=tags)]
    try:
        with_lock_retries(tracker.client.log_inputs, tracker.run_id, datasets=inputs)
    except Exception as err:
        # MLflow gets-or-creates the dataset row per experiment; two sweep jobs logging the same
        # dataset at once can both miss it and both insert, and the second insert fails. By then
        # the row exists, so logging again links this run to it.
        if "UNIQUE constraint failed" not in str(err):
            raise
        with_lock_retries(tracker.client.log_inputs, tracker.run_id, datasets=inputs)
