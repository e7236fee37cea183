"""Two models on the same faces: the faces only one of them reads right, and how likely a split that
uneven is if both were equally good (exact McNemar); and for per-photo shares of jittered repeats, the
paired sign-flip test. Shared by `evaluate --compare`, `calibration-report` and `choose`."""
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


def sign_flip_p(diff: np.ndarray, draws: int = 20000, seed: int = 0) -> float:
    """Two-sided paired permutation test of a mean difference: how often random signs on the per-photo
    differences give a mean at least this far from 0 (the jittered analogue of McNemar's test)."""
    d = np.asarray(diff, np.float64)
    d = d[d != 0]
    if d.size == 0:
        return 1.0
    signs = np.random.default_rng(seed).choice((-1.0, 1.0), size=(draws, d.size))
    hits = np.sum(np.abs(signs @ d) >= abs(d.sum()) - 1e-12)
    return float((hits + 1) / (draws + 1))


def paired_shares(share_a: np.ndarray, share_b: np.ndarray) -> tuple[float, float]:
    """(B minus A, sign-flip p) over photos, from each model's share of repeats right per photo."""
    d = np.asarray(share_b, np.float64) - np.asarray(share_a, np.float64)
    return float(d.mean()), sign_flip_p(d)
