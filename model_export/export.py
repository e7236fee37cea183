"""`emotion-export export`: any single-input grayscale Keras classifier -> full-integer int8 TFLite + NAME.json.

Path: keras load -> model.export(SavedModel) -> TFLiteConverter.from_saved_model with int8-only
builtins, int8 input and output, its value ranges measured on a representative set: a stratified sample
of real Training faces that went through the edge's own preprocessing. The result is checked (int8 I/O, no float or Flex ops)
and evaluated (float vs int8 on PrivateTest) before its metadata is written.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import os
import re
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from edge.argtypes import float_in, int_in, label_list, random_seed
from edge.contract import FER_LABELS, InputSpec, ModelInfo, metadata_path, sha256_file, write_model_info
from edge.errors import ConfigError, DataError, ModelError
from model_export import __version__
from model_export.inputs import prepare_float
from model_export.representative import MIN_REPRESENTATIVE, batches, representative_faces
from model_export.data import LABEL_SOURCES, SPLITS, fer_index, load_dataset
from model_export.cost import RUNS as COST_RUNS
from model_export.cost import with_cost
from model_export.progress import Clock
from model_export.quiet import quiet_stderr

# the converter's own print-out of a failure: its exception holds the same text, told in one line
CONVERTER_ERROR_DUMP = ("loc(callsite(", "loc(fused[", "error: failed while converting",
                        "Some ops are not supported by the native TFLite", "Some ops in the model are custom ops",
                        "TF Select ops: ", "Custom ops: ", "Details:", "\ttf.")
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


def convert_int8(model, representative: np.ndarray) -> bytes:
    """Keras model -> SavedModel -> full-integer TFLite bytes (int8 in, int8 out)."""
    import tensorflow as tf

    with tempfile.TemporaryDirectory(prefix="emotion-export-") as tmp:
        saved = os.path.join(tmp, "saved_model")
        model.export(saved, format="tf_saved_model", verbose=False)
        conv = tf.lite.TFLiteConverter.from_saved_model(saved)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: batches(representative)
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
        try:
            return conv.convert()
        except Exception as e:  # converter errors are pages long: one line that names the cause
            raise ModelError(conversion_failure(str(e), type(e).__name__)) from None


def conversion_failure(text: str, kind: str) -> str:
    """One line for a TFLiteConverter error: the ops it could not express, else its first line."""
    flex = re.search(r"TF Select ops: ([^\n]+)", text)
    if flex:
        return (f"int8 conversion failed: the model uses TensorFlow ops with no TFLite builtin "
                f"({flex.group(1).strip()}); they would need Flex (SELECT_TF_OPS), which the device's LiteRT does not have")
    custom = re.search(r"Custom ops: ([^\n]+)", text)
    if custom:
        return (f"int8 conversion failed: the model uses custom ops ({custom.group(1).strip()}), which the device's "
                f"LiteRT does not have")
    first = text.strip().splitlines()[0] if text.strip() else kind
    if "error: loc(" in first:  # MLIR's "... error: loc(where, nested): WHAT": the WHAT
        first = first.rsplit("): ", 1)[-1]
    return f"int8 conversion failed ({first.strip()[:300]}); the model may use an op with no int8 kernel"


def check_int8(path: Path, where: str | Path | None = None) -> dict[str, Any]:
    """Refuse a .tflite that is not full-integer: int8 I/O, no Flex/custom ops, no float tensors in ops.

    `where` names the model in messages when PATH is a temporary file the user never sees."""
    from model_export.predictors import load_interpreter

    interp = load_interpreter(path, delegates=False)
    where = where or path
    inp, out = interp.get_input_details(), interp.get_output_details()
    if len(inp) != 1 or len(out) != 1:
        raise ModelError(f"{where}: expected one input and one output, found {len(inp)} and {len(out)}")
    for what, d in (("input", inp[0]), ("output", out[0])):
        if np.dtype(d["dtype"]) != np.int8:
            raise ModelError(f"{where}: {what} is {np.dtype(d['dtype']).name}, not int8")
    tensors = {t["index"]: t for t in interp.get_tensor_details()}
    ops = interp._get_ops_details()  # noqa: SLF001 - the only op list LiteRT's Python API offers
    names = sorted({op["op_name"] for op in ops})
    for op in ops:
        name = op["op_name"]
        if name.startswith("Flex") or name.upper().startswith("CUSTOM") or name == "DELEGATE":
            raise ModelError(f"{where}: contains non-builtin op {name}; the device's LiteRT cannot run it")
        for idx in list(op["inputs"]) + list(op["outputs"]):
            if idx < 0 or idx not in tensors:
                continue
            dt = np.dtype(tensors[idx]["dtype"])
            if dt not in ALLOWED_TENSOR_TYPES:
                raise ModelError(f"{where}: op {name} uses a {dt.name} tensor {tensors[idx]['name']!r}; not a "
                                 f"full-integer model (an op with no int8 kernel was left in float)")
    return {"ops": names, "input": inp[0], "output": out[0]}


def _check_labels(labels: tuple[str, ...], say=None) -> tuple[str, ...]:
    labels = tuple(labels)
    if len(labels) < 2 or len(set(labels)) != len(labels) or "none" in labels or not all(labels):
        raise ModelError(f"--labels {','.join(labels)}: need at least 2 distinct names ('none' is reserved)")
    other = {lab: FER_LABELS[i] for lab in labels if (i := fer_index(lab)) is not None and FER_LABELS[i] != lab}
    if other and say is not None:  # evaluation matches them; the device's LED colours and logs use the FER names
        say(f"note: {', '.join(f'{k} is FER {v}' for k, v in other.items())}; the device has LED colours for the "
            f"FER names only, so pass --labels with those names to get them (otherwise spare colours are used)")
    return labels


def _eval_split(ds, eval_data, representative_data, eval_split: str, eval_limit: int, labels_from: str):
    """The evaluation faces (the representative data set unless --eval-data names another)."""
    same = eval_data is None or (ds is not None and representative_data is not None
                                 and Path(eval_data) == Path(representative_data))
    eds = ds if same else load_dataset(eval_data, labels_from)
    ex, ey = eds.split(eval_split)
    if not len(ex):
        raise DataError(f"{eds.source}: no {eval_split} faces to evaluate the int8 model on; "
                        f"pass --eval-data with a {eval_split} split or another --eval-split")
    if eval_limit:
        ex, ey = ex[:eval_limit], ey[:eval_limit]
    return eds, ex, ey


def _evaluate(ex, ey, eds, labels, tflite: Path, info: ModelInfo, eval_split: str, say,
              float_model=None, input_range=None, name: str = "") -> dict[str, Any]:
    """int8 (and float, when the Keras model is at hand) on the report split, for the metadata."""
    from model_export.evaluate import agreement, check_some_kept, dropped_note, map_labels, metrics, one_class_warning
    from model_export.predictors import KerasPredictor, TFLitePredictor

    y, keep = map_labels(ey, labels, eds.names)
    check_some_kept(ey, keep, labels, eds.source, eds.names,
                    "; or export with --no-evaluate (the metadata then has no accuracy numbers)")
    note = dropped_note(ey, keep, eds.names)
    if note:
        say(note)
    n = int(keep.sum())
    say(f"evaluating {'float vs int8' if float_model is not None else 'int8'} on {n} {eval_split} faces "
        f"of {Path(eds.source).name}")
    with quiet_stderr():  # "Created TensorFlow Lite XNNPACK delegate"
        runner = TFLitePredictor(tflite, num_threads=1, info=info)
    ip = runner.predict(ex[keep])
    mi = metrics(y[keep], ip, labels)
    out = {"split": eval_split, "n": mi.n, "data": Path(eds.source).name,
           "accuracy": mi.accuracy, "macro_f1": mi.macro_f1, "top2_accuracy": mi.top2_accuracy,
           "log_loss": mi.log_loss}
    if note:
        out["dropped"] = note
    counts = np.bincount(ip.argmax(axis=1), minlength=len(labels))  # deploy refuses a model stuck on one class
    out.update(top_class=labels[int(counts.argmax())], top_class_share=float(counts.max() / max(1, len(ip))))
    if float_model is not None:
        fp = KerasPredictor(float_model, input_range, labels, name=name).predict(ex[keep])
        mf = metrics(y[keep], fp, labels)
        out.update(float_accuracy=mf.accuracy, float_macro_f1=mf.macro_f1,
                   accuracy_drop=mf.accuracy - mi.accuracy, agreement=agreement(fp, ip))
        say(f"{eval_split} n={mi.n}: float accuracy {mf.accuracy:.4f}, int8 accuracy {mi.accuracy:.4f}, "
            f"agreement {out['agreement']:.2%}")
    else:
        say(f"{eval_split} n={mi.n}: int8 accuracy {mi.accuracy:.4f}, macro-F1 {mi.macro_f1:.4f}")
    warning = one_class_warning(ip, labels)
    if warning:
        say(f"warning: {warning}")
    return out


def _info_for(tflite: Path, checked: dict[str, Any], labels, input_range, crop_margin: float) -> ModelInfo:
    inp = checked["input"]
    h, w = int(inp["shape"][1]), int(inp["shape"][2])
    q_in, q_out = inp["quantization"], checked["output"]["quantization"]
    spec = InputSpec(h, w, 1, "int8", (float(input_range[0]), float(input_range[1])), float(crop_margin))
    return ModelInfo(labels=labels, input=spec, sha256=sha256_file(tflite),
                     quantization={"input_scale": float(q_in[0]), "input_zero_point": int(q_in[1]),
                                   "output_scale": float(q_out[0]), "output_zero_point": int(q_out[1])})


def _cost(tflite: Path, info: ModelInfo, runs: int, say) -> ModelInfo:
    """NAME.json's cost: ms per face on one LiteRT thread of this CPU (runs=0: none)."""
    if not runs:
        say("--cost-runs 0: the metadata will have no cost")
        return info
    say(f"timing {runs} invocations on one thread")
    with quiet_stderr():  # "Created TensorFlow Lite XNNPACK delegate"
        info = with_cost(tflite, info, runs)
    say(f"cost: {info.cost.describe()}")
    return info


