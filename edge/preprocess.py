"""Face crop -> model input. The one implementation shared by training, calibration and the edge loop."""
from __future__ import annotations

import cv2
import numpy as np

from edge.types import Box


def expand_box(box: Box, margin: float, frame_w: int, frame_h: int) -> Box:
    """Grow a box by `margin` of its size on each side, clamped to the frame."""
    x, y, w, h = box
    dx, dy = int(round(w * margin)), int(round(h * margin))
    x0, y0 = max(0, x - dx), max(0, y - dy)
    x1, y1 = min(frame_w, x + w + dx), min(frame_h, y + h + dy)
    return x0, y0, max(0, x1 - x0), max(0, y1 - y0)


def crop_face(gray: np.ndarray, box: Box, margin: float) -> np.ndarray:
    """A view of the face region (no copy)."""
    x, y, w, h = expand_box(box, margin, gray.shape[1], gray.shape[0])
    return gray[y:y + h, x:x + w]


def resize_face(face: np.ndarray, width: int, height: int, out: np.ndarray | None = None) -> np.ndarray:
    """INTER_AREA when shrinking (no aliasing), INTER_LINEAR when enlarging."""
    if face.shape[0] == height and face.shape[1] == width:
        if out is None:
            return face
        out[...] = face
        return out
    interp = cv2.INTER_AREA if face.shape[0] >= height else cv2.INTER_LINEAR
    return cv2.resize(face, (width, height), dst=out, interpolation=interp)


def to_float(pixels: np.ndarray, value_range: tuple[float, float]) -> np.ndarray:
    """uint8 pixels -> float32 in the range the network expects (what Keras trains on)."""
    lo, hi = value_range
    return (pixels.astype(np.float32) * np.float32((hi - lo) / 255.0) + np.float32(lo)).astype(np.float32)


def quant_lut(value_range: tuple[float, float], scale: float, zero_point: int, dtype: np.dtype) -> np.ndarray:
    """256-entry table pixel -> quantized input: exact for any range, no float math per frame."""
    v = to_float(np.arange(256, dtype=np.uint8), value_range).astype(np.float64) / scale
    # Round half away from zero, as TFLite's quantizer does (np.round rounds half to even, which
    # merges neighbouring pixels in the [-1, 1] range, where every pixel lands on a half).
    q = np.sign(v) * np.floor(np.abs(v) + 0.5) + zero_point
    info = np.iinfo(dtype)
    return np.clip(q, info.min, info.max).astype(dtype)
