"""Two models on the same faces: the faces only one of them reads right, and how likely a split that
uneven is if both were equally good (exact McNemar). Shared by `evaluate --compare` and `calibration-report`."""
from __future__ import annotations

import math

import numpy as np


def only_right(right_a: np.ndarray, right_b: np.ndarray) -> tuple[int, int]:
    """(faces only A reads right, faces only B reads right), from each model's right/wrong per face."""
    right_a, right_b = np.asarray(right_a, bool), np.asarray(right_b, bool)
    return int((right_a & ~right_b).sum()), int((right_b & ~right_a).sum())


def mcnemar_p(only_a: int, only_b: int) -> float:
    """Exact two-sided McNemar test: how likely a split this uneven of the photos only one model gets
    right is, if both models were equally good (on ~100 photos, 5 points can be chance)."""
    n = only_a + only_b
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(only_a, only_b) + 1)) / 2 ** n
    return min(1.0, 2 * tail)