def _remove_temporaries(out: Path) -> None:
    """The temporary .tflite and .json of OUT, if a failed step left them."""
    _temporary(out).unlink(missing_ok=True)
    _temporary(metadata_path(out)).unlink(missing_ok=True)


def _temporary(path: Path) -> Path:
    """.NAME.tmp beside NAME: written first, renamed into place only on success."""
    return path.with_name(f".{path.name}.tmp")


def _publish(tmp_tfl: Path | None, out: Path, info: ModelInfo) -> Path:
    """Write NAME.json beside a temporary name, then rename: nothing usable appears before success."""
    meta = metadata_path(out)
    tmp_meta = _temporary(meta)
    tmp_meta.write_text(info.to_json(), encoding="utf-8")
    if tmp_tfl is not None:
        os.replace(tmp_tfl, out)
    os.replace(tmp_meta, meta)
    return meta


def _summary(out: Path, meta: Path, metrics_out: dict[str, Any], say) -> None:
    size = f"{out.stat().st_size / 1024:.0f} KiB"
    if "accuracy" in metrics_out:
        m = metrics_out
        acc = f"{m['split']} accuracy {m['accuracy']:.2%} (n={m['n']}"
        if "float_accuracy" in m:
            acc += f"; float {m['float_accuracy']:.2%}, int8 minus float {0.0 - m['accuracy_drop']:+.2%}"
        acc += ")"
    else:
        acc = "no accuracy numbers"
    say(f"wrote {out} ({size}) and {meta.name}: {acc}")
    say(f"next: emotion-edge run --model {out}   (or: emotion-export deploy {out} pi@HOST --dry-run)")


