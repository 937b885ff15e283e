"""The baseline of the `overhead` benchmark: what a Keras user writes by hand to train `model=mlp`.

    python benchmarks/plain_keras.py --epochs 20 --batch-size 32 --seed 42

Same data as `python -m trainer` (the digits TFDS dataset, same split strings), same network
(Flatten, Dense(width, relu), Dense(10, softmax)), optimizer, loss, batch size, epochs and seed;
the input pipeline is the one from the TFDS Keras guide. No tracking, no config, no registry.
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
parser.add_argument("--learning-rate", type=float, default=0.003)
parser.add_argument("--width", type=int, default=128)
parser.add_argument("--data-dir", default=None)
args = parser.parse_args()

keras.utils.set_random_seed(args.seed)
(train, val, test), info = tfds.load(
    "digits", split=["train[:90%]", "train[90%:]", "test"], as_supervised=True, with_info=True,
    data_dir=args.data_dir,
)


def normalize(image, label):
    return tf.cast(image, tf.float32) / 255.0, label


train = train.map(normalize, num_parallel_calls=tf.data.AUTOTUNE).cache()
train = train.shuffle(4096, seed=args.seed).batch(args.batch_size).prefetch(tf.data.AUTOTUNE)
val = val.map(normalize).cache().batch(args.batch_size).prefetch(tf.data.AUTOTUNE)
test = test.map(normalize).cache().batch(args.batch_size).prefetch(tf.data.AUTOTUNE)

model = keras.Sequential([
    keras.Input(info.features["image"].shape),
    keras.layers.Flatten(),
    keras.layers.Dense(args.width, activation="relu"),
    keras.layers.Dense(info.features["label"].num_classes, activation="softmax"),
])
model.compile(
    optimizer=keras.optimizers.Adam(args.learning_rate),
    loss="sparse_categorical_crossentropy",
    metrics=["accuracy"],
)
model.fit(train, validation_data=val, epochs=args.epochs, verbose=2)
print(model.evaluate(test, return_dict=True, verbose=0))
