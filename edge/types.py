"""Values that cross stage boundaries (source -> detector -> classifier -> smoother -> outputs), and the
interfaces of the stages that more than one class implements (`Source`, `Detector`)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

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
    """Per-face probabilities (float32, sum 1) in the model's own label order: the classifier's own
    answer, or the calibration stage's (edge.calibration) for this person."""

    probs: np.ndarray
    labels: tuple[str, ...]

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


class Source(Protocol):
    """Where frames come from: edge.sources.FrameSource, edge.resilient.ResilientSource, a test's list."""

    def read(self) -> Frame | None:
        """The next frame; None when a file or folder has ended (cameras block, or raise SourceError)."""
        ...

    def close(self) -> None:
        """Release the device or file; safe twice."""
        ...


class Detector(Protocol):
    """The loop's face finder: edge.track.TrackingDetector (`detect.mode = "track"`) or
    edge.detect.SkippingDetector ("skip"); both reuse boxes between Haar runs."""

    def boxes(self, frame: Frame) -> tuple[list[Box], bool]:
        """Face boxes in frame pixels, largest first, and whether Haar ran on this frame."""
        ...
