"""Faces as a small camera in a living room gives them: a box a little off, dim or side light, soft focus,
few pixels across, sensor noise, JPEG. FER2013's test faces pushed through it stand in for real photos no
one here may read (issue 34): a model that holds up on them holds up away from FER2013's own look.

Each face draws its own damage from (seed, its index), so every model is shown the same damaged faces
(paired comparisons hold) and a face keeps its damage whatever `--limit` cuts.
"""
from __future__ import annotations

import cv2
import numpy as np

# What each effect draws: its chance, then its range. Kept mild enough that a person could still read
# the face: the aim is a camera's look, not faces no one could label.
BOX = 0.8, (-8.0, 8.0), (0.92, 1.1), 0.05  # chance, rotation degrees, scale, shift as a share of the side
LIGHT = 0.6, (0.6, 1.8), (0.6, 1.0)  # chance, gamma, contrast
SIDE_LIGHT = 0.3, (0.7, 1.2)  # chance, brightness at either edge of a left-to-right ramp
BLUR = 0.3, (0.4, 1.0)  # chance, Gaussian sigma in pixels of a 48-pixel face
DISTANCE = 0.5, (22, 40)  # chance, pixels across the face before it is scaled back up
NOISE = 0.6, (2.0, 7.0)  # chance, sd in grey levels
JPEG = 0.5, (40, 90)  # chance, quality


def degrade(images: np.ndarray, seed: int = 0) -> np.ndarray:
    """uint8 (N, H, W) faces -> the same faces through the camera above, a new array."""
    out = np.empty_like(images)
    for i, face in enumerate(images):
        out[i] = degrade_one(face, np.random.default_rng([seed, i]))
    return out


def degrade_one(face: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One uint8 face, damaged in a camera's order: scene (box, light), lens, sensor, encoder."""
    h, w = face.shape
    img = face.astype(np.float32)
    chance, rot, scale, shift = BOX
    if rng.random() < chance:
        m = cv2.getRotationMatrix2D((w / 2, h / 2), rng.uniform(*rot), rng.uniform(*scale))
        m[:, 2] += rng.uniform(-shift, shift, 2) * (w, h)
        img = cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    chance, gamma, contrast = LIGHT
    if rng.random() < chance:
        g = float(np.exp(rng.uniform(np.log(gamma[0]), np.log(gamma[1]))))
        img = 255.0 * (img / 255.0) ** g
        mean = img.mean()
        img = mean + (img - mean) * rng.uniform(*contrast)
    chance, edge = SIDE_LIGHT
    if rng.random() < chance:
        img = img * np.linspace(rng.uniform(*edge), rng.uniform(*edge), w, dtype=np.float32)[None, :]
    chance, sigma = BLUR
    if rng.random() < chance:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(*sigma))
    chance, side = DISTANCE
    if rng.random() < chance:
        s = int(rng.integers(side[0], side[1] + 1))
        img = cv2.resize(cv2.resize(img, (s, s), interpolation=cv2.INTER_AREA), (w, h), interpolation=cv2.INTER_LINEAR)
    chance, sd = NOISE
    if rng.random() < chance:
        img = img + rng.normal(0.0, rng.uniform(*sd), img.shape).astype(np.float32)
    out = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    chance, quality = JPEG
    if rng.random() < chance:
        ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(quality[0], quality[1] + 1))])
        if ok:
            out = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)
    return out
