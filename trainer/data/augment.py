"""Training-only augmentation on whole batches with stateless random ops: every image gets its
own flip and offsets, and the same (seed, batch) always gives the same result."""

from __future__ import annotations

import tensorflow as tf


def enabled(*, flip: bool, crop: int, translate: float) -> bool:
    return bool(flip or crop or translate)


def apply(images, seed, *, flip: bool, crop: int, translate: float):
    """images: float32 [batch, height, width, channels]; seed: int64 [2].

    Flip, crop and translate are one affine map per image, so the whole batch is resampled
    once by ImageProjectiveTransformV3 (as keras.layers.RandomTranslation does), not once per
    augmentation: a separate flip (tf.reverse + tf.where) cost more than the transform itself.
    """
    flip_seed, crop_seed, translate_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
    shape = tf.shape(images)
    batch, height, width = shape[0], tf.cast(shape[1], tf.float32), tf.cast(shape[2], tf.float32)
    dx, dy = tf.zeros([batch]), tf.zeros([batch])
    if crop:
        # Pad by `crop` pixels and crop back to size at a random place = a whole-pixel shift
        # of up to `crop` pixels with zeros coming in (the classic CIFAR augmentation).
        offsets = tf.random.stateless_uniform([2, batch], seed=crop_seed, minval=-crop, maxval=crop + 1,
                                              dtype=tf.int32)
        dx, dy = dx + tf.cast(offsets[0], tf.float32), dy + tf.cast(offsets[1], tf.float32)
    if translate:
        fractions = tf.random.stateless_uniform([2, batch], seed=translate_seed, minval=-translate, maxval=translate)
        dx, dy = dx + fractions[0] * width, dy + fractions[1] * height
    # Output pixel (x, y) reads input (sx * x + ox, y - dy): shifted, x - dx; shifted then
    # mirrored, (width - 1 - x) - dx.
    mirrored = tf.random.stateless_uniform([batch], seed=flip_seed) < 0.5 if flip else tf.zeros([batch], tf.bool)
    sx = tf.where(mirrored, -1.0, 1.0)
    ox = tf.where(mirrored, width - 1.0 - dx, -dx)
    ones, zeros = tf.ones([batch]), tf.zeros([batch])
    transforms = tf.stack([sx, zeros, ox, zeros, ones, -dy, zeros, zeros], axis=1)
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=transforms, output_shape=shape[1:3], fill_value=0.0,
        # Whole-pixel moves need no interpolation; fractional shifts reflect the edge in
        # instead of bringing in black borders.
        interpolation="BILINEAR" if translate else "NEAREST",
        fill_mode="REFLECT" if translate else "CONSTANT",
    )