@dataclass
class _Source:
    """The Keras model to export, with what the export needs to know about it."""

    model: Any
    path: Path
    height: int
    width: int
    input_range: tuple[float, float]
    labels: tuple[str, ...]


@dataclass
class _Representative:
    """The int8 representative faces (uint8, then prepared like the edge prepares them) and where they came from."""

    faces: np.ndarray
    data: Any  # model_export.data.Dataset: also the default evaluation data
    fewer: str  # " (asked for N; ...)" when the Training split had fewer faces, else ""


def _check_out(out: Path) -> None:
    """Refuse an --out that would fail only after a minute of conversion."""
    if out.suffix != ".tflite":
        raise ModelError(f"{out}: the output must be NAME.tflite")
    if out.is_dir():
        raise ConfigError(f"--out {out}: is a folder; give the model file's name, NAME.tflite")
    blocked = next((p for p in out.parents if p.exists() and not p.is_dir()), None)
    if blocked is not None:
        raise ConfigError(f"--out {out}: {blocked} is a file, not a folder")


def _source_inputs(model_path: Path, input_range, labels, say) -> tuple[tuple[float, float], tuple[str, ...]]:
    """The model's input range and labels (given, or from its training run folder), before it loads."""
    from model_export.predictors import keras_inputs

    input_range, labels = keras_inputs(model_path, input_range, tuple(labels) if labels else None)
    return input_range, _check_labels(labels or FER_LABELS, say)


