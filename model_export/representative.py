"""The int8 representative data set: a stratified sample of Training faces from which the converter
measures each tensor's value range (TFLiteConverter.representative_dataset).

Not to be confused with the device's per-person calibration (edge/calibration, calibration_report.py,
headroom.py), which adjusts a model's answers to one person's resting face.
"""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from edge.errors import DataError

MIN_REPRESENTATIVE = 300


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


def representative_faces(train_images: np.ndarray, train_labels: np.ndarray, n: int, source: str,
                         seed: int = 0, minimum: int = MIN_REPRESENTATIVE) -> np.ndarray:
    """The uint8 faces the int8 value ranges are measured on: a stratified sample of the Training split."""
    if len(train_images) < minimum:
        raise DataError(f"{source}: only {len(train_images)} Training faces; int8 conversion needs at least {minimum} "
                        f"representative faces")
    if n < minimum:
        raise DataError(f"representative set size {n} is too small; use at least {minimum} faces")
    return train_images[stratified_indices(train_labels, n, seed)]


def batches(x: np.ndarray) -> Iterator[list[np.ndarray]]:
    """What TFLiteConverter.representative_dataset expects: one float batch of 1 at a time."""
    for i in range(len(x)):
        yield [x[i:i + 1]]
