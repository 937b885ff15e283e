"""Export a Keras model to SavedModel, ONNX and LiteRT, each checked against the Keras model, and
record the exports on an MLflow run.

`export` writes every format into a staging folder beside its destination, runs each file in its
own runtime (TensorFlow's SavedModel loader, onnxruntime, the LiteRT interpreter) on the same
inputs as the Keras model, and only when every format is within the tolerance moves the folders
into place: a failure leaves the destination as it was. Every exported file takes what the Keras
model takes (float32 pixels already divided by 255) and returns its class probabilities.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import keras
import mlflow
import numpy as np
import tensorflow as tf
import yaml
from mlflow.tracking import MlflowClient

from trainer import data as data_lib
from trainer.config.choices import EXPORT_FORMATS
from trainer.errors import ConfigError, ExportMismatch
from trainer.run import console
from trainer.use import export_config, source
from trainer.use.export_config import CHECK_EXAMPLES, REPORT_JSON, TOLERANCE

# The file (or folder) each format writes inside <destination>/<format>/; LiteRT's must end .tflite.
FILES = {"saved_model": "saved_model", "onnx": "model.onnx", "litert": "model.tflite"}
REPORT_MD = "export.md"


def export(model: keras.Model, formats: list[str], out_dir: str, check_inputs: np.ndarray, *,
           inputs_note: str, tolerance: float = TOLERANCE) -> list[dict]:
    """Write `model` in each of `formats` (names of trainer/config/choices.py's EXPORT_FORMATS) into
    `out_dir/<format>/`, check each on `check_inputs` (a batch as the model takes it) and write the
    report (`export.json`, `export.md`) beside them. Returns one record per format; raises
    ExportMismatch, writing nothing, when a format's largest difference exceeds `tolerance`.
    A format exported before into `out_dir` is replaced; the others stay, and stay in the report."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    check_inputs = np.asarray(check_inputs, dtype="float32")
    expected = keras.ops.convert_to_numpy(model(check_inputs, training=False))
    # Beside the destination, so that moving the finished folders into place is a rename.
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        records = [_export_one(model, name, staging, check_inputs, expected, tolerance, inputs_note)
                   for name in formats]
        failed = [r for r in records if r["max_abs_diff"] > tolerance]
        if failed:
            r = failed[0]
            raise ExportMismatch(f"the {r['format']} export differs from the Keras model by up to {r['max_abs_diff']:.3g}"
                                 f" on {r['examples']} examples, more than the tolerance {tolerance:g}; nothing was written"
                                 f" to {out_dir}")
        kept = [r for r in _previous_records(out_dir) if r["format"] not in formats]
        _write_report(staging, kept + records)
        _move_into_place(staging, out_dir, formats)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return records


def _export_one(model, name: str, staging: Path, inputs, expected, tolerance: float, inputs_note: str) -> dict:
    folder = staging / name
    folder.mkdir()
    path = folder / FILES[name]
    started = time.perf_counter()
    with _converters_quiet():
        model.export(str(path), format=EXPORT_FORMATS[name], verbose=False)
        seconds = time.perf_counter() - started
        outputs = _RUNNERS[name](str(path), inputs)
    return {
        "format": name,
        "path": f"{name}/{FILES[name]}",
        "bytes": _size(path),
        "export_seconds": round(seconds, 3),
        "examples": int(len(inputs)),
        "check_inputs": inputs_note,
        "max_abs_diff": float(np.max(np.abs(np.asarray(outputs, dtype="float64") - expected))),
        "tolerance": tolerance,
    }


def first_test_examples(data, examples: int = CHECK_EXAMPLES) -> tuple[np.ndarray, str]:
    """The first `examples` test examples of a loaded dataset (trainer/data/loading.py's Dataset),
    as the model takes them, and how the report names them."""
    kept, count = [], 0
    for x, _ in data.test:  # to its end: a cached pipeline left half-read drops its cache, with a warning
        if count < examples:
            kept.append(x.numpy())
            count += len(kept[-1])
    batch = np.concatenate(kept)[:examples]
    return batch, f"the first {len(batch)} examples of the test split of {data.name}"


def export_trained(model: keras.Model, data, formats: list[str], run_dir: str, tracker) -> list[dict]:
    """`export.formats` at the end of training: into <run folder>/export/, checked on the run's own
    test examples, logged to the run (when it is tracked)."""
    out_dir = os.path.join(run_dir, "export")
    inputs, note = first_test_examples(data)
    records = export(model, formats, out_dir, inputs, inputs_note=note)
    if tracker.enabled:
        log_to_run(tracker.client, tracker.run_id, out_dir, records)
    print(f"exported the trained model:\n{summary(records, out_dir)}", flush=True)
    return records


def export_command(settings: dict) -> list[dict]:
    """`python -m trainer.export`: what `run` names, exported, checked on its run's test examples,
    and logged to that run (a bare .keras file has no run: the files and report only)."""
    located = source.locate(settings["run"], settings["tracking_uri"])
    trained = source.load(located)
    ref = located.reference
    out_dir = settings["output"] or os.path.join(
        settings["exports_dir"], "exports", ref.run_id or located.model_id or Path(located.keras_file).stem)
    problem = export_config.output_problem(out_dir)  # the default folder, known only now
    if problem:
        raise ConfigError(f"output must be a new folder, an empty one or one an earlier export wrote ({problem})."
                          f" Received: output={out_dir}")
    inputs, note = _check_inputs(trained)
    records = export(trained.model, settings["formats"], out_dir, inputs, inputs_note=note)
    if located.run_id is not None:
        log_to_run(MlflowClient(located.tracking_uri), located.run_id, out_dir, records)
    where = f"; logged to run {located.run_id} as export/" if located.run_id else ""
    print(f"exported {located.model_uri}{where}\n{summary(records, out_dir)}\n  report: {out_dir}/{REPORT_MD}",
          flush=True)
    return records


def _check_inputs(trained) -> tuple[np.ndarray, str]:
    """The first CHECK_EXAMPLES test examples of the dataset the model was trained on (the run's
    config.yaml names it); random pixels when there is no run or its dataset is not here."""
    settings = _run_settings(trained.tracking_uri, trained.run_id) if trained.run_id else None
    if settings is not None:
        try:
            data = data_lib.load(**settings["data"], batch_size=CHECK_EXAMPLES, seed=settings["seed"])
        except ConfigError:  # prepared elsewhere, and not downloadable now
            data = None
        if data is not None and tuple(data.input_shape) == tuple(trained.input_shape):
            return first_test_examples(data)
    pixels = np.random.default_rng(0).integers(0, 256, size=(CHECK_EXAMPLES, *trained.input_shape))
    return (pixels / 255.0).astype("float32"), (f"{CHECK_EXAMPLES} images of uniformly random pixels (the model's"
                                                " training data is not available here)")


def _run_settings(tracking_uri: str, run_id: str) -> dict | None:
    """The validated config the training run logged (trainer/train.py: config.yaml), or None."""
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="config.yaml",
                                                       tracking_uri=tracking_uri, dst_path=tmp)
            with open(path) as f:
                settings = yaml.safe_load(f)
        except Exception:  # noqa: BLE001 (a run logged by something else: no config to read)
            return None
    return settings if isinstance(settings, dict) and isinstance(settings.get("data"), dict) else None


