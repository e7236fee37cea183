"""Emotion classifier: one LiteRT interpreter, preprocessing taken from the model's own metadata.

The crop margin, input size and value range come from NAME.json (written by the export tool), the
quantization from the .tflite itself, so training and inference cannot disagree. Per frame: crop
(a view) -> resize into a preallocated buffer -> 256-entry lookup table into the input tensor.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge.service import notices
from edge.contract import CROP_MARGIN_RANGE, check_input_quantization, check_tensors, read_model_info
from edge.errors import FrameError, ModelError
from edge.frames import as_gray
from edge.preprocess import crop_face, quant_lut, resize_face, to_float
from edge.types import Box, Prediction

DEFAULT_MODEL = Path(__file__).resolve().parent / "models" / "emotion.tflite"
DEPLOYED_MODEL = Path("/var/lib/emotion-edge/models/emotion.tflite")
"""Where `emotion-export deploy` puts a model; used instead of the bundled one when present."""


def check_deployed(deployed: Path = DEPLOYED_MODEL) -> str | None:
    """Why the deployed model cannot be used (None: it is whole). A power cut after a deploy can leave
    an empty or truncated .tflite or a cut-off .json; read_model_info catches both (the JSON must parse
    and the .tflite's sha256 match it), at the cost of hashing about 1 MB once per start."""
    try:
        read_model_info(deployed)
    except ModelError as e:
        return str(e)
    return None


def resolve_model(path: str | Path = "", deployed: Path = DEPLOYED_MODEL) -> Path:
    """"" -> a deployed model if there is a whole one, else the bundled model (one warning, and a note for
    `status`, when a deployed one is damaged); otherwise the given path."""
    notices.clear("model")  # the note says what the latest choice was
    if str(path):
        p = Path(path).expanduser()
    else:
        p = DEFAULT_MODEL
        if deployed.is_file():
            why = check_deployed(deployed)
            if why is None:
                p = deployed
            else:
                msg = f"deployed model damaged ({why}); running the bundled model {DEFAULT_MODEL} instead"
                logging.getLogger(__name__).warning("%s", msg)
                notices.note("model", msg)
    if not p.is_file():
        what = "bundled model" if not str(path) else "model"
        raise ModelError(f"{p}: {what} not found (set classify.model to a NAME.tflite with its NAME.json)")
    return p


def load_interpreter(path: str | Path, num_threads: int = 1) -> Any:
    """A ready (allocated) interpreter from ai_edge_litert, or tflite_runtime where only that exists."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter  # type: ignore[no-redef]
        except ImportError:
            raise ModelError("no TFLite runtime installed: pip install ai-edge-litert (or tflite-runtime)") from None
    try:
        with _quiet_native_info():
            interp = Interpreter(model_path=str(path), num_threads=int(num_threads))
            interp.allocate_tensors()
    except (ValueError, RuntimeError) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelError(f"{path}: not a usable TFLite model ({msg})") from None
    return interp


@contextlib.contextmanager
def _quiet_native_info():
    """LiteRT's C++ side prints "INFO: Created TensorFlow Lite XNNPACK delegate" to fd 2 on every
    start; drop that line (it is noise in `run` and in the journal) and pass everything else on."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            rest = [ln for ln in tmp.read().decode(errors="replace").splitlines(keepends=True)
                    if not ln.startswith("INFO: Created TensorFlow Lite")]
            if rest:
                sys.stderr.write("".join(rest))


MULTI_CROP_OFFSETS = (-0.05, 0.0, 0.05, 0.10)
"""Multi-crop margins, added to the model's own crop margin: one photo's Haar box can sit a few per cent
off, and the answer moves with it, so a photo is read at four framings and averaged (measured in
docs/CALIBRATION.md, "Multi-crop"). A live camera averages over frames instead (the mood smoother)."""


def multi_crop_margins(margin: float) -> tuple[float, ...]:
    """The margins of the four framings around a model's own crop margin (never below the range's floor)."""
    return tuple(max(CROP_MARGIN_RANGE[0], margin + d) for d in MULTI_CROP_OFFSETS)


