"""One `predict(uint8 faces) -> probabilities` for Keras and TFLite models, preprocessing as on the edge.

TFLite models are run like edge/classify.py runs them: resize_face, quantize through the
256-entry LUT from the model's own scale/zero point, invoke one face at a time, dequantize,
clip at 0 and renormalise.
"""
from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.contract import FER_LABELS, ModelInfo, read_model_info
from edge.errors import ModelError
from edge.preprocess import quant_lut, to_float
from model_export.inputs import prepare_float, resize_all

KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")


def parse_range(text: str | None) -> tuple[float, float] | None:
    """'0,1' | '-1,1' | '0,255' -> (lo, hi); the only ranges the contract allows."""
    from edge.contract import RANGES
    from edge.errors import ConfigError

    if text is None or text == "":
        return None
    try:
        lo, hi = (float(v) for v in str(text).split(","))
    except ValueError:
        raise ConfigError(f"--input-range {text!r}: expected two numbers like 0,1 or -1,1 or 0,255") from None
    if (lo, hi) not in RANGES:
        raise ConfigError(f"--input-range {text!r}: must be one of 0,1  -1,1  0,255")
    return lo, hi


RUN_STATE = "state.json"
ZIP_MAGIC, HDF5_MAGIC = b"PK\x03\x04", b"\x89HDF\r\n\x1a\n"


@dataclass(frozen=True)
class RunInfo:
    """What the `emotion-export train` run folder beside a Keras model says about it."""

    state: Path
    labels: tuple[str, ...]
    input_range: tuple[float, float]


def write_run_info(out: Path, info: RunInfo, args: dict) -> None:
    """state.json beside OUT, for a model made from trained ones (ensemble, rehead), so `export` and
    `evaluate` find its labels and input range; only when the folder has none (never overwrite a run's)."""
    state = out.parent / RUN_STATE
    if state.exists():
        return
    state.write_text(json.dumps({"args": args, "labels": list(info.labels), "input_range": list(info.input_range)},
                                indent=1) + "\n")


def run_info(model_path: str | Path) -> RunInfo | None:
    """The training run that made MODEL (its folder's state.json), or None for a model from elsewhere.

    Runs made before labels/range were recorded trained all 7 FER classes on [0, 1] (train.py
    has always fed `to_float(pixels, (0, 1))`).
    """
    state = Path(model_path).parent / RUN_STATE
    try:
        data = json.loads(state.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("args"), dict):
        return None
    labels = data.get("labels") or list(FER_LABELS)
    rng = data.get("input_range") or [0.0, 1.0]
    try:
        return RunInfo(state, tuple(str(v) for v in labels), (float(rng[0]), float(rng[1])))
    except (TypeError, ValueError, IndexError):
        return None


def same_run_inputs(known: list[tuple[Path, RunInfo]]) -> None:
    """Refuse checkpoints whose run folders say they were trained on other labels or another input
    range than the first: their outputs or inputs would not line up (average, teacher)."""
    for c, i in known[1:]:
        if (i.labels, i.input_range) != (known[0][1].labels, known[0][1].input_range):
            raise ModelError(f"{c}: trained on other labels or another input range than {known[0][0]} (their run folders say so)")


def check_keras_out(out: Path, inputs: list[Path], what: str) -> None:
    """--out of a command that writes a new Keras model from others (average, ensemble): one-line refusals."""
    from edge.errors import ConfigError

    if out.suffix != ".keras":
        raise ConfigError(f"--out {out}: must end in .keras")
    if out.is_dir():
        raise ConfigError(f"--out {out}: is a folder")
    if out.resolve() in {c.resolve() for c in inputs}:
        raise ConfigError(f"--out {out}: is one of the checkpoints; write the {what} to a new file")


def run_folder_model(path: str | Path, log=None) -> Path:
    """PATH itself, or for an `emotion-export train` run folder its best.keras (said through `log`); any other
    folder (a SavedModel is left to load_keras) is refused naming the file to pass."""
    p = Path(path)
    if not p.is_dir() or (p / "saved_model.pb").is_file():
        return p
    best = p / "best.keras"
    if best.is_file():
        if log is not None:
            log(f"{p} is a run folder: using its best.keras")
        return best
    if (p / RUN_STATE).is_file():
        raise ModelError(f"{p}: a run folder without best.keras (stopped before its first epoch ended?); "
                         f"pass {best} once it exists, or another model file")
    raise ModelError(f"{p}: a folder, not a model file; pass the model itself (RUNDIR/best.keras for a "
                     f"`train` run folder, or a .keras, .h5 or .tflite file)")


def keras_inputs(path: str | Path, value_range: tuple[float, float] | None, labels: tuple[str, ...] | None,
                 flag: str = "--input-range") -> tuple[tuple[float, float], tuple[str, ...] | None]:
    """(range, labels) for a Keras model: as given, else from its training run folder; a Keras file
    records no input range, so with neither the user must say it (guessing gives plausible nonsense)."""
    info = run_info(path) if value_range is None or labels is None else None
    if value_range is None:
        if info is None:
            from edge.errors import ConfigError

            raise ConfigError(f"{path}: a Keras model does not record the input range it was trained on; pass "
                              f"{flag} 0,1 | -1,1 | 0,255 (models from `emotion-export train` read it from their run folder)")
        value_range = info.input_range
    if labels is None and info is not None:
        labels = info.labels
    return value_range, labels


