"""Training-only augmentation on whole batches with stateless random ops: every image gets its
own flip and offsets, and the same (seed, batch) always gives the same result."""

from __future__ import annotations

import tensorflow as tf


def enabled(*, flip: bool, crop: int, translate: float) -> bool:
    return bool(flip or crop or translate)


def _shift(images, dx, dy, *, interpolation: str, fill_mode: str):
    # ImageProjectiveTransformV3 maps each output pixel (x, y) to input (x - dx, y - dy): one
    # vectorized op for the whole batch, as keras.layers.RandomTranslation does it.
    batch = tf.shape(images)[0]
    ones, zeros = tf.ones([batch]), tf.zeros([batch])
    transforms = tf.stack([ones, zeros, -dx, zeros, ones, -dy, zeros, zeros], axis=1)
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=transforms, output_shape=tf.shape(images)[1:3], fill_value=0.0,
        interpolation=interpolation, fill_mode=fill_mode,
    )


def apply(images, seed, *, flip: bool, crop: int, translate: float):
    """images: float32 [batch, height, width, channels]; seed: int64 [2]."""
    flip_seed, crop_seed, translate_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
    batch, height, width = tf.shape(images)[0], tf.shape(images)[1], tf.shape(images)[2]
    if flip:
        flipped = tf.random.stateless_uniform([batch], seed=flip_seed) < 0.5
        images = tf.where(flipped[:, None, None, None], tf.reverse(images, axis=[2]), images)
    if crop:
        # Pad by `crop` pixels and crop back to size at a random place = a whole-pixel shift
        # of up to `crop` pixels with zeros coming in (the classic CIFAR augmentation).
        offsets = tf.random.stateless_uniform([2, batch], seed=crop_seed, minval=-crop, maxval=crop + 1,
                                              dtype=tf.int32)
        offsets = tf.cast(offsets, tf.float32)
        images = _shift(images, offsets[0], offsets[1], interpolation="NEAREST", fill_mode="CONSTANT")
    if translate:
        size = tf.cast(tf.stack([width, height]), tf.float32)[:, None]
        fractions = tf.random.stateless_uniform([2, batch], seed=translate_seed, minval=-translate,
                                                maxval=translate)
        offsets = fractions * size
        images = _shift(images, offsets[0], offsets[1], interpolation="BILINEAR", fill_mode="REFLECT")
    return images
