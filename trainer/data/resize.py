"""Bring decoded images to the one shape the model is built for, still as uint8 (compact to cache)."""

from __future__ import annotations

import tensorflow as tf


def image(pixels, input_shape: tuple):
    height, width, _ = input_shape
    resized = tf.image.resize(pixels, (height, width), antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(resized), 0.0, 255.0), tf.uint8)


def to_shape(examples: tf.data.Dataset, input_shape: tuple, *, native: tuple) -> tf.data.Dataset:
    if tuple(native) == tuple(input_shape):
        return examples
    return examples.map(lambda x, y: (tf.ensure_shape(image(x, input_shape), input_shape), y),
                        num_parallel_calls=tf.data.AUTOTUNE)
