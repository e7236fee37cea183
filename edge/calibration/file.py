"""The calibration file: one person's resting face (the *baseline*, mean log-probabilities of their
neutral face) for one model, as small readable JSON (`KIND`, `VERSION` 1), bound to the model it was
made with (its sha256): the baseline is in that model's output space and means nothing for another
model. How it is applied: edge.calibration.apply.
"""
from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edge.errors import EdgeError
from edge.safeio import UnsafeFileError, read_bytes, write_atomic

log = logging.getLogger("emotion-edge")

KIND = "emotion-edge calibration"
VERSION = 1
PROB_FLOOR = 1e-3
"""Probabilities are floored before the log: an int8 output reads 0 for anything below 1/256."""
MAX_FILE_BYTES = 64 * 1024
SMILE_MIN = 0.5
"""A face read happy at least this strongly is smiling, not at rest: calibrating on it would make the
person's smiles read neutral. (Resting faces that read sad, angry or fearful are what calibration is
for.) Measured: jaffe-tune's neutral photos read happy at most 0.15 (any framing), FER2013 PublicTest
happy faces reach 0.5 in 82 % of cases, its noisier neutral faces in 5 %."""


class CalibrationError(EdgeError):
    """A calibration file that cannot be used, or a calibration that could not be made."""


@dataclass(frozen=True)
class Calibration:
    """One person's resting-face baseline for one model."""

    model_sha256: str
    labels: tuple[str, ...]
    baseline: np.ndarray          # mean natural-log probabilities of the neutral face, model label order
    created: float                # unix time
    frames: int                   # faces averaged
    source: str                   # "camera" or "photos"

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": KIND, "version": VERSION, "model_sha256": self.model_sha256,
            "labels": list(self.labels),
            "baseline": {lab: round(float(v), 5) for lab, v in zip(self.labels, self.baseline)},
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.created)),
            "created_unix": round(self.created, 3), "frames": self.frames, "source": self.source,
        }

    @property
    def created_text(self) -> str:
        return time.strftime("%Y-%m-%d %H:%M", time.localtime(self.created))

    def resting(self) -> str:
        """What the model read in the resting face, which from now on reads neutral: 'sad 48%, neutral 30%'."""
        p = np.exp(self.baseline - self.baseline.max())
        p /= p.sum()
        top = np.argsort(-p, kind="stable")[:2]
        return ", ".join(f"{self.labels[i]} {p[i]:.0%}" for i in top)

    def describe(self) -> str:
        """'from 2026-11-25 12:40, 42 camera frames' / '..., 2 photos'"""
        what = "camera frame" if self.source == "camera" else "photo"
        return f"from {self.created_text}, {self.frames} {what}{'s' if self.frames != 1 else ''}"


def log_probs(probs: np.ndarray) -> np.ndarray:
    """Floored natural-log probabilities (float64)."""
    return np.log(np.maximum(np.asarray(probs, np.float64), PROB_FLOOR))


def smiling(probs: np.ndarray, labels: Sequence[str]) -> str:
    """'happy (72%)' when the face reads as a smile rather than at rest, else ''."""
    if "happy" not in labels:
        return ""
    p = float(probs[list(labels).index("happy")])
    return f"happy ({p:.0%})" if p >= SMILE_MIN else ""


def make_calibration(samples: Sequence[np.ndarray], model_sha256: str, labels: Sequence[str], source: str,
                     created: float | None = None) -> Calibration:
    """Average the raw (uncalibrated) probabilities of resting-face samples into a baseline."""
    if not samples:
        raise CalibrationError("no faces to calibrate from")
    lp = np.mean([log_probs(p) for p in samples], axis=0)
    if lp.shape != (len(labels),) or not np.all(np.isfinite(lp)):
        raise CalibrationError("calibration samples do not match the model's labels")
    return Calibration(model_sha256, tuple(labels), lp, time.time() if created is None else created,
                       len(samples), source)


