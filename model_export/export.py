"""`emotion-export export`: any single-input grayscale Keras classifier -> full-integer int8 TFLite + NAME.json.

Path: keras load -> model.export(SavedModel) -> TFLiteConverter.from_saved_model with int8-only
builtins, int8 input and output, calibrated on a stratified sample of real Training faces that
went through the edge's own preprocessing. The result is checked (int8 I/O, no float or Flex ops)
and evaluated (float vs int8 on PrivateTest) before its metadata is written.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge.argtypes import float_in, int_in, label_list
from edge.contract import FER_LABELS, InputSpec, ModelInfo, sha256_file, write_model_info
from edge.errors import DataError, ModelError
from model_export import __version__
from model_export.calibration import MIN_CALIBRATION, calibration_images, prepare_float, representative
from model_export.data import LABEL_SOURCES, load_dataset

# tensor types an int8 model may contain: int8 activations/weights, int32 biases and shapes
ALLOWED_TENSOR_TYPES = {np.dtype(np.int8), np.dtype(np.int32), np.dtype(np.int64)}


@dataclass
class ExportResult:
    tflite: Path
    metadata: Path
    info: ModelInfo


def softmax_outputs(model, x: np.ndarray) -> bool:
    """True if the model already ends in probabilities (non-negative rows summing to 1)."""
    y = np.asarray(model.predict_on_batch(x[:32]))
    return bool((y >= -1e-6).all() and np.allclose(y.sum(axis=1), 1.0, atol=1e-3))


def with_softmax(model):
    """Append a Softmax so the int8 output is a probability the edge can renormalise."""
    import keras

    return keras.Model(model.inputs, keras.layers.Softmax(name="probs_softmax")(model.outputs[0]), name=model.name)


def convert_int8(model, calib: np.ndarray) -> bytes:
    """Keras model -> SavedModel -> full-integer TFLite bytes (int8 in, int8 out)."""
    import tensorflow as tf

    with tempfile.TemporaryDirectory(prefix="emotion-export-") as tmp:
        saved = os.path.join(tmp, "saved_model")
        model.export(saved, format="tf_saved_model", verbose=False)
        conv = tf.lite.TFLiteConverter.from_saved_model(saved)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: representative(calib)
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
        try:
            return conv.convert()
        except Exception as e:  # converter errors are long; keep the first line
            first = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
            raise ModelError(f"int8 conversion failed ({first}); the model may use an op with no int8 kernel") from None


def check_int8(path: Path) -> dict[str, Any]:
    """Refuse a .tflite that is not full-integer: int8 I/O, no Flex/custom ops, no float tensors in ops."""
    from model_export.predictors import load_interpreter

    interp = load_interpreter(path, delegates=False)
    inp, out = interp.get_input_details(), interp.get_output_details()
    if len(inp) != 1 or len(out) != 1:
        raise ModelError(f"{path}: expected one input and one output, found {len(inp)} and {len(out)}")
    for what, d in (("input", inp[0]), ("output", out[0])):
        if np.dtype(d["dtype"]) != np.int8:
            raise ModelError(f"{path}: {what} is {np.dtype(d['dtype']).name}, not int8")
    tensors = {t["index"]: t for t in interp.get_tensor_details()}
    ops = interp._get_ops_details()  # noqa: SLF001 - the only op list LiteRT's Python API offers
    names = sorted({op["op_name"] for op in ops})
    for op in ops:
        name = op["op_name"]
        if name.startswith("Flex") or name.upper().startswith("CUSTOM") or name == "DELEGATE":
            raise ModelError(f"{path}: contains non-builtin op {name}; the device's LiteRT cannot run it")
        for idx in list(op["inputs"]) + list(op["outputs"]):
            if idx < 0 or idx not in tensors:
                continue
            dt = np.dtype(tensors[idx]["dtype"])
            if dt not in ALLOWED_TENSOR_TYPES:
                raise ModelError(f"{path}: op {name} uses a {dt.name} tensor {tensors[idx]['name']!r}; not a full-integer model")
    return {"ops": names, "input": inp[0], "output": out[0]}


def export_model(model_path: str | Path, out: str | Path, *, input_range: tuple[float, float],
                 calibration_data: str | Path, labels: tuple[str, ...] = FER_LABELS,
                 calibration_size: int = 500, min_calibration: int = MIN_CALIBRATION,
                 eval_data: str | Path | None = None, eval_split: str = "PrivateTest", eval_limit: int = 0,
                 crop_margin: float = 0.0, labels_from: str = "fer2013", seed: int = 0,
                 log=print) -> ExportResult:
    """Export MODEL to OUT (.tflite) and OUT's .json; returns both paths and the metadata."""
    from model_export.evaluate import agreement, map_labels, metrics
    from model_export.predictors import KerasPredictor, TFLitePredictor, keras_input_hw, load_keras

    model_path, out = Path(model_path), Path(out)
    if out.suffix != ".tflite":
        raise ModelError(f"{out}: the output must be NAME.tflite")
    if not 0.0 <= crop_margin <= 1.0:
        raise ModelError(f"--crop-margin {crop_margin}: must be between 0 and 1")
    labels = tuple(labels)
    if len(labels) < 2 or len(set(labels)) != len(labels) or "none" in labels or not all(labels):
        raise ModelError(f"--labels {','.join(labels)}: need at least 2 distinct names ('none' is reserved)")
    model = load_keras(model_path)
    h, w = keras_input_hw(model, str(model_path))
    n_out = int(model.outputs[0].shape[-1])
    if n_out != len(labels):
        raise ModelError(f"{model_path}: model has {n_out} outputs but {len(labels)} labels ({','.join(labels)})")

    ds = load_dataset(calibration_data, labels_from)
    tr_x, tr_y = ds.split("Training")
    faces = calibration_images(tr_x, tr_y, calibration_size, ds.source, seed, min_calibration)
    calib = prepare_float(faces, w, h, input_range)
    softmax_added = not softmax_outputs(model, calib)
    if softmax_added:
        log("model output is not a probability distribution: appending a Softmax layer")
        model = with_softmax(model)

    log(f"converting {model_path.name} ({h}x{w}, range {list(input_range)}) with {len(calib)} calibration faces")
    tfl = convert_int8(model, calib)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_bytes(tfl)
    try:
        checked = check_int8(tmp)
    except ModelError:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, out)
    q_in, q_out = checked["input"]["quantization"], checked["output"]["quantization"]
    spec = InputSpec(h, w, 1, "int8", (float(input_range[0]), float(input_range[1])), float(crop_margin))
    info = ModelInfo(labels=labels, input=spec, sha256=sha256_file(out),
                     quantization={"input_scale": float(q_in[0]), "input_zero_point": int(q_in[1]),
                                   "output_scale": float(q_out[0]), "output_zero_point": int(q_out[1])})

    # evaluate float vs int8 on the report split (written into the metadata)
    metrics_out: dict[str, Any] = {}
    try:
        eds = ds if eval_data is None or Path(eval_data) == Path(calibration_data) else load_dataset(eval_data, labels_from)
        ex, ey = eds.split(eval_split)
        if eval_limit:
            ex, ey = ex[:eval_limit], ey[:eval_limit]
    except DataError as e:
        log(f"no evaluation: {e}")
        ex = np.zeros((0,))
    if len(ex):
        y, keep = map_labels(ey, labels)
        fp = KerasPredictor(model, input_range, labels, name=str(model_path)).predict(ex[keep])
        write_model_info(out, info)  # the predictor reads the metadata like the edge does
        ip = TFLitePredictor(out, num_threads=1).predict(ex[keep])
        mf, mi = metrics(y[keep], fp, labels), metrics(y[keep], ip, labels)
        metrics_out = {"split": eval_split, "n": mi["n"], "data": Path(eds.source).name,
                       "accuracy": mi["accuracy"], "macro_f1": mi["macro_f1"], "top2_accuracy": mi["top2_accuracy"],
                       "log_loss": mi["log_loss"], "float_accuracy": mf["accuracy"], "float_macro_f1": mf["macro_f1"],
                       "accuracy_drop": mf["accuracy"] - mi["accuracy"], "agreement": agreement(fp, ip)}
        log(f"{eval_split} n={mi['n']}: float accuracy {mf['accuracy']:.4f}, int8 accuracy {mi['accuracy']:.4f}, "
            f"agreement {metrics_out['agreement']:.2%}")
    else:
        log(f"no {eval_split} faces in the evaluation data: metadata has no metrics")
    made_by = {"tool": "emotion-export", "version": __version__, "source_model": model_path.name,
               "source_sha256": sha256_file(model_path),
               "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
               "input_range": list(spec.range), "calibration": {"n": int(len(calib)), "data": Path(ds.source).name,
                                                                "split": "Training", "sampling": "stratified", "seed": seed},
               "labels_from": labels_from, "softmax_added": softmax_added, "ops": checked["ops"],
               "converter": "TFLiteConverter.from_saved_model, TFLITE_BUILTINS_INT8, int8 I/O"}
    try:
        import tensorflow as tf

        made_by["tensorflow"] = tf.__version__
    except ImportError:  # pragma: no cover - convert_int8 needed it
        pass
    info = ModelInfo(labels=info.labels, input=info.input, sha256=info.sha256, quantization=info.quantization,
                     metrics=metrics_out, made_by=made_by)
    meta = write_model_info(out, info)
    log(f"wrote {out} ({out.stat().st_size / 1024:.0f} KiB) and {meta}")
    return ExportResult(out, meta, info)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="MODEL.keras or legacy MODEL.h5: single grayscale input (H, W, 1)")
    p.add_argument("--input-range", default="0,1", help="float range the model was trained on: 0,1 (default)  -1,1  0,255")
    p.add_argument("--labels", type=label_list, default=",".join(FER_LABELS), help="comma-separated output order (default FER2013)")
    p.add_argument("--calibration-data", required=True, help="FER2013 .npz, fer2013.csv or image folder (Training split is sampled)")
    p.add_argument("--calibration-size", type=int, default=500, help=f"faces for int8 calibration (at least {MIN_CALIBRATION})")
    p.add_argument("--eval-data", help="data for the float vs int8 numbers in the metadata (default: calibration data)")
    p.add_argument("--eval-split", default="PrivateTest")
    p.add_argument("--eval-limit", type=int_in(0), default=0, help="evaluate only the first N faces (0 = all)")
    p.add_argument("--labels-from", default="fer2013", choices=LABEL_SOURCES)
    p.add_argument("--crop-margin", type=float_in(0, 1), default=0.0, help="fraction added around the Haar box on the device")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="OUT.tflite (OUT.json is written beside it)")


def run(args: argparse.Namespace) -> int:
    from model_export.predictors import parse_range

    rng = parse_range(args.input_range)
    labels = tuple(s.strip() for s in args.labels.split(",") if s.strip())
    export_model(args.model, args.out, input_range=rng, calibration_data=args.calibration_data, labels=labels,
                 calibration_size=args.calibration_size, eval_data=args.eval_data, eval_split=args.eval_split,
                 eval_limit=args.eval_limit, crop_margin=args.crop_margin, labels_from=args.labels_from,
                 seed=args.seed, log=lambda m: print(m, file=sys.stderr, flush=True))
    return 0
