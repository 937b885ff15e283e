"""predict: `python -m trainer.predict`'s batch inference against Keras's own `model.predict`.

A is trainer/use/predict.py `probabilities` on uint8 images (the rescale inside its compiled
forward pass); B is `model.predict` on the same images already rescaled to float32, at the same
batch size, alternately in one process. Each is images per second over the whole array.
Target: A at least 0.9 of B. One more row times decoding PNG files (read, decode, resize when
needed), the command's other per-image cost, for scale; it has no target.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.results import alternate, compare, say, section, value

TARGET = 0.9
BATCH = 256
# (model, input shape): the digits default and a CIFAR-sized convnet.
CASES = (("mlp", (8, 8, 1)), ("cnn", (32, 32, 3)))


def _model(session, name: str, input_shape: tuple):
    from models import net
    from trainer.config.validate import validate

    knobs = validate(session.compose(f"model={name}"))["model"]["knobs"]  # conf/model/<name>.yaml's defaults
    return net.build(name, "functional", input_shape=input_shape, num_classes=10, **knobs)


def run(session) -> dict:
    import keras

    from trainer.use import predict

    examples = 512 if session.sizes.repeats == 1 else 10000
    repeats = max(session.sizes.repeats, 1) * 2 - 1  # 1 quick, 5 full
    rng = np.random.default_rng(0)
    rows = []
    for name, input_shape in CASES:
        model = _model(session, name, input_shape)
        images = rng.integers(0, 256, (examples, *input_shape), dtype=np.uint8)
        rescaled = images.astype(np.float32) / 255.0
        ours = predict.probabilities(model, images[:BATCH * 2], BATCH)  # trace both batch shapes once
        theirs = model.predict(rescaled[:BATCH * 2], batch_size=BATCH, verbose=0)
        assert np.allclose(ours, theirs, atol=1e-5), "the two paths must compute the same outputs"

        def ours_rate(i, model=model, images=images):
            start = time.perf_counter()
            predict.probabilities(model, images, BATCH)
            rate = len(images) / (time.perf_counter() - start)
            say(f"  predict {name} probabilities {i + 1}: {rate:,.0f} images/s")
            return rate

        def keras_rate(i, model=model, rescaled=rescaled):
            start = time.perf_counter()
            model.predict(rescaled, batch_size=BATCH, verbose=0)
            rate = len(rescaled) / (time.perf_counter() - start)
            say(f"  predict {name} model.predict {i + 1}: {rate:,.0f} images/s")
            return rate

        a, b = alternate(ours_rate, keras_rate, repeats)
        case = f"{name} {'x'.join(map(str, input_shape))}, {examples:,} images, batch {BATCH}"
        rows.append(compare(case, "images per second", "images/s", a, b, target=TARGET, kind="min"))
        rows.append(value(f"{name} {'x'.join(map(str, input_shape))}, PNG files", "decoding images per second",
                          "images/s", _decode_rates(predict, images[: min(examples, 2000)], input_shape, repeats)))
        del model
        keras.backend.clear_session()
    notes = [
        f"A: `trainer.use.predict.probabilities(model, uint8 images, {BATCH})`, what `python -m trainer.predict`"
        " runs after decoding; B: `model.predict(images / 255, batch_size"
        f"={BATCH})` on the same images, rescaled beforehand (not timed). Untrained registry models at their"
        " default knobs; random pixels.",
        "Decoding: `trainer.use.predict.decode_files` on PNG files of the same images (read, decode, no resize"
        " needed), images per second; the whole command adds Python and TensorFlow start-up once.",
    ]
    return section("predict", "Prediction: batch inference vs model.predict", "predict", "model.predict", rows, notes)


def _decode_rates(predict, images: np.ndarray, input_shape: tuple, repeats: int) -> list[float]:
    from PIL import Image

    with tempfile.TemporaryDirectory(prefix="predict-bench-") as folder:
        files = []
        for i, image in enumerate(images):
            path = str(Path(folder) / f"{i:05d}.png")
            Image.fromarray(image[..., 0] if input_shape[2] == 1 else image).save(path)
            files.append(path)
        rates = []
        for _ in range(repeats):
            start = time.perf_counter()
            decoded = predict.decode_files(files, input_shape)
            rates.append(len(files) / (time.perf_counter() - start))
        assert np.array_equal(decoded.images, images), "PNG round trip must give the same pixels"
    return rates