# -- files ----------------------------------------------------------------------------------
def save(cal: Calibration, path: Path) -> None:
    """Atomic write (temp file + rename), mode 0644: readable by `status`, never half-written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, (json.dumps(cal.to_json(), indent=1) + "\n").encode("utf-8"), 0o644, exact=True)


def parse(data: Any, where: str) -> Calibration:
    """Validate a decoded calibration JSON object; CalibrationError names what is wrong."""
    if not isinstance(data, dict) or data.get("kind") != KIND:
        raise CalibrationError(f"{where}: not an emotion-edge calibration file")
    if data.get("version") != VERSION:
        raise CalibrationError(f"{where}: calibration version {data.get('version')!r} is not supported (expected {VERSION})")
    sha, labels, base = data.get("model_sha256"), data.get("labels"), data.get("baseline")
    if not isinstance(sha, str) or len(sha) != 64:
        raise CalibrationError(f"{where}: 'model_sha256' must be a sha256 hex string")
    if (not isinstance(labels, list) or not labels or len(labels) > 64
            or not all(isinstance(x, str) and x.isprintable() for x in labels) or len(set(labels)) != len(labels)):
        raise CalibrationError(f"{where}: 'labels' must be a list of distinct label names")
    if not isinstance(base, dict) or set(base) != set(labels):
        raise CalibrationError(f"{where}: 'baseline' must give one number for each label")
    vals = [base[k] for k in labels]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and -50 <= v <= 0 for v in vals):
        raise CalibrationError(f"{where}: 'baseline' values must be log-probabilities (finite, <= 0)")
    created, frames = data.get("created_unix", 0), data.get("frames", 0)
    if not isinstance(created, (int, float)) or isinstance(created, bool) or not math.isfinite(created):
        raise CalibrationError(f"{where}: 'created_unix' must be a number")
    if not isinstance(frames, int) or isinstance(frames, bool) or frames < 1:
        raise CalibrationError(f"{where}: 'frames' must be a positive integer")
    source = data.get("source", "camera")
    return Calibration(sha, tuple(labels), np.array(vals, np.float64), float(created), frames,
                       source if source in ("camera", "photos") else "camera")


def load(path: Path) -> Calibration:
    """Read and validate a calibration file (regular file, at most 64 KiB)."""
    path = Path(path)
    try:
        raw = read_bytes(path, MAX_FILE_BYTES)  # a FIFO would hang, /dev/zero never end
    except FileNotFoundError:
        raise CalibrationError(f"{path}: calibration file not found") from None
    except (UnsafeFileError, IsADirectoryError):
        raise CalibrationError(f"{path}: not a calibration file (not a regular file of at most 64 KiB)") from None
    except OSError as e:
        raise CalibrationError(f"{path}: cannot read calibration ({e.strerror or e})") from None
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise CalibrationError(f"{path}: calibration file is not valid JSON") from None
    return parse(data, str(path))


def for_model(cal: Calibration, model_sha256: str, labels: Sequence[str], where: str) -> Calibration:
    """The calibration if it was made with this model; CalibrationError (one line) if not."""
    if cal.model_sha256 != model_sha256 or tuple(labels) != cal.labels:
        raise CalibrationError(f"{where}: calibration was made for another model "
                               f"({cal.model_sha256[:12]}, running {model_sha256[:12]}); ignored, run `emotion-edge calibrate` again")
    return cal


def load_for(path: Path, model_sha256: str, labels: Sequence[str], *, required: bool) -> Calibration | None:
    """The calibration at `path` if it fits this model. A missing default file is fine; a file made for
    another model is ignored with one warning; an explicit path that cannot be used is an error."""
    if not required and not os.path.lexists(path):
        return None
    try:
        return for_model(load(path), model_sha256, labels, str(path))
    except CalibrationError as e:
        if required:
            raise
        log.warning("%s", e)
        return None
