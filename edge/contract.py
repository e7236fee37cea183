"""The model contract: NAME.tflite + NAME.json side by side, written by model_export, read by edge.

The JSON is the single source of truth for preprocessing; the edge never guesses.
"""
from __future__ import annotations

import hashlib
import json
import datetime as _dt
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edge.errors import ModelError
from edge.safeio import METADATA_MAX_BYTES, read_text

CROP_MARGIN_RANGE = (-0.1, 1.0)
"""Crop margins a classifier takes as an override when measuring (calibration-report, framing): tighter
than -0.1 cuts off the mouth. A model's JSON holds 0 to 1."""

FORMAT = 1
FER_LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
RANGES = {(0.0, 1.0), (-1.0, 1.0), (0.0, 255.0)}
DTYPES = ("int8", "uint8", "float32")
MAX_LABELS = 64
MS_PER_FACE_RANGE = (0.0, 60_000.0)  # exclusive low: a measured time is never 0
MAX_COST_THREADS = 256
MAX_COST_TEXT = 200


@dataclass(frozen=True)
class Cost:
    """What one face costs: median ms of LiteRT invoke on `threads` threads of `cpu` (measured by
    `emotion-export export` or `emotion-export cost`), so models are chosen with their price in view."""

    ms_per_face: float
    threads: int = 1
    cpu: str = ""
    measured: str = ""  # YYYY-MM-DD
    runtime: str = ""  # e.g. "ai_edge_litert 2.1.0"
    invocations: int = 0  # how many timed runs the median is of (0: not said)

    def describe(self) -> str:
        """One line for check, bench and evaluate."""
        on = f" of {self.cpu}" if self.cpu else ""
        extra = ", ".join(x for x in (self.runtime, f"{self.invocations} runs" if self.invocations else "",
                                      f"measured {self.measured}" if self.measured else "") if x)
        return (f"{self.ms_per_face:.2f} ms per face on {self.threads} thread{'s' if self.threads != 1 else ''}{on}"
                + (f" ({extra})" if extra else ""))


def _cost_text(c: dict, key: str, where: str) -> str:
    v = c.get(key, "")
    if not isinstance(v, str) or len(v) > MAX_COST_TEXT or not v.isprintable():
        raise ModelError(f"{where}: 'cost' {key!r} must be a printable string of at most {MAX_COST_TEXT} characters")
    return v


def parse_cost(c: Any, where: str) -> Cost:
    """The optional `cost` object; every problem names the file and the key."""
    if not isinstance(c, dict):
        raise ModelError(f"{where}: key 'cost' must be a JSON object, not {type(c).__name__}")
    ms = c.get("ms_per_face")
    lo, hi = MS_PER_FACE_RANGE
    if not isinstance(ms, (int, float)) or isinstance(ms, bool) or not (lo < ms <= hi):  # NaN fails both
        raise ModelError(f"{where}: 'cost' 'ms_per_face' must be a number above {lo:g} and at most {hi:g}, got {ms!r}")
    threads = c.get("threads", 1)
    if not isinstance(threads, int) or isinstance(threads, bool) or not 1 <= threads <= MAX_COST_THREADS:
        raise ModelError(f"{where}: 'cost' 'threads' must be a whole number from 1 to {MAX_COST_THREADS}, got {threads!r}")
    n = c.get("invocations", 0)
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise ModelError(f"{where}: 'cost' 'invocations' must be a whole number of at least 0, got {n!r}")
    measured = _cost_text(c, "measured", where)
    if measured:
        try:
            _dt.date.fromisoformat(measured)
        except ValueError:
            raise ModelError(f"{where}: 'cost' 'measured' must be a date, YYYY-MM-DD, got {measured!r}") from None
        if len(measured) != 10:
            raise ModelError(f"{where}: 'cost' 'measured' must be a date, YYYY-MM-DD, got {measured!r}")
    return Cost(float(ms), threads, _cost_text(c, "cpu", where), measured, _cost_text(c, "runtime", where), n)