def _load_source(model_path: Path, input_range, labels, say) -> _Source:
    """The Keras model with its input size, range and labels (from _source_inputs)."""
    from model_export.predictors import keras_input_hw, load_keras

    say(f"loading {model_path}")
    model = load_keras(model_path)
    h, w = keras_input_hw(model, str(model_path))
    n_out = int(model.outputs[0].shape[-1])
    if n_out != len(labels):
        raise ModelError(f"{model_path}: model has {n_out} outputs but {len(labels)} labels ({','.join(labels)}); "
                         f"pass --labels with {n_out} names in the model's output order")
    return _Source(model, model_path, h, w, input_range, labels)


def _representative_faces(representative_data, labels_from: str, size: int, seed: int,
                          min_representative: int) -> _Representative:
    """A stratified sample of Training faces (uint8), checked before the model loads: too few fails in a
    second, naming the way on, not after the model and TensorFlow have loaded."""
    ds = load_dataset(representative_data, labels_from)
    tr_x, tr_y = ds.split("Training")
    try:
        faces = representative_faces(tr_x, tr_y, size, ds.source, seed, min_representative)
    except DataError as e:
        if len(tr_x) >= min_representative:
            raise
        raise DataError(f"{e}; pass --representative-data with another face set (e.g. FER2013's fer2013.npz): only the "
                        f"int8 value ranges come from it, the model and its labels stay as they are") from None
    fewer = f" (asked for {size}; the Training split has only {len(tr_x)})" if len(faces) < size else ""
    return _Representative(faces, ds, fewer)


def _prepared(cal: _Representative, src: _Source) -> _Representative:
    """The representative faces prepared for the model's input, as the edge prepares them."""
    return replace(cal, faces=prepare_float(cal.faces, src.width, src.height, src.input_range))


def _with_probabilities(src: _Source, calib: np.ndarray, say) -> tuple[_Source, bool]:
    """The source with a Softmax appended if its model ends in logits; True if one was added."""
    if softmax_outputs(src.model, calib):
        return src, False
    say("model output is not a probability distribution: appending a Softmax layer")
    return replace(src, model=with_softmax(src.model)), True


