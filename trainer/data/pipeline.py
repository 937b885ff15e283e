"""The tf.data pipeline from unbatched uint8 examples to training batches, after the tf.data
performance guide: cache the decoded, normalized examples, shuffle with the run's seed, batch,
then do the remaining work (augmentation) once per batch in parallel, and prefetch."""

from __future__ import annotations

import os

import tensorflow as tf

from trainer.data import augment as augment_lib

# "auto" caches in memory when the decoded float32 examples of all splits take at most this
# share of the machine's memory; bigger datasets are re-read (and re-decoded) every epoch.
_AUTO_CACHE_SHARE = 0.25
_CACHED_BYTES_PER_VALUE = 4  # float32: normalized once before the cache, never again per epoch


def memory_bytes() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def should_cache(cache, *, examples: int, input_shape: tuple) -> bool:
    if cache != "auto":
        return bool(cache)
    size = examples * _CACHED_BYTES_PER_VALUE
    for dim in input_shape:
        size *= dim
    return size <= _AUTO_CACHE_SHARE * memory_bytes()


def _normalize(images, labels):
    return tf.cast(images, tf.float32) / 255.0, labels


def batches(examples: tf.data.Dataset, *, batch_size: int, training: bool, seed: int, cache: bool,
            shuffle_buffer: int, size: int, augment: dict, drop_remainder: bool = False) -> tf.data.Dataset:
    if cache:
        # Normalizing once, before the cache, instead of a per-batch map every epoch: for a tiny
        # model that map is a large share of the step time.
        examples = examples.map(_normalize, num_parallel_calls=tf.data.AUTOTUNE).cache()
    if training:
        # Same seed, same order in every epoch sequence; a new order each epoch.
        examples = examples.shuffle(min(shuffle_buffer, size), seed=seed, reshuffle_each_iteration=True)
    ds = examples.batch(batch_size, drop_remainder=drop_remainder)
    if not cache:
        ds = ds.map(_normalize, num_parallel_calls=tf.data.AUTOTUNE)  # one vectorized op per batch
    if training and augment_lib.enabled(**augment):
        # One stateless seed per batch, from a seeded stream that differs every epoch but is
        # the same in every run with this seed.
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        ds = tf.data.Dataset.zip(ds, seeds).map(
            lambda batch, batch_seed: (augment_lib.apply(batch[0], batch_seed, **augment), batch[1]),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    options = tf.data.Options()
    options.deterministic = True
    if cache:
        # Nothing is decoded after the cache: tf.data's autotuning model would time every
        # example through shuffle and batch to tune parallelism there is none of (an AUTOTUNE
        # map still runs on every core without it), and an epoch costs less CPU without it.
        options.autotune.enabled = False
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)
