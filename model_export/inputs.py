"""Model inputs prepared exactly as the edge prepares them.

The edge resizes a face crop with `edge.preprocess.resize_face` and feeds either
`to_float(pixels, range)` (float models) or `quant_lut(range, scale, zp)[pixels]` (int8 models);
training, the int8 representative faces and evaluation use the same functions so the statistics
match inference.
"""
from __future__ import annotations

import numpy as np

from edge.preprocess import resize_face, to_float

TRAIN_RANGE = (0.0, 1.0)
"""The input range `train` feeds its models (recorded in the run folder's state.json)."""


def resize_all(images: np.ndarray, width: int, height: int) -> np.ndarray:
    """uint8 (N, H0, W0) -> uint8 (N, height, width) with the edge's resize."""
    if images.shape[1:3] == (height, width):
        return images
    out = np.empty((len(images), height, width), np.uint8)
    for i, im in enumerate(images):
        resize_face(im, width, height, out=out[i])
    return out


def prepare_float(images: np.ndarray, width: int, height: int, value_range: tuple[float, float]) -> np.ndarray:
    """uint8 faces -> float32 (N, height, width, 1) in the network's range."""
    return to_float(resize_all(images, width, height), value_range)[..., None]


def train_inputs(images: np.ndarray, size: int) -> np.ndarray:
    """uint8 faces -> what `train` feeds a size x size model: float32 (N, size, size, 1) in TRAIN_RANGE
    (also what teacher, average and ensemble feed the checkpoints it made)."""
    return prepare_float(images, size, size, TRAIN_RANGE)
