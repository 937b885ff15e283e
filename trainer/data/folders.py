"""An image folder's layout (one sub-folder per class), read without TensorFlow so a missing or
empty folder is reported before TensorFlow loads."""

from __future__ import annotations

import os

from trainer.errors import ConfigError

# The formats tf.io.decode_image reads; other files in a class folder (notes, .DS_Store) are skipped.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")


def is_image(filename: str) -> bool:
    return filename.lower().endswith(IMAGE_EXTENSIONS) and not filename.startswith(".")


def class_files(path) -> dict[str, list[str]]:
    """{class name: sorted image paths}, classes sorted by name, so labels never depend on
    the order the file system lists them in."""
    key = "data.path"
    if path is None or str(path).strip() == "":
        shown = "null" if path is None else path
        raise ConfigError(f"{key} must be a folder with one sub-folder of images per class. Received: {key}={shown}")
    root = os.path.abspath(os.path.expanduser(str(path)))
    if not os.path.isdir(root):
        what = "is not a folder" if os.path.exists(root) else "does not exist"
        raise ConfigError(f"{key} must be a folder with one sub-folder of images per class; {root} {what}."
                          f" Received: {key}={path}")
    classes = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    if not classes:
        loose = sum(1 for e in os.scandir(root) if e.is_file() and is_image(e.name))
        hint = f" (it holds {loose} images directly: move them into one sub-folder per class)" if loose else ""
        raise ConfigError(f"{key} must be a folder with one sub-folder of images per class; {root} has no"
                          f" sub-folders{hint}. Received: {key}={path}")
    if len(classes) < 2:
        raise ConfigError(f"{key} must hold at least 2 class sub-folders to classify; {root} has only"
                          f" '{classes[0]}'. Received: {key}={path}")
    found = {}
    for name in classes:
        folder = os.path.join(root, name)
        files = sorted(os.path.join(folder, f) for f in os.listdir(folder)
                       if is_image(f) and os.path.isfile(os.path.join(folder, f)))
        if not files:
            raise ConfigError(f"{key} class folder {folder} holds no images ({', '.join(IMAGE_EXTENSIONS)});"
                              f" add images or remove it. Received: {key}={path}")
        found[name] = files
    return found
