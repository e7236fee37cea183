"""A face's *look*: what its own shape says, beside what the model was trained to see.

A taught expression profile (profile.py) compares a face with the person's own taught faces. The
model's probabilities alone tell one person's expressions apart only so well (they were learned from
strangers); a histogram of oriented gradients of the face crop keeps where the brows, eyes and mouth
edges run, which is what differs between one person's expressions. It is computed on the face crop
at the model's own margin, resized to 48x48 whatever the model's input size, so it costs the same on
every model: one resize and one HOG (tens of microseconds), and only while a profile is in use.

A look is kept in the profile file as float16 bytes in base64 (324 numbers, under 1 KB of text).
"""
from __future__ import annotations

import base64
import binascii

import cv2
import numpy as np

from edge.preprocess import crop_face, resize_face
from edge.types import Box

LOOK_KIND = "hog48-24-12"
"""Names the descriptor below; a profile whose looks were made another way is read without them."""
LOOK_SIZE = 48
_HOG = cv2.HOGDescriptor((LOOK_SIZE, LOOK_SIZE), (24, 24), (12, 12), (12, 12), 9)
LOOK_DIM = int(_HOG.getDescriptorSize())


class Looker:
    """Computes looks into reused buffers (the loop calls it per classified face while a profile is in use)."""

    def __init__(self, crop_margin: float) -> None:
        self.margin = float(crop_margin)
        self._face = np.empty((LOOK_SIZE, LOOK_SIZE), np.uint8)

    def of(self, gray: np.ndarray, box: Box) -> np.ndarray:
        """The look of the face in `box` of a grey frame (a new float32 vector of LOOK_DIM)."""
        resize_face(crop_face(gray, box, self.margin), LOOK_SIZE, LOOK_SIZE, out=self._face)
        return _HOG.compute(self._face).reshape(-1)


def encode(look: np.ndarray) -> str:
    """A look as the profile file keeps it (float16, base64)."""
    return base64.b64encode(np.asarray(look, "<f2").tobytes()).decode("ascii")


def decode(text: object) -> np.ndarray | None:
    """A look from the profile file; None when it is not one of ours (wrong size, not base64)."""
    if not isinstance(text, str) or len(text) > 4 * LOOK_DIM:
        return None
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        return None
    if len(raw) != 2 * LOOK_DIM:
        return None
    v = np.frombuffer(raw, "<f2").astype(np.float32)
    return v if np.all(np.isfinite(v)) else None