@contextlib.contextmanager
def _converters_quiet():
    """tf2onnx logs every conversion step at INFO, TensorFlow where it writes a SavedModel's assets,
    Keras's tf2onnx patch checks for `np.object` (a FutureWarning of NumPy 2), and the LiteRT
    converter and interpreter print notes: none is about the export. Warnings still show."""
    loggers = [logging.getLogger(name) for name in ("tf2onnx", "tensorflow")]  # tensorflow: "Assets written to"
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(max(logger.level, logging.WARNING))
    try:
        with warnings.catch_warnings(), console.stderr_without(console.LITERT_NOTES):
            warnings.filterwarnings("ignore", message=r"In the future `np\.object`", category=FutureWarning)
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


# --- running each exported file in its own runtime -----------------------------------------------

def _run_saved_model(path: str, inputs: np.ndarray) -> np.ndarray:
    # Keras's export names its inference function `serve` (also the `serving_default` signature).
    # The loaded object is held while `serve` runs: it owns the variables the function reads.
    loaded = tf.saved_model.load(path)
    return loaded.serve(tf.constant(inputs)).numpy()


def _run_onnx(path: str, inputs: np.ndarray) -> np.ndarray:
    import onnxruntime  # the `export` extra, present once the config check has passed

    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: inputs})[0]


