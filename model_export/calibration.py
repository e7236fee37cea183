"""Model inputs prepared exactly as the edge does, and the stratified calibration sample.

The edge resizes a face crop with `edge.preprocess.resize_face` and feeds either
`to_float(pixels, range)` (float models) or `quant_lut(range, scale, zp)[pixels]` (int8 models);
calibration and evaluation use the same two functions so the statistics match inference.
"""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from edge.errors import DataError
from edge.preprocess import resize_face, to_float

MIN_CALIBRATION = 300


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


def stratified_indices(labels: np.ndarray, n: int, seed: int = 0, min_per_class: int = 10) -> np.ndarray:
    """n indices, each class in proportion to its frequency (but at least a few), deterministic."""
    labels = np.asarray(labels)
    if n >= len(labels):
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    floor = np.minimum(counts, min(min_per_class, n // len(classes)))  # sum(floor) <= n always
    want = np.minimum(np.maximum(np.floor(counts / counts.sum() * n).astype(int), floor), counts)
    while want.sum() > n:  # give back from the class furthest above its floor
        want[np.argmax(want - floor)] -= 1
    while want.sum() < n:  # top up the class with the most faces left (n < len(labels): one exists)
        want[np.argmax(counts - want)] += 1
    picked = [rng.choice(np.flatnonzero(labels == c), w, replace=False) for c, w in zip(classes, want)]
    return np.sort(np.concatenate(picked))


def calibration_images(train_images: np.ndarray, train_labels: np.ndarray, n: int, source: str,
                       seed: int = 0, minimum: int = MIN_CALIBRATION) -> np.ndarray:
    """The uint8 faces used to calibrate int8 ranges: a stratified sample of the Training split."""
    if len(train_images) < minimum:
        raise DataError(f"{source}: only {len(train_images)} Training faces; int8 calibration needs at least {minimum}")
    if n < minimum:
        raise DataError(f"calibration size {n} is too small; use at least {minimum} faces")
    return train_images[stratified_indices(train_labels, n, seed)]


def representative(x: np.ndarray) -> Iterator[list[np.ndarray]]:
    """What TFLiteConverter.representative_dataset expects: one float batch of 1 at a time."""
    for i in range(len(x)):
        yield [x[i:i + 1]]