def _made_by(req: ExportRequest, info: ModelInfo, checked: dict[str, Any], *, src: _Source | None = None,
             rep: _Representative | None = None, softmax_added: bool = False) -> dict[str, Any]:
    """How the model was made, for NAME.json's `made_by`: from a Keras model (src, rep) or, json_only,
    a .tflite made elsewhere."""
    source = src.path if src is not None else req.model
    made_by: dict[str, Any] = {"tool": "emotion-export", "version": __version__}
    if req.json_only:
        made_by["json_only"] = True
    made_by.update(source_model=source.name,
                   date=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                   input_range=list(info.input.range))
    if src is not None and rep is not None:
        made_by.update(source_sha256=sha256_file(src.path),
                       representative={"n": int(len(rep.faces)), "data": Path(rep.data.source).name,
                                       "split": "Training", "sampling": "stratified", "seed": req.seed})
    made_by.update(labels_from=req.labels_from, ops=checked["ops"])
    if src is not None:
        made_by.update(softmax_added=softmax_added,
                       converter="TFLiteConverter.from_saved_model, TFLITE_BUILTINS_INT8, int8 I/O")
        try:
            import tensorflow as tf

            made_by["tensorflow"] = tf.__version__
        except ImportError:  # pragma: no cover - convert_int8 needed it
            pass
    return made_by


@dataclass
class ExportRequest:
    """One `export`: what to convert, where to write it, which faces to measure and evaluate on.
    `check` refuses, before anything loads, what would otherwise fail only after a minute of conversion."""

    model: Path
    out: Path | None = None  # NAME.tflite; with json_only, MODEL's own NAME.json is written
    input_range: tuple[float, float] | None = None  # None: from the run folder beside MODEL
    labels: tuple[str, ...] | None = None  # None: from the run folder, else FER2013's 7
    representative_data: str | Path | None = None
    representative_size: int = 500
    min_representative: int = MIN_REPRESENTATIVE
    eval_data: str | Path | None = None  # None: the representative data (json_only: no evaluation)
    eval_split: str = "PrivateTest"
    eval_limit: int = 0
    crop_margin: float = 0.0
    labels_from: str = "fer2013"
    seed: int = 0
    evaluate: bool = True
    json_only: bool = False
    cost_runs: int = COST_RUNS  # timed invocations for NAME.json's cost (0: none written)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ExportRequest:
        from model_export.predictors import parse_range

        labels = tuple(s.strip() for s in args.labels.split(",") if s.strip()) if args.labels else None
        eval_data = args.eval_data
        if args.json_only:  # a .tflite made elsewhere: evaluated on --eval-data (or the representative data) if given
            eval_data = None if args.no_evaluate else args.eval_data or args.representative_data
        return cls(Path(args.model), Path(args.out) if args.out else None, parse_range(args.input_range), labels,
                   args.representative_data, args.representative_size, MIN_REPRESENTATIVE, eval_data,
                   args.eval_split, args.eval_limit, args.crop_margin, args.labels_from, args.seed,
                   not args.no_evaluate, args.json_only, args.cost_runs)

    def check(self) -> None:
        if self.json_only:
            if self.model.suffix != ".tflite" or not self.model.is_file():
                raise ModelError(f"{self.model}: --json-only needs an existing NAME.tflite")
            if self.input_range is None:
                raise ConfigError(f"{self.model}: pass --input-range 0,1 | -1,1 | 0,255 (the range the model was "
                                  f"trained on)")
        else:
            missing = [f for f, v in (("--representative-data", self.representative_data), ("--out", self.out)) if not v]
            if missing:
                raise ConfigError(f"export needs {' and '.join(missing)} (only --json-only works without them)")
            _check_out(Path(self.out))
        if not 0.0 <= self.crop_margin <= 1.0:
            raise ModelError(f"--crop-margin {self.crop_margin}: must be between 0 and 1")


