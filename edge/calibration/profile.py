"""Reading a face with a taught expression profile: the nearest of the person's own taught faces.

A profile holds the resting face and, for any of the model's labels, what this person's face looked
like showing that expression (taught with `calibrate --as`). A face is compared with each taught face
in a joint space: its look (look.py) and its calibrated log-probabilities, each distance in units of
how far the person's taught faces lie from one another, the probabilities at LOOK_WEIGHT. The rule:

1. The calibrated model reads an expression that was not taught, and the face is not within NEAR taught
   spacings of a taught face: that reading stands (a profile of the resting face alone is read by the
   resting face's rule, exactly as before profiles).
2. Else the nearest taught face wins, unless untaught expressions remain and the face is farther than
   FAR taught spacings from every taught face: then it is one of those, as the calibrated model ranks them.

docs/CALIBRATION.md ("Teach it your faces") has the measurements behind the rule and its constants.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from edge.calibration.look import decode, encode

LOOK_WEIGHT = 0.5
"""How much the calibrated log-probabilities count beside the look, both in taught spacings."""
FAR = 1.0
"""Farther than this many taught spacings (summed over both parts) from every taught face: untaught."""
NEAR = 0.5
"""Nearer than this many taught spacings to a taught face: that face, whatever the model reads (a taught
photo itself reads as what it was taught as)."""
SHARPNESS = 4.0
"""Probabilities among taught expressions: softmax of -SHARPNESS * distance / (1 + LOOK_WEIGHT)."""


def _median_spacing(vectors: np.ndarray) -> float:
    n = len(vectors)
    d = [float(np.linalg.norm(vectors[i] - vectors[j])) for i in range(n) for j in range(i + 1, n)]
    return max(float(np.median(d)), 1e-6) if d else 1.0


class TaughtReader:
    """The rule above for one profile; built once per profile, `read` per face (small, no logging)."""

    def __init__(self, labels: Sequence[str], shift: np.ndarray,
                 taught: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> None:
        """`taught`: label -> (the model's mean log-probabilities, the mean look) of each taught face,
        the resting face as "neutral" among them; `shift`: what the calibration adds to log-probabilities."""
        self.labels = tuple(labels)
        names = [lab for lab in self.labels if lab in taught]
        self.idx = np.array([self.labels.index(lab) for lab in names], np.intp)
        self.z = np.array([np.asarray(taught[lab][0], np.float64) + shift for lab in names])
        self.look = np.array([np.asarray(taught[lab][1], np.float64) for lab in names])
        self.taught = np.zeros(len(self.labels), bool)
        self.taught[self.idx] = True
        self.untaught = np.flatnonzero(~self.taught)
        self.s_look = _median_spacing(self.look)
        self.s_z = _median_spacing(self.z)

    def read(self, z: np.ndarray, look: np.ndarray, out: np.ndarray) -> np.ndarray:
        """`z`: the face's calibrated log-probabilities (model label order); its probabilities under the
        profile are written into `out` (float32, sums to 1) and returned."""
        d = (np.linalg.norm(self.look - look, axis=1) / self.s_look
             + LOOK_WEIGHT * np.linalg.norm(self.z - z, axis=1) / self.s_z)
        if not self.taught[int(np.argmax(z))] and float(d.min()) >= NEAR * (1.0 + LOOK_WEIGHT):
            return _softmax(z, out)
        out.fill(0.0)
        if len(self.untaught) and float(d.min()) > FAR * (1.0 + LOOK_WEIGHT):
            out[self.untaught] = _softmax(z[self.untaught], np.empty(len(self.untaught), np.float32))
            return out
        out[self.idx] = _softmax(-SHARPNESS * d / (1.0 + LOOK_WEIGHT), np.empty(len(self.idx), np.float32))
        return out


def _softmax(z: np.ndarray, out: np.ndarray) -> np.ndarray:
    e = np.exp(np.asarray(z, np.float64) - float(np.max(z)))
    out[...] = e / e.sum()
    return out


# -- the taught faces in the profile file ----------------------------------------------------------
@dataclass(frozen=True)
class Taught:
    """One taught expression: what the model read in it and how it looked, averaged over its faces."""

    logp: np.ndarray              # mean natural-log probabilities, model label order
    look: np.ndarray | None       # mean look (look.py); None when it was made another way
    created: float                # unix time
    frames: int                   # faces averaged (camera frames, or photo framings)
    source: str                   # "camera" or "photos"

    def to_json(self, labels: Sequence[str]) -> dict[str, Any]:
        d: dict[str, Any] = {"logp": {lab: round(float(v), 5) for lab, v in zip(labels, self.logp)}}
        if self.look is not None:
            d["look"] = encode(self.look)
        d.update(created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.created)),
                 created_unix=round(self.created, 3), frames=self.frames, source=self.source)
        return d


def parse_taught(data: Any, labels: Sequence[str], where: str, fail: Callable[[str], Exception]) -> Taught:
    """One entry of a profile's "expressions"; `fail(message)` makes the error to raise."""
    if not isinstance(data, dict):
        raise fail(f"{where}: must be an object")
    logp = data.get("logp")
    if not isinstance(logp, dict) or set(logp) != set(labels):
        raise fail(f"{where}: 'logp' must give one number for each label")
    vals = [logp[k] for k in labels]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and -50 <= v <= 0
               for v in vals):
        raise fail(f"{where}: 'logp' values must be log-probabilities (finite, <= 0)")
    created, frames = data.get("created_unix", 0), data.get("frames", 0)
    if not isinstance(created, (int, float)) or isinstance(created, bool) or not math.isfinite(created):
        raise fail(f"{where}: 'created_unix' must be a number")
    if not isinstance(frames, int) or isinstance(frames, bool) or frames < 1:
        raise fail(f"{where}: 'frames' must be a positive integer")
    look = decode(data["look"]) if "look" in data else None
    if "look" in data and look is None:
        raise fail(f"{where}: 'look' is not a face look of this version")
    source = data.get("source", "camera")
    return Taught(np.array(vals, np.float64), look, float(created), frames,
                  source if source in ("camera", "photos") else "camera")


