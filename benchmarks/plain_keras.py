"""The baseline of the `overhead` benchmark: what a Keras user writes by hand to train `model=mlp`.

    python benchmarks/plain_keras.py --epochs 20 --batch-size 32 --seed 42

Same data as `python -m trainer` (the digits TFDS dataset, same split strings), same network
(Flatten, Dense(width, relu), Dense(10, softmax)), optimizer and learning-rate schedule (Adam,
a warmup over the first 5% of the steps, then cosine decay to 0), loss (cross-entropy with label smoothing 0.1, which Keras
offers on one-hot labels), batch size, epochs and seed; the input pipeline is the one from the
TFDS Keras guide. No tracking, no config, no registry.
"""

import argparse

import keras
import tensorflow as tf
import tensorflow_datasets as tfds

import trainer.data.digits  # noqa: F401  (registers the offline digits dataset with TFDS)

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=20)
parser.add_argument("--batch-size", type=int, default=32)
parser.add_argument("--seed", type=int, default=42)
parser.add_argument("--learning-rate", type=float, default=0.02)
parser.add_argument("--label-smoothing", type=float, default=0.1)
parser.add_argument("--width", type=int, default=128)
parser.add_argument("--data-dir", default=None)
args = parser.parse_args()

keras.utils.set_random_seed(args.seed)
(train, val, test), info = tfds.load(
    "digits", split=["train[:90%]", "train[90%:]", "test"], as_supervised=True, with_info=True,
    data_dir=args.data_dir,
)


num_classes = info.features["label"].num_classes


def normalize(image, label):
    return tf.cast(image, tf.float32) / 255.0, tf.one_hot(label, num_classes)


train = train.map(normalize, num_parallel_calls=tf.data.AUTOTUNE).cache()
train = train.shuffle(4096, seed=args.seed).batch(args.batch_size).prefetch(tf.data.AUTOTUNE)
val = val.map(normalize).cache().batch(args.batch_size).prefetch(tf.data.AUTOTUNE)
test = test.map(normalize).cache().batch(args.batch_size).prefetch(tf.data.AUTOTUNE)

model = keras.Sequential([
    keras.Input(info.features["image"].shape),
    keras.layers.Flatten(),
    keras.layers.Dense(args.width, activation="relu"),
    keras.layers.Dense(num_classes, activation="softmax"),
])
steps_per_epoch = int(train.cardinality())
warmup_steps = round(0.05 * args.epochs * steps_per_epoch)
schedule = keras.optimizers.schedules.CosineDecay(
    initial_learning_rate=0.0, warmup_target=args.learning_rate, warmup_steps=warmup_steps,
    decay_steps=args.epochs * steps_per_epoch - warmup_steps,
)
model.compile(
    optimizer=keras.optimizers.Adam(schedule),
    loss=keras.losses.CategoricalCrossentropy(label_smoothing=args.label_smoothing),
    metrics=["accuracy"],
)
model.fit(train, validation_data=val, epochs=args.epochs, verbose=2)
print(model.evaluate(test, return_dict=True, verbose=0))
