"""`predict(cfg) -> csv path`: class probabilities for image files from a trained model, as training saw
images: decoded by tf.io.decode_image to the model's channels, resized to its input shape by the
training pipeline's resize (trainer/data/resize.py) when their size differs, rescaled as the
served model rescales (x / 255)."""

from __future__ import annotations

import collections
import csv
import os
import re
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from trainer.data import resize
from trainer.errors import ConfigError
from trainer.tracking.export import INPUT_SCALE
from trainer.use import checks, cli, source

# tf.io.decode_image can give an image these channel counts (gray, RGB, RGBA).
_CHANNELS = (1, 3, 4)
# Files decoded per tf.data pass: a damaged file costs its chunk a second, file-by-file pass.
_CHUNK = 1024
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
    candidates, skipped = [], []
    for file in files:
        if checks.looks_like_image(file):
            candidates.append(file)
        else:
            skipped.append((file, _NOT_AN_IMAGE))
    pipeline, one = _pipeline(tuple(input_shape)), _one_file(tuple(input_shape))
    images, kept = [], []
    for start in range(0, len(candidates), _CHUNK):
        chunk = candidates[start:start + _CHUNK]
        try:
            images.append(np.concatenate([batch.numpy() for batch in pipeline(chunk)]))
            kept += chunk
            continue
        except tf.errors.OpError:
            pass  # a damaged file in this chunk: decode its files one by one to name it
        for file in chunk:
            try:
                images.append(one(file).numpy()[None])
                kept.append(file)
            except tf.errors.OpError as err:
                skipped.append((file, _why(err)))
    empty = np.zeros((0, *input_shape), np.uint8)
    order = {file: i for i, file in enumerate(files)}
    return Decoded(np.concatenate(images) if images else empty, kept, sorted(skipped, key=lambda s: order[s[0]]))


def _decode(file, input_shape: tuple):
    pixels = tf.io.decode_image(tf.io.read_file(file), channels=input_shape[2], expand_animations=False)
    # As training: resized only when the size differs (trainer/data/resize.py `to_shape`).
    same = tf.reduce_all(tf.equal(tf.shape(pixels)[:2], input_shape[:2]))
    pixels = tf.cond(same, lambda: pixels, lambda: resize.image(pixels, input_shape))
    return tf.ensure_shape(pixels, input_shape)


def _pipeline(input_shape: tuple):
    """Files decoded in parallel by tf.data, in order; any file that fails ends the pass."""
    def decode(file):
        return _decode(file, input_shape)

    def decoded(files: list[str]):
        return (tf.data.Dataset.from_tensor_slices(files)
                .map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).batch(_CHUNK).prefetch(1))

    return decoded


def _one_file(input_shape: tuple):
    """One file, eagerly: a file that does not decode raises for itself alone."""
    return lambda file: _decode(tf.constant(file), input_shape)


def _why(err: tf.errors.OpError) -> str:
    text = " ".join((err.message or type(err).__name__).split())
    if "Unknown image file format" in text:
        return _NOT_AN_IMAGE
    text = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", text.split(" [Op:")[0])
    return f"could not be decoded ({text})"


def probabilities(model, images: np.ndarray, batch_size: int) -> np.ndarray:
    """The model's output for uint8 images, batch by batch, rescaled on the way in as served models do.

    One compiled forward pass per batch: uint8 batches go in (a quarter of float32's bytes) and
    the rescale runs in the same graph as the model.
    """
    @tf.function(reduce_retracing=True)
    def forward(x):
        return model(tf.cast(x, tf.float32) * INPUT_SCALE, training=False)

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
