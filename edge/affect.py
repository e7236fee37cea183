"""Valence and arousal: a continuous mood from the class probabilities (a circumplex placement).

Each emotion label sits at a point of Russell's circumplex of affect; the mood's (valence, arousal)
is the probability-weighted mean of those points, so a face that is half happy and half surprised
lands between the two, and a confident "neutral" sits near the middle.

Where the coordinates come from:
- Russell, J. A. (1980). A circumplex model of affect. Journal of Personality and Social
  Psychology, 39(6), 1161-1178. The direct circular scaling of 28 affect words gives each word an
  angle (0 deg = pleasure, 90 deg = arousal); a word at angle t is placed on the unit circle at
  (valence, arousal) = (cos t, sin t). The words used for the FER2013 labels, and their angles:
  happy "happy" 7.8, surprise "astonished" 69.8, angry "angry" 99.0, fear "afraid" 116.9,
  sad "sad" 207.5.
- disgust is not among Russell's 28 words: it is placed at 130 deg, between "annoyed" (123.0)
  and "distressed" (137.8) - unpleasant and moderately aroused. This one is our choice.
- neutral is the origin (0, 0): no pleasure or displeasure, no activation.
Labels not in the table (a custom model) are left out of the mean; with none known, no value.
"""
from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

# label -> (angle in degrees on Russell's circumplex, radius); radius 0 = the origin
ANGLES: dict[str, tuple[float, float]] = {
    "happy": (7.8, 1.0),
    "surprise": (69.8, 1.0),
    "angry": (99.0, 1.0),
    "fear": (116.9, 1.0),
    "disgust": (130.0, 1.0),  # not in Russell (1980); see the module docstring
    "sad": (207.5, 1.0),
    "neutral": (0.0, 0.0),
}


def _point(angle: float, radius: float) -> tuple[float, float]:
    t = math.radians(angle)
    return (radius * math.cos(t), radius * math.sin(t))


COORDS: dict[str, tuple[float, float]] = {k: _point(*v) for k, v in ANGLES.items()}


@dataclass(frozen=True)
class Affect:
    """Valence (unpleasant -1 .. +1 pleasant) and arousal (calm -1 .. +1 activated)."""

    valence: float
    arousal: float


class AffectMap:
    """Precomputed coordinates for one label order: one small matrix product per call."""

    def __init__(self, labels: Sequence[str], coords: Mapping[str, tuple[float, float]] = COORDS) -> None:
        self.labels = tuple(labels)
        self._known = np.array([lab in coords for lab in self.labels], dtype=np.float64)
        self._xy = np.array([coords.get(lab, (0.0, 0.0)) for lab in self.labels], dtype=np.float64).reshape(-1, 2)

    def __call__(self, probs: Sequence[float] | np.ndarray | None) -> Affect | None:
        if probs is None:
            return None
        p = np.asarray(probs, dtype=np.float64)
        if p.shape != (len(self.labels),):
            return None
        mass = float(p @ self._known)
        if not mass > 0:
            return None
        v, a = (p @ self._xy) / mass
        return Affect(round(float(v), 4), round(float(a), 4))


_MAPS: dict[tuple[str, ...], AffectMap] = {}


def affect_of(labels: Sequence[str], probs: Sequence[float] | np.ndarray | None) -> Affect | None:
    """Valence/arousal of a probability vector in `labels` order (None: no probabilities)."""
    key = tuple(labels)
    m = _MAPS.get(key)
    if m is None:
        m = _MAPS[key] = AffectMap(key)
    return m(probs)


def affect_of_dict(probs: Mapping[str, float] | None) -> Affect | None:
    """The same for a {label: p} mapping (a log row's probabilities)."""
    if not probs:
        return None
    return affect_of(tuple(probs), [float(v) for v in probs.values()])


def fmt_signed(v: float | None) -> str:
    """+0.71 / -0.20 / '-' for a table column."""
    return "-" if v is None else f"{v:+.2f}"


HUE_NEGATIVE, HUE_POSITIVE = 240.0, 60.0  # valence -1: blue, 0: spring green, +1: yellow
MIN_LEVEL = 0.25  # brightness at the calmest arousal, so a sad mood still shows


def valence_rgb(va: Affect) -> tuple[float, float, float]:
    """`[led] mode = "valence"`: hue from valence (blue .. yellow), brightness from arousal (0.25 .. 1)."""
    v = min(1.0, max(-1.0, va.valence))
    a = min(1.0, max(-1.0, va.arousal))
    hue = HUE_NEGATIVE + (HUE_POSITIVE - HUE_NEGATIVE) * (v + 1.0) / 2.0
    level = MIN_LEVEL + (1.0 - MIN_LEVEL) * (a + 1.0) / 2.0
    r, g, b = colorsys.hsv_to_rgb(hue / 360.0, 1.0, level)
    return (r, g, b)
