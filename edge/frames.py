"""One frame-checking policy shared by the detector and the classifier.

Accepted: uint8 HxW (used as is), uint8 HxWx1 (squeezed) and uint8 HxWx3 (taken as BGR, converted to
gray). Anything else (None, not an array, empty, other dtypes or ndim, absurdly large) raises
FrameError, which the loop counts and skips.
"""
from __future__ import annotations

import cv2
import numpy as np

from edge.errors import FrameError

MAX_SIDE = 8192  # larger than any camera we drive; bigger frames are refused rather than risk memory


def as_gray(image: object, what: str = "frame") -> np.ndarray:
    """Return a uint8 HxW view/copy of `image` or raise FrameError naming the problem."""
    if image is None:
        raise FrameError(f"{what} is None")
    if not isinstance(image, np.ndarray):
        raise FrameError(f"{what} is a {type(image).__name__}, not a numpy array")
    if image.dtype != np.uint8:
        raise FrameError(f"{what} has dtype {image.dtype}, expected uint8")
    if image.ndim == 3 and image.shape[2] in (1, 3):
        if image.shape[0] == 0 or image.shape[1] == 0:
            raise FrameError(f"{what} is empty (shape {image.shape})")
        image = image[:, :, 0] if image.shape[2] == 1 else cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_BGR2GRAY)
    if image.ndim != 2:
        raise FrameError(f"{what} has shape {image.shape}, expected HxW gray (or HxWx3 BGR)")
    h, w = image.shape
    if h == 0 or w == 0:
        raise FrameError(f"{what} is empty (shape {image.shape})")
    if h > MAX_SIDE or w > MAX_SIDE:
        raise FrameError(f"{what} is too large ({w}x{h}; at most {MAX_SIDE} px a side)")
    if image.strides[1] != 1:  # OpenCV needs contiguous rows; a row stride (padding) is fine
        image = np.ascontiguousarray(image)
    return image
