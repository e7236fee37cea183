"""Fuzz: thousands of random frames through the detector and the classifier; only FrameError may come out."""
from __future__ import annotations

import time

import numpy as np
import pytest

from edge.classify import EmotionClassifier
from edge.config import DetectConfig
from edge.detect import FaceDetector
from edge.errors import FrameError

DTYPES = [np.uint8, np.uint8, np.uint8, np.int8, np.uint16, np.int32, np.float32, np.float64, np.bool_]


def random_frame(rng: np.random.Generator):
    kind = rng.integers(0, 12)
    if kind == 0:
        return None
    if kind == 1:
        return [[1, 2], "frame", 3.5, b"\x00\x01"][int(rng.integers(0, 4))]
    if kind == 2:  # degenerate shapes: 0-size, 1xN, Nx1, 1-D, 4-D
        shape = [(0, 0), (0, 320), (240, 0), (1, int(rng.integers(1, 700))), (int(rng.integers(1, 700)), 1),
                 (int(rng.integers(0, 50)),), (1, 4, 4, 3), (4, 4, 0), (4, 4, 2)][int(rng.integers(0, 9))]
        return np.zeros(shape, np.uint8)
    if kind == 3:  # all black / all white
        return np.full((int(rng.integers(1, 300)), int(rng.integers(1, 400))), rng.choice([0, 255]), np.uint8)
    if kind == 4:  # NaN / inf floats
        a = rng.random((int(rng.integers(1, 100)), int(rng.integers(1, 100)))).astype(np.float32)
        a[rng.random(a.shape) < 0.3] = np.nan
        a[0, 0] = np.inf
        return a
    if kind == 5:  # huge but still quick (downscaled before Haar), or over the limit
        return np.zeros((int(rng.choice([1080, 2000, 9000])), int(rng.choice([1920, 3000]))), np.uint8)
    if kind == 6:  # colour / channel variants
        return rng.integers(0, 256, (int(rng.integers(1, 200)), int(rng.integers(1, 200)), int(rng.choice([1, 3, 4]))), dtype=np.uint8)
    if kind == 7:  # non-contiguous views
        a = rng.integers(0, 256, (int(rng.integers(2, 300)), int(rng.integers(2, 300))), dtype=np.uint8)
        return a[::2, ::3] if rng.random() < 0.5 else a.T
    h, w = int(rng.integers(1, 260)), int(rng.integers(1, 340))
    dtype = DTYPES[int(rng.integers(0, len(DTYPES)))]
    return (rng.random((h, w)) * 255).astype(dtype)


def random_box(rng: np.random.Generator):
    k = rng.integers(0, 6)
    if k == 0:
        return (int(rng.integers(-50, 50)), int(rng.integers(-50, 50)), int(rng.integers(-5, 50)), int(rng.integers(-5, 50)))
    if k == 1:
        return (5000, 5000, 10, 10)
    if k == 2:
        return ("x", None, 1, 1) if rng.random() < 0.5 else (1, 2, 3)
    return (int(rng.integers(0, 200)), int(rng.integers(0, 150)), int(rng.integers(1, 300)), int(rng.integers(1, 300)))


@pytest.mark.parametrize("seed", [0, 1])
def test_random_frames_never_crash(seed, tiny_model):
    rng = np.random.default_rng(seed)
    det = FaceDetector(DetectConfig(detect_width=160, min_size=24, scale_factor=1.3))
    clf = EmotionClassifier(tiny_model)
    n, bad, faces = 1500, 0, 0
    t0 = time.perf_counter()
    for _ in range(n):
        frame = random_frame(rng)
        try:
            boxes = det.detect(frame)
            faces += len(boxes)
        except FrameError as e:
            bad += 1
            assert str(e) and "\n" not in str(e)
        try:
            pred = clf.classify(frame, random_box(rng))
            assert pred.probs.dtype == np.float32 and abs(float(pred.probs.sum()) - 1) < 1e-4
            assert np.isfinite(pred.probs).all()
        except FrameError as e:
            assert str(e) and "\n" not in str(e)
    assert 0 < bad < n  # both paths were exercised
    assert time.perf_counter() - t0 < 30
