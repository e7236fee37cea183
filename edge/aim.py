"""Framing advice for aiming the camera: one line a person acts on, from measured limits.

The limits (face size, backlight, contrast, blur) were measured by pasting FER2013 PublicTest faces
into camera-sized frames and running the loop's own detector and classifier on them
(`tests/benchmarks/aim_sizes.py`; the figures are in docs/PI.md, "Aim the camera").
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

from edge.config import DetectConfig
from edge.types import Box

# -- measured limits: where accuracy starts to fall (figures: docs/PI.md "Aim the camera") ----------
DETECT_NEED_PX = 56      # face width in detector pixels from which the loop's detector finds as many faces as on large ones
READ_BEST_PX = 44        # face width in frame pixels from which the classifier reads as well as on large faces
BACKLIGHT_RATIO = 0.4    # face mean / frame mean below this (in a bright frame): light from behind
DARK_FACE = 50           # face mean grey level below this: too dark
LOW_CONTRAST_STD = 24.0  # face grey-level standard deviation below this: flat
BLUR_VAR = 250.0         # variance of the Laplacian of the face at 48x48 below this: blurred
NO_FACE_SECONDS = 10.0   # "no face for 10 s"
EDGE_PX = 2              # a box this close to the frame's border is cut off
LARGE_SHARE = 0.7        # face height over this share of the frame: too close
MODEL_SIDE = 48          # the classifier's input side (the sharpness is measured at this size)


@dataclass(frozen=True)
class FaceLook:
    """What the advice needs about one face: its size to the detector and how it is lit."""

    box: Box
    width: int            # frame pixels
    detector_width: int   # pixels in the detector's downscaled image
    mean: float           # face grey level
    std: float            # face contrast
    sharpness: float      # variance of the Laplacian at MODEL_SIDE
    frame_mean: float


def detector_scale(frame_width: int, cfg: DetectConfig) -> float:
    """How the loop's detector shrinks a frame this wide (1.0: not at all)."""
    return min(1.0, cfg.detect_width / frame_width) if frame_width > 0 else 1.0


def need_px(frame_width: int, cfg: DetectConfig) -> int:
    """Face width in frame pixels that both the detector (at its downscale) and the classifier need."""
    scale = detector_scale(frame_width, cfg)
    return int(np.ceil(max(DETECT_NEED_PX / scale, cfg.min_size, READ_BEST_PX)))


def sharpness(gray: np.ndarray, box: Box) -> float:
    """Variance of the Laplacian of the face resized to the model's input (the size it is read at)."""
    x, y, w, h = box
    face = gray[max(0, y):y + h, max(0, x):x + w]
    if face.size == 0:
        return 0.0
    small = cv2.resize(face, (MODEL_SIDE, MODEL_SIDE), interpolation=cv2.INTER_AREA if w >= MODEL_SIDE else cv2.INTER_LINEAR)
    return float(cv2.Laplacian(small, cv2.CV_32F).var())


def look(gray: np.ndarray, box: Box, cfg: DetectConfig, frame_mean: float | None = None) -> FaceLook:
    """Measure one face in a grey frame (a few small operations: fine several times a second)."""
    x, y, w, h = (int(v) for v in box)
    face = gray[max(0, y):y + h, max(0, x):x + w]
    mean, std = (float(face.mean()), float(face.std())) if face.size else (0.0, 0.0)
    fm = float(gray.mean()) if frame_mean is None else frame_mean
    dw = int(round(w * detector_scale(gray.shape[1], cfg)))
    return FaceLook((x, y, w, h), w, dw, mean, std, sharpness(gray, (x, y, w, h)), fm)


# -- the advice --------------------------------------------------------------------------------
def _px(lk: FaceLook) -> str:
    """'38 px wide' and, when the detector sees a smaller picture, what it sees."""
    return f"{lk.width} px wide" + (f" ({lk.detector_width} px to the detector)" if lk.detector_width != lk.width else "")