class EmotionClassifier:
    """Face crop -> probabilities over the model's labels (float32, sum 1)."""

    def __init__(self, model_path: str | Path = "", num_threads: int = 1, flip_average: bool = False,
                 multi_crop: bool = False, crop_margin: float | None = None) -> None:
        self.path = resolve_model(model_path)
        self.flip_average = flip_average  # also classify the mirror image and average: +1 point, 2x time
        self.info = read_model_info(self.path)  # refuses missing/corrupt JSON and sha256 mismatch
        self.labels: tuple[str, ...] = self.info.labels
        where = str(self.path)
        self._interp = load_interpreter(self.path, num_threads)
        ins, outs = self._interp.get_input_details(), self._interp.get_output_details()
        if len(ins) != 1 or len(outs) != 1:
            raise ModelError(f"{where}: expected 1 input and 1 output tensor, model has {len(ins)} and {len(outs)}")
        inp, out = ins[0], outs[0]
        in_dtype = np.dtype(inp["dtype"]).name
        n_out = int(np.prod(out["shape"][1:])) if len(out["shape"]) > 1 else int(np.prod(out["shape"]))
        check_tensors(self.info, tuple(int(v) for v in inp["shape"]), in_dtype, n_out, where)
        spec = self.info.input
        self._h, self._w = spec.height, spec.width
        # crop_margin overrides the JSON's for measurements (calibration-report, framing); devices use the JSON's
        margin = spec.crop_margin if crop_margin is None else float(crop_margin)
        lo, hi = CROP_MARGIN_RANGE
        if not lo <= margin <= hi:
            raise ModelError(f"crop margin {margin:g}: must be between {lo:g} and {hi:g}")
        # with multi_crop, classify() averages one crop per margin
        self.margins: tuple[float, ...] = multi_crop_margins(margin) if multi_crop else (margin,)
        if in_dtype == "float32":
            self._lut = to_float(np.arange(256, dtype=np.uint8), spec.range)
        else:
            scale, zp = inp["quantization"]
            if not scale or scale <= 0:
                raise ModelError(f"{where}: {in_dtype} input tensor has no quantization scale")
            check_input_quantization(self.info, float(scale), int(zp), where)
            self._lut = quant_lut(spec.range, float(scale), int(zp), np.dtype(in_dtype))
        out_scale, out_zp = out.get("quantization", (0.0, 0))
        self._out_quant = np.dtype(out["dtype"]).kind in "iu"
        if self._out_quant and (not out_scale or out_scale <= 0):
            raise ModelError(f"{where}: quantized output tensor has no scale")
        self._out_scale, self._out_zp = np.float32(out_scale or 1.0), np.float32(out_zp or 0)
        self._in_fn = self._interp.tensor(inp["index"])  # hold the accessor, never the view, across invoke
        self._out_fn = self._interp.tensor(out["index"])
        self._buf = np.empty((self._h, self._w), np.uint8)
        self._flipped = np.empty((self._h, self._w), np.uint8)
        self._probs = np.empty(n_out, np.float32)
        self._probs2 = np.empty(n_out, np.float32)
        self._sum = np.empty(n_out, np.float32)

    def classify(self, gray: np.ndarray, box: Box) -> Prediction:
        """Crop the box (grown by the model's crop margin; with multi_crop, several margins averaged),
        classify; FrameError for a bad frame or box."""
        gray = as_gray(gray)
        try:
            x, y, w, h = (int(v) for v in box)
        except (TypeError, ValueError):
            raise FrameError(f"box {box!r} is not (x, y, w, h)") from None
        if w <= 0 or h <= 0:
            raise FrameError(f"box {box!r} has no area")
        face = crop_face(gray, (x, y, w, h), self.margins[0])
        if face.size == 0:
            raise FrameError(f"box {box!r} lies outside the {gray.shape[1]}x{gray.shape[0]} frame")
        if len(self.margins) == 1:
            return self._run(face)
        self._sum[...] = self._probs_of(face)
        for m in self.margins[1:]:
            self._sum += self._probs_of(crop_face(gray, (x, y, w, h), m))
        self._sum *= np.float32(1.0 / len(self.margins))
        return self._finish(self._sum)

    def classify_face(self, face_img: np.ndarray) -> Prediction:
        """Classify an already-cropped face (any size; resized to the model input)."""
        return self._run(as_gray(face_img, "face image"))

    def _run(self, face: np.ndarray) -> Prediction:
        return self._finish(self._probs_of(face))

    def _probs_of(self, face: np.ndarray) -> np.ndarray:
        """One crop's probabilities (mirror averaged in with flip_average), in a reused buffer."""
        if self._interp is None:
            raise ModelError(f"{self.path}: classifier is closed")
        resize_face(face, self._w, self._h, out=self._buf)
        p = self._invoke(self._buf, self._probs)
        if self.flip_average:
            cv2.flip(self._buf, 1, dst=self._flipped)
            p += self._invoke(self._flipped, self._probs2)
            p *= np.float32(0.5)
        return p

    def _finish(self, p: np.ndarray) -> Prediction:
        """The model's own answer (per-person calibration is the next stage: edge.calibration)."""
        return Prediction(p.copy(), self.labels)

    def _invoke(self, pixels: np.ndarray, p: np.ndarray) -> np.ndarray:
        """One interpreter run on a prepared uint8 face; fills and returns `p` (sums to 1)."""
        view = self._in_fn()
        # cv2.LUT writes straight into the input tensor; np.take would first copy the pixels to
        # int64 indices (18 KB per call, measured with tracemalloc)
        cv2.LUT(pixels, self._lut, dst=view.reshape(self._h, self._w))
        del view
        self._interp.invoke()
        raw = self._out_fn().reshape(-1)
        if self._out_quant:
            np.subtract(raw, self._out_zp, out=p, casting="unsafe")
            p *= self._out_scale
        else:
            p[...] = raw
        del raw
        total = float(p.sum())
        if not np.isfinite(total):  # NaN/inf: a broken model must not steer the mood or the LED
            raise FrameError(f"{self.path}: model output is not a number (NaN or infinity)")
        np.clip(p, 0.0, None, out=p)
        total = float(p.sum())
        if total <= 0.0:
            p.fill(1.0 / p.size)  # degenerate output: say "no idea" rather than crash
        else:
            p /= np.float32(total)
        return p

    def close(self) -> None:
        """Drop the interpreter; safe to call twice."""
        self._interp = None
        self._in_fn = self._out_fn = None  # type: ignore[assignment]

    def __enter__(self) -> "EmotionClassifier":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