def export(req: ExportRequest, log=print) -> ExportResult:
    """Run an export request (checked here, once): a Keras model to int8, or with json_only the metadata
    of an int8 .tflite made elsewhere."""
    say = Clock(log)
    if not req.json_only:
        from model_export.predictors import run_folder_model

        req = replace(req, model=run_folder_model(req.model, say), out=Path(req.out) if req.out else None)
    req.check()
    return _metadata_only(req, say) if req.json_only else _export_keras(req, say)


def export_model(model_path: str | Path, out: str | Path, *, representative_data: str | Path, log=print,
                 **options) -> ExportResult:
    """Export MODEL to OUT (.tflite) and OUT's .json; returns both paths and the metadata. `options` are
    ExportRequest's fields (input_range, labels, representative_size, eval_data, ...).

    Both files appear (renamed from temporary names) only after conversion, the int8 check and
    the evaluation all succeeded: a failed export leaves no model that run/check/deploy would take.
    Without input_range/labels they come from the training run folder beside MODEL (its state.json).
    """
    return export(ExportRequest(Path(model_path), Path(out), representative_data=representative_data, **options), log)


def write_metadata_only(tflite: str | Path, *, log=print, **options) -> ExportResult:
    """`export --json-only`: the contract NAME.json for an int8 .tflite made elsewhere (checked, and
    evaluated when eval_data is given), so the edge can run it."""
    return export(ExportRequest(Path(tflite), json_only=True, **options), log)


def _export_keras(req: ExportRequest, say) -> ExportResult:
    model_path, out = req.model, Path(req.out)
    input_range, labels = _source_inputs(model_path, req.input_range, req.labels, say)
    cal = _representative_faces(req.representative_data, req.labels_from, req.representative_size, req.seed,
                                req.min_representative)
    src = _load_source(model_path, input_range, labels, say)
    cal = _prepared(cal, src)
    src, softmax_added = _with_probabilities(src, cal.faces, say)
    say(f"converting {model_path.name} ({src.height}x{src.width}, range {list(src.input_range)}, labels "
        f"{','.join(src.labels)}) to int8, value ranges from {len(cal.faces)} representative Training faces of "
        f"{Path(cal.data.source).name}{cal.fewer}")
    with quiet_stderr(CONVERTER_ERROR_DUMP):  # its C++ chatter; the error comes back as the exception
        tfl = convert_int8(src.model, cal.faces)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary(out)
    try:
        tmp.write_bytes(tfl)
        checked = check_int8(tmp, out)
        say(f"converted: {len(tfl) / 1024:.0f} KiB, int8 in and out, builtin ops only ({len(checked['ops'])} kinds)")
        info = _info_for(tmp, checked, src.labels, src.input_range, req.crop_margin)
        if req.evaluate:
            eds, ex, ey = _eval_split(cal.data, req.eval_data, req.representative_data, req.eval_split, req.eval_limit,
                                      req.labels_from)
            metrics_out = _evaluate(ex, ey, eds, src.labels, tmp, info, req.eval_split, say, src.model,
                                    src.input_range, str(model_path))
        else:  # labels of one's own with no faces to match them (deploy then says it cannot check the accuracy)
            say("--no-evaluate: the metadata will have no accuracy numbers")
            metrics_out = {}
        info = replace(info, metrics=metrics_out,
                       made_by=_made_by(req, info, checked, src=src, rep=cal, softmax_added=softmax_added))
        info = _cost(tmp, info, req.cost_runs, say)
        meta = _publish(tmp, out, info)
    finally:
        _remove_temporaries(out)
    _summary(out, meta, metrics_out, say)
    return ExportResult(out, meta, info)