def advise_face(lk: FaceLook, frame_wh: tuple[int, int], cfg: DetectConfig) -> str:
    """One line for the largest face: the first problem found, most important first."""
    fw, fh = frame_wh
    x, y, w, h = lk.box
    need = need_px(fw, cfg)
    edges = [name for name, cut in (("left", x <= EDGE_PX), ("right", x + w >= fw - EDGE_PX),
                                    ("top", y <= EDGE_PX), ("bottom", y + h >= fh - EDGE_PX)) if cut]
    if edges:
        turn = {"left": "aim the camera further left", "right": "aim the camera further right",
                "top": "tilt the camera up", "bottom": "tilt the camera down"}[edges[0]]
        return f"face cut off at the {edges[0]} edge: {turn}"
    if w < need:
        return f"face {_px(lk)}: move the camera closer ({need} px or more reads best)"
    if h > LARGE_SHARE * fh:
        return f"face fills {h * 100 // fh} % of the picture: move the camera a little further away"
    if lk.frame_mean > 90 and lk.mean < BACKLIGHT_RATIO * lk.frame_mean:
        return "strong light behind the face: turn the camera away from the window, or light the face"
    if lk.mean < DARK_FACE:
        return f"face too dark (grey {lk.mean:.0f} of 255): more light on the face"
    if lk.std < LOW_CONTRAST_STD:
        return "face looks flat (low contrast): light it from the front or side; clean the lens"
    if lk.sharpness < BLUR_VAR:
        return "picture blurred: clean the lens, check the focus, hold the camera still"
    return f"framing good: face {_px(lk)}, well lit"


def advise_recent(lk: FaceLook | None, frame_wh: tuple[int, int], seconds: float, cfg: DetectConfig) -> str:
    """`status`: the advice for the last minute's typical largest face (the loop's medians, no picture),
    in `advise_face`'s words, or that no face was seen in that time."""
    if lk is not None:
        return advise_face(lk, frame_wh, cfg)
    span = "minute" if seconds >= 59.0 else f"{seconds:.0f} s"
    return f"no face in the last {span}: is anyone in view? (`emotion-edge view` shows what the camera sees)"


class Aimer:
    """Advice over time: remembers when a face was last seen (for "no face for 10 s"), and where the
    loop's detector finds none, looks again with a finer search (StillDetector's second look) at most
    once a second, so a face too small to detect is reported as such ("move closer")."""

    def __init__(self, cfg: DetectConfig, *, finer: bool = True) -> None:
        self.cfg = cfg
        self._finer = None
        if finer:
            from edge.detect import StillDetector

            self._finer = StillDetector(cfg).second
        self.last_face: float | None = None
        self.started: float | None = None
        self._next_finer = -1.0
        self._small: FaceLook | None = None

    def advise(self, t: float, gray: np.ndarray, looks: Sequence[FaceLook], *, once: bool = False,
               frame_wh: tuple[int, int] | None = None) -> str:
        """`looks`: the faces the loop's detector found, largest first (measured with `look`), in the camera
        frame's pixels; `frame_wh`: that frame's size when `gray` is a downscaled copy (the service's view)."""
        if self.started is None:
            self.started = t
        fw, fh = frame_wh or (gray.shape[1], gray.shape[0])
        if looks:
            self.last_face = t
            self._small = None
            return advise_face(looks[0], (fw, fh), self.cfg)
        if self._finer is not None and t >= self._next_finer:
            self._next_finer = t + 1.0
            boxes = self._finer.detect(gray)
            self._small = None
            if boxes:
                k = fw / gray.shape[1]
                w = int(round(boxes[0][2] * k))
                self._small = FaceLook(tuple(int(round(v * k)) for v in boxes[0]), w,
                                       int(round(w * detector_scale(fw, self.cfg))), 0.0, 0.0, 0.0, 0.0)
        if self._small is not None:
            return (f"face {_px(self._small)}, too small to be found: move the camera closer "
                    f"({need_px(fw, self.cfg)} px or more reads best)")
        if once:
            return "no face found: is anyone in view, facing the camera?"
        since = t - (self.last_face if self.last_face is not None else self.started)
        if since >= NO_FACE_SECONDS:
            return f"no face for {NO_FACE_SECONDS:g} s: is anyone in view?"
        return "looking for a face"
