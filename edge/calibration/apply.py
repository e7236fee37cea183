"""How a calibration applies: the resting face's bias taken out of each prediction.

Most of the classifier's error on a real person is their resting face: one face reads "sad" at rest,
another "angry". Applying a calibration subtracts the baseline's shape from each prediction's
log-probabilities (`strength` = 1: the resting face becomes indifferent between the classes), then
gives neutral a head start of `neutral_margin` (log-odds), so a face must look more expressive than
its own rest to read as an emotion (what it gains: docs/CALIBRATION.md). Where the resting face was
taken from several samples, each other class also starts `spread_weight` of its own resting spread
lower: a class that moves a lot while the face is at rest (fear while the person talks) must move
further before it counts.
"""
from __future__ import annotations

import numpy as np

from edge.calibration.file import PROB_FLOOR, Calibration
from edge.calibration.profile import TaughtReader


class CalibrationApplier:
    """Applies a calibration to probability vectors in place, without allocating (hot path).

    With taught expressions (a profile), a face whose look is given is read by the profile's rule
    (profile.TaughtReader); without its look, or with the resting face alone, by the resting face's.
    """

    def __init__(self, cal: Calibration, strength: float, neutral_margin: float, spread_weight: float = 0.0) -> None:
        self.calibration = cal
        self.strength = float(strength)
        self.neutral_margin = float(neutral_margin)
        if cal.baseline is None:  # expressions taught but no resting face yet: nothing to take out
            shift = np.zeros(len(cal.labels), np.float64)
        else:
            shift = -self.strength * (cal.baseline - cal.baseline.mean())
            if "neutral" in cal.labels:
                n = cal.labels.index("neutral")
                shift[n] += self.neutral_margin
                if cal.spread is not None and spread_weight > 0:
                    others = np.arange(len(cal.labels)) != n
                    shift[others] -= float(spread_weight) * cal.spread[others]
        self.shift = shift.astype(np.float32)
        self._z = np.empty(len(cal.labels), np.float32)
        self.reader = _reader(cal, shift)

    @property
    def needs_look(self) -> bool:
        """Whether `apply` reads better given each face's look (the profile holds taught expressions)."""
        return self.reader is not None

    def apply(self, p: np.ndarray, look: np.ndarray | None = None) -> np.ndarray:
        """p (float32, sums to 1) -> calibrated probabilities, written into p."""
        z = self._z
        np.maximum(p, np.float32(PROB_FLOOR), out=z)
        np.log(z, out=z)
        z += self.shift
        if self.reader is not None and look is not None:
            return self.reader.read(z, look, p)
        z -= z.max()
        np.exp(z, out=p)
        p /= p.sum()
        return p


def _reader(cal: Calibration, shift: np.ndarray) -> TaughtReader | None:
    """The profile's reader when it holds a taught expression with a look (the resting face counts as
    taught neutral when it has its look); None: the resting face's rule alone."""
    taught = {lab: (t.logp, t.look) for lab, t in cal.expressions.items() if t.look is not None}
    if not taught:
        return None
    if cal.baseline is not None and cal.look is not None and "neutral" in cal.labels:
        taught["neutral"] = (cal.baseline, cal.look)
    return TaughtReader(cal.labels, shift, taught)
