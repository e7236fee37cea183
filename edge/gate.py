"""When the loop classifies: a mood changes with the face, so while the mood is settled the faces are
read only `steady_hz` times a second, and at `classify_hz` while it is not.

Unsettled, for `settle` seconds: after a reading of the largest face whose top label is not the
current mood (the smoother is being moved; at full rate it moves as it always did), and after a face
changed its look: the number of faces changed, or the mean absolute grey-level difference of a face's
look (its box at 16x16, mean removed, so an exposure change is no change) since its last reading
reached `change` (0, the default: looks are not compared; docs/PERFORMANCE.md says why: box jitter
and head motion move a look as much as an expression does).
"""
from __future__ import annotations

import math
from typing import Sequence

import cv2
import numpy as np

from edge.config import ClassifyConfig
from edge.types import Box

_NO_LOOK = np.zeros((1, 1), np.float32)
SIDE = 16   # the look is SIDE x SIDE: cheap, and coarse enough that noise averages out


def look(gray: np.ndarray, box: Box) -> np.ndarray:
    """The face's box at SIDE x SIDE, float32, mean removed."""
    x, y, w, h = box
    crop = gray[max(0, y):y + h, max(0, x):x + w]
    if crop.size == 0:
        return np.zeros((SIDE, SIDE), np.float32)
    small = cv2.resize(crop, (SIDE, SIDE), interpolation=cv2.INTER_AREA).astype(np.float32)
    small -= small.mean()
    return small


class ClassifyGate:
    """`due(t, gray, boxes)` says whether to classify the faces in `boxes` on this frame (and, if so,
    remembers their looks); `force` (a calibration is being taken) ignores the steady rate;
    `read(t, top, mood)` after each reading of the largest face."""

    def __init__(self, cfg: ClassifyConfig, settle: float) -> None:
        self.min_gap = 1.0 / cfg.classify_hz
        self.off = cfg.steady_hz >= cfg.classify_hz     # the steady rate is no lower: classify_hz alone
        self.steady_gap = 1.0 / cfg.steady_hz
        self.change = float(cfg.change)
        self.settle = settle
        self.last = -math.inf
        self.busy_until = -math.inf
        self.refs: list[np.ndarray] = []
        self.changes = 0          # frames on which a face was found changed
        self.held = 0             # allowed classifications left out because the faces had not changed

    def reset(self) -> None:
        self.last = self.busy_until = -math.inf
        self.refs = []

    def forget(self) -> None:
        """No face on this frame: whoever comes next is a changed face."""
        self.refs = []

    def due(self, t: float, gray: np.ndarray, boxes: Sequence[Box], force: bool = False) -> bool:
        if t < self.last:                     # a new source restarted its clock
            self.reset()
        if t - self.last < self.min_gap:
            return False
        if self.off:
            self.last = t
            return True
        looks = [look(gray, b) for b in boxes] if self.change > 0 else [_NO_LOOK] * len(boxes)
        if self._changed(looks):
            self.changes += 1
            self.busy_until = t + self.settle
        if force or t < self.busy_until or t - self.last >= self.steady_gap:
            self.last, self.refs = t, looks
            return True
        self.held += 1
        return False

    def read(self, t: float, top: str, mood: str) -> None:
        """The largest face read `top` while the mood is `mood`: unless they agree, keep reading at full rate."""
        if top != mood:
            self.busy_until = max(self.busy_until, t + self.settle)

    def _changed(self, looks: list[np.ndarray]) -> bool:
        if len(looks) != len(self.refs):
            return True
        return self.change > 0 and any(float(np.mean(np.abs(a - b))) >= self.change for a, b in zip(looks, self.refs))