def _metadata_only(req: ExportRequest, say) -> ExportResult:
    tflite = req.model
    labels = _check_labels(req.labels or FER_LABELS, say)
    checked = check_int8(tflite)
    inp, n_out = checked["input"], int(checked["output"]["shape"][-1])
    if len(inp["shape"]) != 4 or int(inp["shape"][3]) != 1:
        raise ModelError(f"{tflite}: input shape {list(inp['shape'])} is not (1, H, W, 1) grayscale")
    if n_out != len(labels):
        raise ModelError(f"{tflite}: model has {n_out} outputs but {len(labels)} labels ({','.join(labels)}); "
                         f"pass --labels with {n_out} names in the model's output order")
    info = _info_for(tflite, checked, labels, req.input_range, req.crop_margin)
    metrics_out: dict[str, Any] = {}
    if req.eval_data is not None:
        eds, ex, ey = _eval_split(None, req.eval_data, None, req.eval_split, req.eval_limit, req.labels_from)
        metrics_out = _evaluate(ex, ey, eds, labels, tflite, info, req.eval_split, say)
    else:
        say("no --eval-data: the metadata will have no accuracy numbers")
    info = replace(info, metrics=metrics_out, made_by=_made_by(req, info, checked))
    info = _cost(tflite, info, req.cost_runs, say)
    try:
        meta = _publish(None, tflite, info)
    finally:
        _temporary(metadata_path(tflite)).unlink(missing_ok=True)
    _summary(tflite, meta, metrics_out, say)
    return ExportResult(tflite, meta, info)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="MODEL.keras or legacy MODEL.h5: single grayscale input (H, W, 1); "
                                 "with --json-only an int8 MODEL.tflite")
    p.add_argument("--input-range", help="float range the model was trained on: 0,1  -1,1  0,255; required unless "
                                         "the model is in an `emotion-export train` run folder (its state.json says it)")
    p.add_argument("--labels", type=label_list,
                   help="comma-separated output order (default: the run folder's labels, else FER2013's 7)")
    p.add_argument("--representative-data", "--calibration-data", dest="representative_data",
                   help="the int8 representative set (its value ranges are measured on it): FER2013 .npz, fer2013.csv "
                        "or image folder, its Training split sampled; required except with --json-only "
                        "(--calibration-data is the old name)")
    p.add_argument("--representative-size", "--calibration-size", dest="representative_size",
                   type=int_in(MIN_REPRESENTATIVE), default=500,
                   help=f"representative faces for the int8 value ranges (at least {MIN_REPRESENTATIVE}; "
                        f"--calibration-size is the old name)")
    p.add_argument("--eval-data", help="data for the float vs int8 numbers in the metadata (default: the representative data)")
    p.add_argument("--eval-split", default="PrivateTest", choices=SPLITS)
    p.add_argument("--eval-limit", type=int_in(0), default=0, help="evaluate only the first N faces (0 = all)")
    p.add_argument("--no-evaluate", action="store_true",
                   help="skip the float vs int8 evaluation (for labels no evaluation data has a class folder for); "
                        "the metadata then has no accuracy numbers")
    p.add_argument("--labels-from", default="fer2013", choices=LABEL_SOURCES)
    p.add_argument("--crop-margin", type=float_in(0, 1), default=0.0, help="fraction added around the Haar box on the device")
    p.add_argument("--seed", type=random_seed, default=0)
    p.add_argument("--out", help="OUT.tflite (OUT.json is written beside it); required except with --json-only")
    p.add_argument("--cost-runs", type=_cost_runs, default=COST_RUNS,
                   help="timed invocations (one thread, after a warm-up) for the ms per face written into NAME.json's "
                        "'cost'; 0 = no cost")
    p.add_argument("--json-only", action="store_true",
                   help="MODEL is an int8 .tflite made elsewhere: check it and write only MODEL.json "
                        "(evaluated on --eval-data if given)")


def _cost_runs(text: str) -> int:
    """argparse type: 0 (no cost) or at least model_export.cost.MIN_RUNS."""
    from model_export.cost import MIN_RUNS

    n = int_in(0, 1_000_000)(text)
    if 0 < n < MIN_RUNS:
        raise argparse.ArgumentTypeError(f"{text}: 0 (no cost) or at least {MIN_RUNS}")
    return n


def run(args: argparse.Namespace) -> int:
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731 - progress on stderr, like Keras
    export(ExportRequest.from_args(args), log)
    return 0
