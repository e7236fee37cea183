"""Face detection: OpenCV's Haar frontal-face cascade on a small grayscale image, every Nth frame."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edge.config import DetectConfig
from edge.errors import DetectorError, FrameError
from edge.frames import as_gray
from edge.types import Box, Frame

CASCADE_NAME = "haarcascade_frontalface_default.xml"
SYSTEM_DIRS = ("/usr/share/opencv4/haarcascades", "/usr/share/opencv/haarcascades")


def _cascade_dirs() -> list[Path]:
    dirs = []
    data = getattr(cv2, "data", None)  # pip wheels ship cv2.data; Debian's python3-opencv does not
    if data is not None and getattr(data, "haarcascades", None):
        dirs.append(Path(data.haarcascades))
    dirs.extend(Path(d) for d in SYSTEM_DIRS)
    return dirs


def find_cascade(path: str = "") -> Path:
    """The configured cascade, else the frontal-face cascade from the wheel or Debian's opencv-data."""
    if path:
        p = Path(path).expanduser()
        if not p.is_file():
            raise DetectorError(f"{p}: Haar cascade file not found (detect.cascade)")
        return p
    dirs = _cascade_dirs()
    for d in dirs:
        if (d / CASCADE_NAME).is_file():
            return d / CASCADE_NAME
    raise DetectorError(f"{CASCADE_NAME} not found in {', '.join(map(str, dirs))}; install opencv-data (sudo apt install opencv-data) or set detect.cascade")


class FaceDetector:
    """Haar faces in frame coordinates, largest first; frames wider than `detect_width` are downscaled first."""

    def __init__(self, cfg: DetectConfig) -> None:
        self.cfg = cfg
        self.path = find_cascade(cfg.cascade)
        try:
            self._casc = cv2.CascadeClassifier(str(self.path))
        except Exception as e:  # cv2.error or SystemError, depending on the OpenCV build
            raise DetectorError(f"{self.path}: cannot load Haar cascade (not a cascade XML?)") from e
        if self._casc.empty():
            raise DetectorError(f"{self.path}: cannot load Haar cascade (not a cascade XML?)")
        self.cascade = self._casc  # the region search in edge/track.py runs the same cascade
        self.calls = 0
        self._small: np.ndarray | None = None  # reused downscale buffer

    def detect(self, gray: np.ndarray) -> list[Box]:
        """Boxes (x, y, w, h) in `gray`'s pixels, largest first, at most max_faces; FrameError for a bad frame."""
        gray = as_gray(gray)
        h, w = gray.shape
        cfg = self.cfg
        scale = 1.0
        img = gray
        if w > cfg.detect_width:
            scale = cfg.detect_width / w
            sw, sh = cfg.detect_width, max(1, int(round(h * scale)))
            if self._small is None or self._small.shape != (sh, sw):
                self._small = np.empty((sh, sw), np.uint8)
            img = cv2.resize(gray, (sw, sh), dst=self._small, interpolation=cv2.INTER_AREA)
        min_side = max(1, int(round(cfg.min_size * scale)))
        self.calls += 1
        if min(img.shape) < min_side:
            return []
        found = self._casc.detectMultiScale(img, scaleFactor=cfg.scale_factor, minNeighbors=cfg.min_neighbors, minSize=(min_side, min_side))
        if len(found) == 0:
            return []
        inv = 1.0 / scale
        boxes: list[Box] = []
        for x, y, bw, bh in sorted(found.tolist(), key=lambda b: b[2] * b[3], reverse=True)[: cfg.max_faces]:
            x0, y0 = min(w - 1, int(round(x * inv))), min(h - 1, int(round(y * inv)))
            boxes.append((x0, y0, min(w - x0, int(round(bw * inv))), min(h - y0, int(round(bh * inv)))))
        return boxes


SECOND_LOOK = {"scale_factor": 1.05, "min_neighbors": 3, "min_size": 24, "detect_width": 1280}
"""Settings of StillDetector's second look (each never stricter than the configured one): finer size
steps, a larger image, fewer overlapping hits needed. Too slow for every frame of the loop, cheap for one photo."""


class StillDetector:
    """Faces in a still photo (`photo`, `calibrate --photos`): the loop's detector first, and where it finds
    none a second look with SECOND_LOOK, which finds faces the loop's 320-px downscale loses (a person
    20-50 px wide in a large photo). Same interface as FaceDetector."""

    def __init__(self, cfg: DetectConfig) -> None:
        from dataclasses import replace

        self.first = FaceDetector(cfg)
        self.second = FaceDetector(replace(
            cfg, scale_factor=min(cfg.scale_factor, SECOND_LOOK["scale_factor"]),
            min_neighbors=min(cfg.min_neighbors, SECOND_LOOK["min_neighbors"]),
            min_size=min(cfg.min_size, SECOND_LOOK["min_size"]),
            detect_width=max(cfg.detect_width, SECOND_LOOK["detect_width"])))
        self.second_looks = 0

    def detect(self, gray: np.ndarray) -> list[Box]:
        boxes = self.first.detect(gray)
        if boxes:
            return boxes
        self.second_looks += 1
        return self.second.detect(gray)


class SkippingDetector:
    """Runs Haar on the first frame and every `every`-th frame after it; reuses the last boxes in between."""

    def __init__(self, detector: FaceDetector, every: int) -> None:
        if every < 1:
            raise ValueError("every must be >= 1")
        self.detector = detector
        self.every = int(every)
        self._n = 0
        self.last: list[Box] = []

    def boxes(self, frame: Frame) -> tuple[list[Box], bool]:
        """(boxes, ran): a bad frame raises FrameError and makes the next good frame run Haar."""
        try:
            if self._n % self.every != 0:
                as_gray(frame.image)  # a bad frame is refused on skipped frames too
                self._n += 1
                return self.last, False
            self.last = self.detector.detect(frame.image)
        except FrameError:
            self._n = 0
            self.last = []
            raise
        self._n += 1
        return self.last, True

    def reset(self) -> None:
        """Forget the last boxes; the next frame runs Haar."""
        self._n = 0
        self.last = []
