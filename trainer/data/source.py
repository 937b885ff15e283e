"""What a dataset source hands the pipeline: unbatched uint8 examples per split and their metadata."""

from __future__ import annotations

import dataclasses

SPLITS = ("train", "validation", "test")


@dataclasses.dataclass
class Source:
    name: str
    kind: str                 # "tfds" | "image_folder"
    location: str             # the TFDS data dir it is prepared in, or the image folder
    version: str
    examples: dict            # split -> tf.data.Dataset of (uint8 image HxWxC, int64 label), unbatched
    split_specs: dict         # split -> how its examples were chosen, e.g. "train[:90%]"
    split_sizes: dict         # split -> number of examples
    input_shape: tuple
    num_classes: int
    class_names: list
    digest: str               # fingerprint of the prepared files' metadata, never of the examples