@dataclass(frozen=True)
class InputSpec:
    """What the network expects: size, dtype, float range before quantization, crop margin."""

    height: int
    width: int
    channels: int = 1
    dtype: str = "int8"
    range: tuple[float, float] = (0.0, 1.0)
    crop_margin: float = 0.0


@dataclass(frozen=True)
class ModelInfo:
    labels: tuple[str, ...]
    input: InputSpec
    sha256: str
    quantization: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    made_by: dict[str, Any] = field(default_factory=dict)
    format: int = FORMAT
    cost: Cost | None = None  # optional: older JSONs have none

    def to_json(self) -> str:
        d = asdict(self)
        d["labels"] = list(self.labels)
        d["input"]["range"] = list(self.input.range)
        order = ["format", "labels", "input", "quantization", "sha256", "metrics"]
        order += ["cost"] if self.cost is not None else []
        order += ["made_by"]
        return json.dumps({k: d[k] for k in order}, indent=2) + "\n"


def metadata_path(model_path: str | Path) -> Path:
    """NAME.tflite -> NAME.json."""
    return Path(model_path).with_suffix(".json")


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _need(d: dict, key: str, typ: type | tuple[type, ...], where: str) -> Any:
    if key not in d:
        raise ModelError(f"{where}: missing key {key!r}")
    v = d[key]
    if not isinstance(v, typ) or isinstance(v, bool):
        raise ModelError(f"{where}: key {key!r} has the wrong type ({type(v).__name__})")
    return v


def parse_model_info(data: Any, where: str) -> ModelInfo:
    """Validate a decoded metadata object; every problem names the file and the key."""
    if not isinstance(data, dict):
        raise ModelError(f"{where}: metadata must be a JSON object")
    fmt = _need(data, "format", int, where)
    if fmt != FORMAT:
        raise ModelError(f"{where}: metadata format {fmt} is not supported (this emotion-edge reads format {FORMAT})")
    labels = _need(data, "labels", list, where)
    if len(labels) < 2 or not all(isinstance(x, str) and x for x in labels) or len(set(labels)) != len(labels):
        raise ModelError(f"{where}: 'labels' must be a list of at least 2 distinct names")
    if len(labels) > MAX_LABELS or not all(x.isprintable() and x.strip() == x and len(x) <= 64 for x in labels):
        # labels reach terminals, the journal and the LED colour table: no newlines or escapes
        raise ModelError(f"{where}: 'labels' must be at most {MAX_LABELS} printable names of up to 64 characters, "
                         "without control characters or surrounding spaces")
    if "none" in labels:
        raise ModelError(f"{where}: 'none' is reserved for 'no face' and cannot be a label")
    inp = _need(data, "input", dict, where)
    h, w = _need(inp, "height", int, where + " input"), _need(inp, "width", int, where + " input")
    ch = inp.get("channels", 1)
    if not (8 <= h <= 512 and 8 <= w <= 512) or ch != 1 or isinstance(ch, bool):
        raise ModelError(f"{where}: input must be grayscale (channels 1), 8..512 px; got {h}x{w}x{ch}")
    dtype = inp.get("dtype", "int8")
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise ModelError(f"{where}: input dtype {dtype!r} is not one of {', '.join(DTYPES)}")
    rng = inp.get("range", [0, 1])
    if not (isinstance(rng, list) and len(rng) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in rng)):
        raise ModelError(f"{where}: input 'range' must be [low, high]")
    rng_t = (float(rng[0]), float(rng[1]))
    if rng_t not in RANGES:
        raise ModelError(f"{where}: input 'range' {list(rng_t)} is not one of [0,1], [-1,1], [0,255]")
    margin = inp.get("crop_margin", 0.0)
    if not isinstance(margin, (int, float)) or isinstance(margin, bool) or not (0.0 <= margin <= 1.0) or math.isnan(margin):
        raise ModelError(f"{where}: input 'crop_margin' must be between 0 and 1")
    sha = _need(data, "sha256", str, where)
    extra = {}
    for key in ("quantization", "metrics", "made_by"):  # optional, but objects when present
        v = data.get(key)
        if v is not None and not isinstance(v, dict):
            raise ModelError(f"{where}: key {key!r} must be a JSON object, not {type(v).__name__}")
        extra[key] = dict(v or {})
    cost = parse_cost(data["cost"], where) if data.get("cost") is not None else None
    return ModelInfo(
        labels=tuple(labels),
        input=InputSpec(h, w, 1, dtype, rng_t, float(margin)),
        sha256=sha,
        format=fmt,
        cost=cost,
        **extra,
    )


