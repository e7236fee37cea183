"""Values that cross stage boundaries: source -> detector -> classifier -> smoother -> outputs."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Box = tuple[int, int, int, int]
"""A face box (x, y, w, h) in frame pixels."""

NO_MOOD = "none"


@dataclass(frozen=True, slots=True)
class Frame:
    """Grayscale uint8 HxW image plus its monotonic timestamp (seconds) and index."""

    image: np.ndarray
    timestamp: float
    index: int


@dataclass(frozen=True, slots=True)
class Prediction:
    """Per-face probabilities (float32, sum 1) in the model's own label order.

    With a per-person calibration applied, `probs` are calibrated and `raw` holds the model's own.
    """

    probs: np.ndarray
    labels: tuple[str, ...]
    raw: np.ndarray | None = None

    @property
    def top(self) -> str:
        return self.labels[int(np.argmax(self.probs))]

    @property
    def confidence(self) -> float:
        return float(np.max(self.probs))

    def as_dict(self) -> dict[str, float]:
        return {lab: float(p) for lab, p in zip(self.labels, self.probs)}


@dataclass(frozen=True, slots=True)
class Mood:
    """The smoothed mood: a label or NO_MOOD, its confidence, smoothed probabilities, time."""

    label: str
    confidence: float
    probs: np.ndarray | None
    labels: tuple[str, ...]
    time: float
