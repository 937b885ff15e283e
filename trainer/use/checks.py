"""The checks of `trainer.predict` and `trainer.evaluate` before their jobs run: every value, then
the model in the store (MLflow, never TensorFlow), so bad input is one line before anything heavy."""

from __future__ import annotations

import glob
import os

from omegaconf import DictConfig, ListConfig, OmegaConf

from trainer.config import checks
from trainer.data import settings as data_settings
from trainer.errors import ConfigError
from trainer.use import reference

_GLOB = frozenset("*?[")
# The signatures tf.io.decode_image tells formats by (PNG, JPEG, GIF, BMP, WebP, JPEG XL): a file
# with none is not an image, said without asking TensorFlow (which logs a warning per such file).
_SIGNATURES = (b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"BM", b"RIFF", b"\xff\x0a", b"\x00\x00\x00\x0cJXL ")


def predict(cfg: DictConfig) -> None:
    _required(cfg, "run", "source")
    ref = reference.parse(cfg.run)
    files = image_files(cfg.source)
    if not any(map(looks_like_image, files)):
        raise checks.fail("source", f"an image or images (PNG, JPEG, GIF, BMP or WebP); none of its {len(files)} file(s)"
                          f" is one (first: {files[0]})", cfg.source)
    checks.int_at_least("top_k", cfg.top_k, 1)
    checks.int_at_least("batch_size", cfg.batch_size, 1)
    class_names(cfg.class_names)
    if cfg.output is not None:
        output_file(cfg.output)
    _locate(ref, cfg)


def evaluate(cfg: DictConfig) -> None:
    _required(cfg, "run")
    ref = reference.parse(cfg.run)
    checks.int_at_least("batch_size", cfg.batch_size, 1)
    checks.int_at_least("seed", cfg.seed, 0)
    class_names(cfg.class_names)
    data_settings.check(cfg.data)
    checks.boolean("tracking.enabled", cfg.tracking.enabled)
    _locate(ref, cfg)


def _required(cfg: DictConfig, *keys: str) -> None:
    for key in keys:
        if OmegaConf.is_missing(cfg, key):
            raise ConfigError(f"{key} must be given: {key}=<...> (see --help). Received: {key}=???")


def _locate(ref, cfg: DictConfig) -> None:
    # MLflow, not TensorFlow: an unknown run, a run without a model or a missing store is one line.
    from trainer.use import source

    source.locate(ref, None if ref.file else cfg.tracking.uri)


def class_names(value) -> list[str] | None:
    if value is None:
        return None
    names = list(value) if isinstance(value, (ListConfig, list, tuple)) else None
    if not names or not all(isinstance(n, (str, int)) and str(n).strip() for n in names):
        raise checks.fail("class_names", "null or a list of names in class order ([cat, dog])", value)
    if len(set(map(str, names))) != len(names):
        raise checks.fail("class_names", "a list of distinct names", value)
    return [str(n) for n in names]


def image_files(source) -> list[str]:
    """The files `source` names, sorted: one file, a folder's files (not its sub-folders'), or a glob
    (`**` reaches into sub-folders). Whether each is an image is found when it is decoded."""
    if not isinstance(source, str) or not source.strip():
        raise checks.fail("source", "an image file, a folder of images or a glob ('shots/*.png')", source)
    path = os.path.expanduser(source)
    if _GLOB & set(path):
        found = sorted(f for f in glob.glob(path, recursive=True) if os.path.isfile(f))
        if not found:
            raise checks.fail("source", "a glob that matches at least one file", source)
        return [os.path.abspath(f) for f in found]
    if os.path.isdir(path):
        try:
            names = sorted(n for n in os.listdir(path) if not n.startswith("."))
        except OSError as err:
            raise checks.fail("source", f"a folder this user can read ({err.strerror})", source) from None
        found = [os.path.abspath(os.path.join(path, n)) for n in names if os.path.isfile(os.path.join(path, n))]
        if not found:
            raise checks.fail("source", "a folder that holds image files (sub-folders are not read; use a glob"
                              " such as 'folder/**/*.png')", source)
        return found
    if os.path.isfile(path):
        return [os.path.abspath(path)]
    raise checks.fail("source", "an existing image file, folder of images, or a glob ('shots/*.png')", source)


def output_file(output) -> str:
    """`output=`: a CSV file that does not exist yet, in a folder this user can write to."""
    if not isinstance(output, str) or not output.strip():
        raise checks.fail("output", "null or the path of a CSV file to create", output)
    path = os.path.abspath(os.path.expanduser(output))
    if os.path.exists(path):
        raise checks.fail("output", "a file that does not exist yet (an existing file is never overwritten)", output)
    folder = os.path.dirname(path)
    if not os.path.isdir(folder):
        raise checks.fail("output", f"a file in an existing folder ({folder} does not exist)", output)
    problem = checks.folder_problem(folder)
    if problem:
        raise checks.fail("output", f"a file in a folder this user can write to ({problem})", output)
    return path


def looks_like_image(file: str) -> bool:
    """Whether the file starts as an image tf.io.decode_image reads does (it may still be damaged)."""
    try:
        with open(file, "rb") as f:
            head = f.read(12)
    except OSError:
        return True  # unreadable: decoding says why, for this file alone
    return head.startswith(_SIGNATURES) and (not head.startswith(b"RIFF") or head[8:12] == b"WEBP")