def load_keras(path: str | Path, compile: bool = False):
    """keras.models.load_model, by default without compiling (`compile=True` keeps the optimizer, to resume
    training); legacy .h5 included. Errors name the file and tell a missing file, a SavedModel folder and
    a damaged file apart (each needs something else)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    path = Path(path)
    if path.is_dir():
        if (path / "saved_model.pb").is_file():
            raise ModelError(f"{path}: a TensorFlow SavedModel folder, not a Keras file; load it where it was made and "
                             f"save it as .keras (model.save('model.keras')), then export that")
        raise ModelError(f"{path}: a folder, not a Keras model file (.keras or .h5)")
    if not path.is_file():
        raise ModelError(f"{path}: no such model file")
    if path.suffix.lower() not in KERAS_SUFFIXES:
        raise ModelError(f"{path}: not a Keras model (expected .keras or .h5)")
    try:
        from model_export.quiet import import_keras

        keras = import_keras()
    except ImportError:
        raise ModelError("TensorFlow/Keras is not installed: pip install 'emotion-edge[export]'") from None
    problem = _keras_container_problem(path)
    if problem:  # Keras itself says "File not found" for a damaged .keras zip
        raise ModelError(f"{path}: not a readable Keras model ({problem})")
    try:
        return keras.models.load_model(path, compile=compile)
    except Exception as e:  # Keras raises many types; the user needs the file and the first line
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise ModelError(f"{path}: not a readable Keras model ({first})") from None



def _keras_container_problem(path: Path) -> str | None:
    """Why the file cannot be a Keras model (.keras is a zip, .h5 an HDF5 file), or None."""
    import zipfile

    if path.suffix.lower() == ".keras":
        return None if zipfile.is_zipfile(path) else "a .keras file is a zip archive and this one is not, or it is damaged"
    with open(path, "rb") as f:
        head = f.read(2056)
    if not any(head[o:o + 8] == HDF5_MAGIC for o in (0, 512, 1024, 2048)):  # HDF5 may follow a user block
        return "a .h5 file is HDF5 and this one is not"
    return None


def keras_input_hw(model, where: str) -> tuple[int, int]:
    """(height, width) of a single grayscale input (N, H, W, 1); anything else is refused."""
    try:
        model.inputs, model.outputs
    except (AttributeError, ValueError):  # a Sequential saved before it was built or called
        raise ModelError(f"{where}: the model has no defined input; build it with keras.Input((H, W, 1)) "
                         f"and save it again") from None
    if len(model.inputs) != 1:
        raise ModelError(f"{where}: model has {len(model.inputs)} inputs; a single image input is required")
    shape = tuple(model.inputs[0].shape)
    if len(shape) != 4 or shape[3] != 1 or shape[1] is None or shape[2] is None:
        raise ModelError(f"{where}: input shape {list(shape)} is not (H, W, 1) grayscale with a fixed size")
    if len(model.outputs) != 1 or len(model.outputs[0].shape) != 2:
        raise ModelError(f"{where}: model must have one output of shape (N, classes)")
    return int(shape[1]), int(shape[2])


class KerasPredictor:
    """A float Keras classifier fed `to_float(resize_face(face), range)`."""

    kind = "keras"

    def __init__(self, model, value_range: tuple[float, float], labels: tuple[str, ...] = FER_LABELS, name: str = "keras"):
        self.model = load_keras(model) if isinstance(model, (str, Path)) else model
        self.name = str(name if not isinstance(model, (str, Path)) else model)
        self.height, self.width = keras_input_hw(self.model, self.name)
        self.range = value_range
        self.labels = tuple(labels)
        n_out = int(self.model.outputs[0].shape[-1])
        if n_out != len(self.labels):
            raise ModelError(f"{self.name}: model has {n_out} outputs but {len(self.labels)} labels were given")

    def inputs(self, images: np.ndarray) -> np.ndarray:
        return prepare_float(images, self.width, self.height, self.range)

    def predict(self, images: np.ndarray, batch: int = 256) -> np.ndarray:
        x = self.inputs(images)
        out = [np.asarray(self.model.predict_on_batch(x[i:i + batch])) for i in range(0, len(x), batch)]
        return _normalise(np.concatenate(out) if out else np.zeros((0, len(self.labels)), np.float32))

    def latency_ms(self, images: np.ndarray) -> np.ndarray:
        """Per-face ms for preprocessing + predict_on_batch on a batch of one."""
        x = self.inputs(images[:1])
        self.model.predict_on_batch(x)  # warm-up (traces the function)
        times = np.empty(len(images))
        for i, im in enumerate(images):
            t = time.perf_counter()
            self.model.predict_on_batch(self.inputs(im[None]))
            times[i] = time.perf_counter() - t
        return times * 1e3


class TFLitePredictor:
    """A .tflite model with its NAME.json, run face by face exactly like the edge runs it."""

    kind = "tflite"

    def __init__(self, path: str | Path, num_threads: int = 1, info: ModelInfo | None = None):
        self.path = Path(path)
        self.name = str(path)
        self.info = info or read_model_info(self.path)
        self.labels = self.info.labels
        self.height, self.width = self.info.input.height, self.info.input.width
        self.range = self.info.input.range
        self.num_threads = int(num_threads)
        self.interp = load_interpreter(self.path, num_threads)
        inp, out = self.interp.get_input_details()[0], self.interp.get_output_details()[0]
        from edge.contract import check_tensors

        check_tensors(self.info, tuple(inp["shape"]), np.dtype(inp["dtype"]).name, int(out["shape"][-1]), self.name)
        self._in, self._out = inp["index"], out["index"]
        self.in_dtype = np.dtype(inp["dtype"])
        if self.in_dtype == np.float32:
            self.lut = to_float(np.arange(256, dtype=np.uint8), self.range)
        else:
            scale, zp = inp["quantization"]
            self.lut = quant_lut(self.range, scale, zp, self.in_dtype)
        self.out_scale, self.out_zp = out["quantization"]
        self.out_quantized = np.dtype(out["dtype"]) != np.float32
        self._buf = np.zeros((1, self.height, self.width, 1), self.in_dtype)

    def _one(self, face: np.ndarray) -> np.ndarray:
        self._buf[0, :, :, 0] = self.lut[face]
        self.interp.set_tensor(self._in, self._buf)
        self.interp.invoke()
        raw = self.interp.get_tensor(self._out)[0]
        if self.out_quantized:
            return (raw.astype(np.float32) - self.out_zp) * np.float32(self.out_scale)
        return raw.astype(np.float32)

    def predict(self, images: np.ndarray) -> np.ndarray:
        faces = resize_all(images, self.width, self.height)
        out = np.empty((len(faces), len(self.labels)), np.float32)
        for i, f in enumerate(faces):
            out[i] = self._one(f)
        return _normalise(out)

    def latency_ms(self, images: np.ndarray) -> np.ndarray:
        """Per-face ms for resize + LUT quantization + invoke + dequantize (one thread)."""
        self._one(resize_all(images[:1], self.width, self.height)[0])
        times = np.empty(len(images))
        for i, im in enumerate(images):
            t = time.perf_counter()
            self._one(resize_all(im[None], self.width, self.height)[0])
            times[i] = time.perf_counter() - t
        return times * 1e3

    def close(self) -> None:
        self.interp = None


def load_interpreter(path: str | Path, num_threads: int = 1, delegates: bool = True):
    """ai_edge_litert's Interpreter (tflite_runtime as a fallback), tensors allocated.

    delegates=False keeps XNNPACK from folding ops into one DELEGATE node, so the op list is real.
    """
    try:
        from ai_edge_litert import interpreter as lite
    except ImportError:
        try:
            from tflite_runtime import interpreter as lite  # type: ignore[no-redef]
        except ImportError:
            raise ModelError("no TFLite runtime: pip install ai-edge-litert") from None
    kw = {} if delegates else {"experimental_op_resolver_type": lite.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}
    try:
        interp = lite.Interpreter(model_path=str(path), num_threads=num_threads, **kw)
        interp.allocate_tensors()
    except (ValueError, RuntimeError) as e:
        raise ModelError(f"{path}: {_load_failure(str(e))}") from None
    return interp


def _load_failure(text: str) -> str:
    """Why LiteRT refused a model, in one line: Flex and custom ops named as such."""
    if "Select TensorFlow op" in text:
        flex = sorted(set(re.findall(r"\((Flex\w+)\)", text)))
        return (f"contains Flex (SELECT_TF_OPS) ops{' ' + ', '.join(flex) if flex else ''}; "
                f"the device's LiteRT cannot run them")
    custom = re.search(r"unresolved custom op: (\w+)", text)
    if custom:
        return f"contains the custom op {custom.group(1)}; the device's LiteRT cannot run it"
    first = text.strip().splitlines()[0][:200] if text.strip() else "unknown error"
    return f"cannot load TFLite model ({first})"


def _normalise(p: np.ndarray) -> np.ndarray:
    p = np.clip(p.astype(np.float32), 0.0, None)
    s = p.sum(axis=1, keepdims=True)
    return np.where(s > 0, p / np.where(s > 0, s, 1), np.float32(1.0 / max(1, p.shape[1]))).astype(np.float32)


def open_predictor(path: str | Path, value_range: tuple[float, float] | None = None,
                   labels: tuple[str, ...] | None = None, num_threads: int = 1, flag: str = "--input-range"):
    """A predictor for MODEL: .tflite reads its metadata; Keras needs the input range (given or from its run)."""
    p = run_folder_model(path)
    if p.suffix.lower() == ".tflite":
        return TFLitePredictor(p, num_threads)
    if p.suffix.lower() in KERAS_SUFFIXES or p.is_dir():
        value_range, labels = keras_inputs(p, value_range, labels, flag)
        return KerasPredictor(p, value_range, labels or FER_LABELS)
    raise ModelError(f"{p}: unknown model type (expected .keras, .h5 or .tflite)")