def read_model_info(model_path: str | Path, check_sha: bool = True) -> ModelInfo:
    """Load and check NAME.json beside NAME.tflite; refuse a missing, corrupt or mismatched file."""
    model_path = Path(model_path)
    if not model_path.is_file():
        raise ModelError(f"{model_path}: model file not found")
    meta = metadata_path(model_path)
    if not meta.is_file():
        raise ModelError(f"{meta}: model metadata not found (every .tflite needs its .json from emotion-export)")
    try:
        data = json.loads(read_text(meta, METADATA_MAX_BYTES))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:
        raise ModelError(f"{meta}: unreadable metadata ({e})") from None
    info = parse_model_info(data, str(meta))
    if check_sha:
        actual = sha256_file(model_path)
        if actual != info.sha256:
            raise ModelError(f"{model_path}: sha256 {actual[:12]}… does not match its metadata ({info.sha256[:12]}…); re-export or copy both files together")
    return info


def write_model_info(model_path: str | Path, info: ModelInfo) -> Path:
    """Write NAME.json atomically next to the model."""
    meta = metadata_path(model_path)
    tmp = meta.with_suffix(".json.tmp")
    tmp.write_text(info.to_json(), encoding="utf-8")
    tmp.replace(meta)
    return meta


def check_tensors(info: ModelInfo, input_shape: tuple[int, ...], input_dtype: str, n_outputs: int, where: str) -> None:
    """The .tflite must agree with its metadata: input shape, dtype and number of labels."""
    want = (1, info.input.height, info.input.width, 1)
    shape = tuple(int(v) for v in input_shape)
    if len(shape) == 3:
        shape = shape + (1,)
    if shape != want:
        raise ModelError(f"{where}: model input shape {list(input_shape)} does not match metadata {list(want)}")
    if input_dtype != info.input.dtype:
        raise ModelError(f"{where}: model input dtype {input_dtype} does not match metadata {info.input.dtype}")
    if n_outputs != len(info.labels):
        raise ModelError(f"{where}: model has {n_outputs} outputs but metadata lists {len(info.labels)} labels")


def check_input_quantization(info: ModelInfo, scale: float, zero_point: int, where: str) -> None:
    """An int8/uint8 input must be quantized for the metadata's range, or every pixel is scaled wrong.

    The values the tensor can hold, (q - zero_point) * scale over the dtype's range, must span the
    declared range (to within a tenth of it): [0,255] in the JSON of a model quantized for 0..1 is refused.
    """
    if info.input.dtype not in ("int8", "uint8"):
        return
    qmin, qmax = (-128, 127) if info.input.dtype == "int8" else (0, 255)
    lo, hi = info.input.range
    got_lo, got_hi = (qmin - zero_point) * scale, (qmax - zero_point) * scale
    tol = 0.1 * (hi - lo)
    if not (math.isfinite(got_lo) and math.isfinite(got_hi)) or abs(got_lo - lo) > tol or abs(got_hi - hi) > tol:
        raise ModelError(f"{where}: input is quantized for {got_lo:.4g}..{got_hi:.4g} but the metadata says "
                         f"range [{lo:g}, {hi:g}]; re-export the model or fix 'range' in its .json")