TEACH_SHIFT = 0.04
"""Teaching from a photo reads it at 11 framings (the box moved by this share of its size in x and y,
and grown or shrunk by TEACH_SCALE) and averages them, as a camera's frames would: a photo's one Haar
box is exact, the loop's boxes wander, and a taught face from one framing is read worse through others."""
TEACH_SCALE = 0.08


def teach_framings(box: Sequence[int], frame_w: int, frame_h: int) -> list[tuple[int, int, int, int]]:
    """The box itself first, then its moved and resized framings, each kept inside the frame."""
    x, y, w, h = (int(v) for v in box)
    out = []
    for dx, dy, k in [(0, 0, 1.0), (0, 0, 1 - TEACH_SCALE), (0, 0, 1 + TEACH_SCALE)] + [
            (sx * TEACH_SHIFT, sy * TEACH_SHIFT, 1.0) for sx in (-1, 0, 1) for sy in (-1, 0, 1) if sx or sy]:
        nw, nh = max(8, round(w * k)), max(8, round(h * k))
        cx, cy = x + w / 2 + dx * w, y + h / 2 + dy * h
        nx = int(min(max(0, round(cx - nw / 2)), max(0, frame_w - nw)))
        ny = int(min(max(0, round(cy - nh / 2)), max(0, frame_h - nh)))
        out.append((nx, ny, int(min(nw, frame_w)), int(min(nh, frame_h))))
    return out


MOVED_MIN = 0.10
"""A taught expression whose probabilities differ from the resting face's by less than this in total
(total variation: half the summed differences) did not really move the face: about where one person's
resting photos end and their expressions begin (docs/CALIBRATION.md, "Teach it your faces")."""


def moved_from_rest(logp: np.ndarray, baseline: np.ndarray) -> bool:
    """Whether a taught face reads differently enough from the resting face to count as an expression
    (both as mean log-probabilities)."""
    a = _softmax(np.asarray(logp, np.float64), np.empty(len(logp)))
    b = _softmax(np.asarray(baseline, np.float64), np.empty(len(baseline)))
    return 0.5 * float(np.abs(a - b).sum()) >= MOVED_MIN