def _run_litert(path: str, inputs: np.ndarray) -> np.ndarray:
    # TensorFlow 2.21 still ships the interpreter and warns that it moves to the ai-edge-litert
    # package; when tf.lite.Interpreter is gone, use ai_edge_litert.interpreter.Interpreter here.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"(?s).*tf\.lite\.Interpreter is deprecated")
        interpreter = tf.lite.Interpreter(model_path=path)
    entry, result = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    interpreter.resize_tensor_input(entry["index"], inputs.shape)  # exported with a free batch size
    interpreter.allocate_tensors()
    interpreter.set_tensor(entry["index"], inputs)
    interpreter.invoke()
    return interpreter.get_tensor(result["index"])


_RUNNERS = {"saved_model": _run_saved_model, "onnx": _run_onnx, "litert": _run_litert}


# --- the report and the move ---------------------------------------------------------------------

def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _previous_records(out_dir: Path) -> list[dict]:
    try:
        return json.loads((out_dir / REPORT_JSON).read_text())["exports"]
    except (OSError, ValueError, KeyError):
        return []


def _write_report(folder: Path, records: list[dict]) -> None:
    (folder / REPORT_JSON).write_text(json.dumps({"exports": records}, indent=2) + "\n")
    lines = ["| format | file | size (bytes) | examples | max abs difference from Keras | tolerance |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['format']} | {r['path']} | {r['bytes']} | {r['examples']} | {r['max_abs_diff']:.3g} |"
              f" {r['tolerance']:g} |" for r in records]
    notes = sorted({r["check_inputs"] for r in records})
    text = ("# Exports\n\nEach file takes float32 pixels divided by 255 (what the Keras model takes) and returns"
            " class probabilities; each was run in its own runtime on the check inputs and compared with the"
            " Keras model.\n\n" + "\n".join(lines) + "\n\nCheck inputs: " + "; ".join(notes) + "\n")
    (folder / REPORT_MD).write_text(text)


def _move_into_place(staging: Path, out_dir: Path, formats: list[str]) -> None:
    """Each new format folder and the report replace their old copies, each by one rename."""
    out_dir.mkdir(exist_ok=True)
    for name in [*formats, REPORT_JSON, REPORT_MD]:
        target = out_dir / name
        if target.exists():
            target.rename(staging / f"old-{name}")  # deleted with the staging folder
        (staging / name).rename(target)


# --- recording on an MLflow run ------------------------------------------------------------------

def log_to_run(client, run_id: str, out_dir: str, records: list[dict]) -> None:
    """The files as artifacts `export/<format>/`, the report as `export/export.{json,md}`, and per
    format the metrics export/<format>/max_abs_diff, .../bytes and .../examples (metrics, not
    params: a run exported again records the new values)."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    metrics = []
    for r in records:
        client.log_artifacts(run_id, os.path.join(out_dir, r["format"]), f"export/{r['format']}")
        metrics += [Metric(f"export/{r['format']}/{key}", float(r[key]), now, 0)
                    for key in ("max_abs_diff", "bytes", "examples")]
    for report in (REPORT_JSON, REPORT_MD):
        client.log_artifact(run_id, os.path.join(out_dir, report), "export")
    client.log_batch(run_id, metrics=metrics)


def summary(records: list[dict], out_dir: str) -> str:
    """What the command prints: one line per format."""
    lines = [f"  {r['format']:<12}{os.path.join(out_dir, r['path'])}  max |difference| {r['max_abs_diff']:.2g}"
             f" on {r['examples']} examples (<= {r['tolerance']:g})" for r in records]
    return "\n".join(lines)
