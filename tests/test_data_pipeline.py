"""The tf.data pipeline: deterministic with a seed, different with another, augmentation on
training batches only; and one preparation of a dataset when two processes race for it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import tensorflow as tf

from trainer.data import augment, load, pipeline

AUGMENT_OFF = {"flip": False, "crop": 0, "translate": 0.0}


def _digits(tfds_dir, *, seed, augment=AUGMENT_OFF, batch_size=32):
    return load(source="tfds", name="digits", data_dir=tfds_dir, download=True, train_split="train",
                validation_split=None, test_split="test", validation_fraction=0.1, test_fraction=0.1,
                image_size=None, cache="auto", shuffle_buffer=10000, augment=augment, batch_size=batch_size,
                seed=seed)


def _epoch(ds):
    images, labels = zip(*[(x.numpy(), y.numpy()) for x, y in ds])
    return np.concatenate(images), np.concatenate(labels)


def test_same_seed_same_batches_other_seed_other_order(tfds_dir):
    flips = {"flip": True, "crop": 1, "translate": 0.1}
    first, again, other = (_digits(tfds_dir, seed=s, augment=flips) for s in (7, 7, 8))
    (x1, y1), (x1b, y1b) = _epoch(first.train), _epoch(first.train)
    (x2, y2), (x2b, _) = _epoch(again.train), _epoch(again.train)
    assert np.array_equal(y1, y2) and np.array_equal(x1, x2)        # same seed: same order, same augmentation
    assert np.array_equal(x1b, x2b)                                  # ... in every epoch
    assert not np.array_equal(y1, y1b)                               # a new order each epoch
    assert not np.array_equal(y1, _epoch(other.train)[1])            # another seed: another order
    assert sorted(y1.tolist()) == sorted(y1b.tolist())               # the same examples, reordered
    # evaluation splits are never shuffled nor augmented
    assert np.array_equal(_epoch(first.test)[0], _epoch(other.test)[0])


def test_augmentation_is_per_image_and_training_only(tfds_dir):
    plain = _digits(tfds_dir, seed=3)
    shifted = _digits(tfds_dir, seed=3, augment={"flip": False, "crop": 2, "translate": 0.0})
    (xp, yp), (xs, ys) = _epoch(plain.train), _epoch(shifted.train)
    assert np.array_equal(yp, ys) and xs.shape == xp.shape and xs.dtype == np.float32
    assert 0.0 <= xs.min() and xs.max() <= 1.0
    changed = [not np.array_equal(a, b) for a, b in zip(xp, xs)]
    assert 0 < sum(changed) < len(changed)  # each image draws its own offset (sometimes 0, 0)
    assert np.array_equal(_epoch(plain.validation)[0], _epoch(shifted.validation)[0])


def test_flip_and_shift_ops_on_a_known_image():
    image = np.zeros((1, 4, 4, 1), np.float32)
    image[0, 0, 0, 0] = 1.0
    batch = tf.constant(np.repeat(image, 64, axis=0))
    flipped = augment.apply(batch, tf.constant([1, 2], tf.int64), flip=True, crop=0, translate=0.0).numpy()
    corners = {(int(np.argmax(f[..., 0]) // 4), int(np.argmax(f[..., 0]) % 4)) for f in flipped}
    assert corners == {(0, 0), (0, 3)}  # left-right only, some flipped and some not
    shifted = augment.apply(batch, tf.constant([1, 2], tf.int64), flip=False, crop=1, translate=0.0).numpy()
    kept = shifted.sum(axis=(1, 2, 3))
    assert set(np.round(kept, 6).tolist()) <= {0.0, 1.0}  # whole-pixel shifts, zeros coming in


def test_cache_when_it_fits():
    assert pipeline.should_cache("auto", examples=60000, input_shape=(28, 28, 1))
    assert not pipeline.should_cache("auto", examples=10**9, input_shape=(224, 224, 3))
    assert pipeline.should_cache(True, examples=10**9, input_shape=(224, 224, 3))
    assert not pipeline.should_cache(False, examples=1, input_shape=(8, 8, 1))


def test_batched_rebuilds_the_pipeline_at_another_batch_size(tfds_dir):
    data = _digits(tfds_dir, seed=1)
    sizes = [int(y.shape[0]) for _, y in data.batched("train", 100, drop_remainder=True)]
    assert set(sizes) == {100} and len(sizes) == data.split_sizes["train"] // 100
    assert data.examples("test").element_spec[0].shape == (8, 8, 1)


_PREPARE = textwrap.dedent("""
    import os, sys, time
    from trainer.data import tfds_source
    ready, go = sys.argv[2], sys.argv[3]
    open(ready, "w").close()
    while not os.path.exists(go):
        time.sleep(0.01)
    source = tfds_source.open_source(name="digits", data_dir=sys.argv[1], download=False, train_split="train",
                                     validation_split=None, test_split="test", validation_fraction=0.1,
                                     test_fraction=0.1, image_size=None)
    print(source.split_sizes, source.digest)
""")


def test_two_processes_preparing_one_dataset_at_once_both_succeed(tmp_path):
    data_dir, go = tmp_path / "tfds", tmp_path / "go"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    readies = [tmp_path / f"ready{i}" for i in range(2)]
    procs = [subprocess.Popen([sys.executable, "-c", _PREPARE, str(data_dir), str(r), str(go)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in readies]
    deadline = time.monotonic() + 300
    while not all(r.exists() for r in readies) and time.monotonic() < deadline:
        time.sleep(0.05)
    go.touch()  # both processes have TensorFlow loaded: start preparing at the same moment
    outputs = [p.communicate(timeout=300) for p in procs]
    for proc, (out, err) in zip(procs, outputs):
        assert proc.returncode == 0, err[-3000:]
    results = [out.strip().splitlines()[-1] for out, _ in outputs]
    assert results[0] == results[1] and "'train': 1294" in results[0]
    prepared = [out for out, _ in outputs if "Dataset digits downloaded and prepared" in out]
    assert len(prepared) == 1  # one process prepared it, the other waited on the lock and reused it
    assert sorted(os.listdir(data_dir / "digits")) == ["1.0.0"]
    assert (data_dir / ".digits.prepare.lock").exists()
