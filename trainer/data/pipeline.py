"""The tf.data pipeline from unbatched uint8 examples to training batches, after the tf.data
performance guide: cache the decoded examples, shuffle with the run's seed, batch, then do the
remaining work (normalize, augment) once per batch in parallel, and prefetch."""

from __future__ import annotations

import os

import tensorflow as tf

from trainer.data import augment as augment_lib

# "auto" caches in memory when the decoded uint8 examples of all splits take at most this
# share of the machine's memory; bigger datasets are re-read (and re-decoded) every epoch.
_AUTO_CACHE_SHARE = 0.25


def memory_bytes() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def should_cache(cache, *, examples: int, input_shape: tuple) -> bool:
    if cache != "auto":
        return bool(cache)
    size = examples
    for dim in input_shape:
        size *= dim
    return size <= _AUTO_CACHE_SHARE * memory_bytes()


def _normalize(images, labels):
    return tf.cast(images, tf.float32) / 255.0, labels


def batches(examples: tf.data.Dataset, *, batch_size: int, training: bool, seed: int, cache: bool,
            shuffle_buffer: int, size: int, augment: dict, drop_remainder: bool = False) -> tf.data.Dataset:
    if cache:
        examples = examples.cache()
    if training:
        # Same seed, same order in every epoch sequence; a new order each epoch.
        examples = examples.shuffle(min(shuffle_buffer, size), seed=seed, reshuffle_each_iteration=True)
    ds = examples.batch(batch_size, drop_remainder=drop_remainder)
    if training and augment_lib.enabled(**augment):
        # One stateless seed per batch, from a seeded stream that differs every epoch but is
        # the same in every run with this seed.
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        ds = tf.data.Dataset.zip(ds, seeds).map(
            lambda batch, batch_seed: (augment_lib.apply(_normalize(*batch)[0], batch_seed, **augment), batch[1]),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    else:
        ds = ds.map(_normalize, num_parallel_calls=tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.deterministic = True
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)
