"""`predict(cfg) -> csv path`: class probabilities for image files from a trained model, as training saw
images: decoded by tf.io.decode_image to the model's channels, resized to its input shape by the
training pipeline's resize (trainer/data/resize.py) when their size differs, rescaled as the
served model rescales (x / 255)."""

from __future__ import annotations

import collections
import csv
import os
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from trainer.data import resize
from trainer.errors import ConfigError
from trainer.tracking.export import INPUT_SCALE
from trainer.use import checks, cli, source

# tf.io.decode_image can give an image these channel counts (gray, RGB, RGBA).
_CHANNELS = (1, 3, 4)
_NOT_AN_IMAGE = "not an image (PNG, JPEG, GIF, BMP or WebP)"


def predict(cfg) -> str:
    """Find and load the model, decode the images, predict, write the CSV, print the summary."""
    files = checks.image_files(cfg.source)
    trained = source.open_trained(cfg.run, cfg.tracking.uri, class_names=checks.class_names(cfg.class_names))
    decoded = decode_files(files, trained.input_shape)  # files that are not images: named, skipped
    if not decoded.files:
        raise ConfigError(f"source must hold at least one image (PNG, JPEG, GIF, BMP or WebP); none of its {len(files)}"
                          f" file(s) is one (first: {decoded.skipped[0][0]}: {decoded.skipped[0][1]}). Received:"
                          f" source={cfg.source}")
    probs = probabilities(trained.model, decoded.images, cfg.batch_size)
    header, table = rows(decoded.files, probs, trained.class_names, cfg.top_k)
    if cfg.output is None:
        path = os.path.join(cli.run_dir(), "predictions.csv")
    else:
        path = checks.output_file(cfg.output)
    write_csv(path, header, table, exclusive=cfg.output is not None)
    print(summary(table=table, decoded=decoded, trained=trained, path=path), flush=True)
    return path



@dataclass(frozen=True)
class Decoded:
    images: np.ndarray        # uint8 (n, height, width, channels), the model's input shape
    files: list               # the file of each image
    skipped: list             # (file, why) for each file that is not an image


def decode_files(files: list[str], input_shape: tuple) -> Decoded:
    """Every file decoded and brought to `input_shape`; files that do not decode are skipped, named."""
    if input_shape[2] not in _CHANNELS:
        raise ConfigError(f"run must name a model that takes images with 1, 3 or 4 channels; it takes"
                          f" {input_shape[2]}. Received: model input shape={tuple(input_shape)}")
    decode = _decoder(tuple(input_shape))
    images, kept, skipped = [], [], []
    for file in files:
        if not checks.looks_like_image(file):
            skipped.append((file, _NOT_AN_IMAGE))
            continue
        try:
            images.append(decode(file).numpy())
            kept.append(file)
        except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError, tf.errors.UnimplementedError,
                tf.errors.PermissionDeniedError) as err:
            skipped.append((file, _why(err)))
    empty = np.zeros((0, *input_shape), np.uint8)
    return Decoded(np.stack(images) if images else empty, kept, skipped)


def _decoder(input_shape: tuple):
    # Eager, one file at a time: a file that does not decode raises here, named, without
    # stopping the others (inside a tf.data pipeline or a graph it would end the whole pass).
    def decode(file):
        pixels = tf.io.decode_image(tf.io.read_file(file), channels=input_shape[2], expand_animations=False)
        if tuple(pixels.shape) != tuple(input_shape):  # as training: resized only when the size differs
            pixels = resize.image(pixels, input_shape)
        return pixels

    return decode


def _why(err: tf.errors.OpError) -> str:
    text = " ".join((err.message or type(err).__name__).split())
    if "Unknown image file format" in text:
        return _NOT_AN_IMAGE
    return text.split(" [Op:")[0]


def probabilities(model, images: np.ndarray, batch_size: int) -> np.ndarray:
    """The model's output for uint8 images, batch by batch, rescaled on the way in as served models do.

    One compiled forward pass per batch: uint8 batches go in (a quarter of float32's bytes) and
    the rescale runs in the same graph as the model.
    """
    forward = tf.function(lambda x: model(tf.cast(x, tf.float32) * INPUT_SCALE, training=False),
                          reduce_retracing=True)
    outputs = [np.asarray(forward(images[start:start + batch_size]), dtype=np.float32)
               for start in range(0, len(images), batch_size)]
    if not outputs:
        return np.zeros((0, 0), np.float32)
    return np.concatenate(outputs)


def rows(files: list[str], probs: np.ndarray, class_names: tuple, top_k: int) -> tuple[list[str], list[list]]:
    """(CSV header, rows): file, predicted class, its probability, then the top k classes and probabilities."""
    k = min(top_k, probs.shape[1])
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    header = ["file", "class", "probability"]
    for i in range(1, k + 1):
        header += [f"top{i}_class", f"top{i}_probability"]
    table = []
    for file, p, best in zip(files, probs, order):
        row = [file, class_names[best[0]], f"{p[best[0]]:.6f}"]
        for index in best:
            row += [class_names[index], f"{p[index]:.6f}"]
        table.append(row)
    return header, table


def write_csv(path: str, header: list[str], table: list[list], *, exclusive: bool) -> None:
    """The whole file or none of it; with `exclusive`, an existing file is never replaced."""
    try:
        with open(path, "x" if exclusive else "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            writer.writerows(table)
    except FileExistsError:
        raise ConfigError("output must be a file that does not exist yet (an existing file is never overwritten)."
                          f" Received: output={path}") from None
    except BaseException:
        if os.path.exists(path):
            os.remove(path)
        raise


def summary(*, table: list[list], decoded: Decoded, trained, path: str, shown: int = 5) -> str:
    """What the command prints: how many, with what, where, skipped files, class counts, first rows."""
    located = trained.located
    what = located.model_uri + (f" (run {located.run_id})" if located.run_id else "")
    lines = [f"predicted {len(table)} image(s) with {what}", f"  predictions: {path}"]
    for file, why in decoded.skipped:
        lines.append(f"  skipped {file}: {why}")
    counts = collections.Counter(row[1] for row in table)
    top = ", ".join(f"{name}: {n}" for name, n in counts.most_common(10))
    more = f", ... ({len(counts)} classes)" if len(counts) > 10 else ""
    lines.append(f"  classes predicted: {top}{more}")
    lines.append("  first rows (file, class, probability):")
    for row in table[:shown]:
        lines.append(f"    {os.path.basename(row[0])}  {row[1]}  {row[2]}")
    return "\n".join(lines)
