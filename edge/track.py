"""Tracking face detection: full-frame Haar scans only now and then, a small region search in between.

A full-frame scan at 320 px costs ~18 ms here (far more on a Pi); re-finding a face we already know
is much cheaper: cut a region around its last box, scale it so the face is about `track_size` px
wide, and run the same cascade with minSize/maxSize close to that size. That is a few scales over
an image of ~80x80 px instead of ~25 scales over 320x240. Full scans still run when no face is
tracked (every `idle_period` s), every `scan_period` s while faces are tracked (to find newcomers;
the tracked faces, just re-found, are painted out first, because a face costs the cascade far more
than background) and on any frame where a tracked face is not re-found (that full scan is the
authority: a face it does not see is dropped). Boxes are smoothed a little so the classifier's crop
does not jitter.

Haar runs at most `detect_hz` times a second (clip or camera time); the frames between reuse the
last boxes. `TrackingDetector.boxes(frame)` has the same contract as `SkippingDetector.boxes`, so the
loop does not know which one it drives.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from edge.config import DetectConfig
from edge.detect import FaceDetector
from edge.errors import FrameError
from edge.frames import as_gray
from edge.types import Box, Frame

# The region search's settings: the cheapest that still re-find a face on nearly every frame with the
# full scan's box (measured on the bundled sample and tests/fixtures/moving.mp4: docs/PERFORMANCE.md,
# "The tracker's region search"). A face that moves further than MARGIN in one frame is lost and found
# by the next full scan.
MARGIN = 0.2          # the region reaches this many face widths beyond the last box on each side
SIZE_SLACK = 1.3      # minSize/maxSize = track_size / SLACK .. track_size * SLACK
REGION_SCALE = 1.15   # scaleFactor in the region: the size is known, 4 scales bracket it
REGION_NEIGHBORS = 3  # minNeighbors in the region (at most detect.min_neighbors): we know a face is there
MATCH_IOU = 0.3       # a full-scan box continues a track when it overlaps it at least this much
RATE_SLACK = 0.005    # s: camera timestamps jitter; detect_hz 10 on a 30 fps camera is every 3rd frame, not 4th


def _iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


@dataclass
class _Track:
    """One followed face: its smoothed box in frame pixels (floats, so smoothing does not creep)."""

    x: float
    y: float
    w: float
    h: float

    def box(self) -> tuple[float, float, float, float]:
        return (self.x, self.y, self.w, self.h)

    def follow(self, b: tuple[float, float, float, float], keep: float) -> None:
        """Move towards the new box, keeping `keep` of the old one (0 = jump)."""
        k = 1.0 - keep
        self.x += k * (b[0] - self.x)
        self.y += k * (b[1] - self.y)
        self.w += k * (b[2] - self.w)
        self.h += k * (b[3] - self.h)


class TrackingDetector:
    """Haar on regions around tracked faces; full-frame scans when idle, periodically and when one is lost."""

    def __init__(self, detector: FaceDetector, cfg: DetectConfig) -> None:
        self.detector = detector
        self.cfg = cfg
        self.tracks: list[_Track] = []
        self.last: list[Box] = []
        self.full_scans = 0        # full-frame Haar runs (the same count as detector.calls)
        self.region_searches = 0   # region Haar runs
        self.lost = 0              # region searches that did not re-find their face
        self._next_full = -math.inf
        self._t = -math.inf
        self._last_run = -math.inf
        self._gap = 1.0 / cfg.detect_hz - RATE_SLACK if cfg.detect_hz > 0 else -math.inf
        side = max(8, int(cfg.track_size))
        self._side = side
        self._min = max(8, int(round(side / SIZE_SLACK)))
        self._max = int(round(side * SIZE_SLACK))
        self._buf: np.ndarray | None = None   # reused region buffer
        self._mask: np.ndarray | None = None  # reused frame copy for the newcomer scan

    # ------------------------------------------------------------------ the stage interface
    def boxes(self, frame: Frame) -> tuple[list[Box], bool]:
        """(boxes, ran): boxes largest first in frame pixels; ran is False only when no Haar ran at all."""
        try:
            gray = as_gray(frame.image)
            t = frame.timestamp
            if t < self._t:               # a new source restarted its clock: start over
                self._next_full = self._last_run = -math.inf
            self._t = t
            if t - self._last_run < self._gap:   # at most detect_hz: the last boxes stand
                return self.last, False
            self._last_run = t
            if not self.tracks:
                if t < self._next_full:
                    self._last_run = -math.inf    # no Haar ran: the next frame may scan
                    return self.last, False
                self._full(gray, t)
            elif not self._search_regions(gray):
                self._full(gray, t)           # a face was not re-found: the full scan decides
            elif t >= self._next_full:
                self._newcomers(gray, t)
        except FrameError:
            self.reset()
            raise
        self.last = self._output(gray.shape)
        return self.last, True

    def reset(self) -> None:
        """Forget every track; the next frame runs a full scan."""
        self.tracks = []
        self.last = []
        self._next_full = self._last_run = -math.inf

    # ------------------------------------------------------------------ the two kinds of search
    def _full(self, gray: np.ndarray, t: float) -> None:
        """Full-frame scan; its boxes continue the tracks they overlap, the rest start new ones."""
        found = self.detector.detect(gray)
        self.full_scans += 1
        old, tracks = self.tracks, []
        for b in found:
            fb = (float(b[0]), float(b[1]), float(b[2]), float(b[3]))
            best = max(old, key=lambda tr: _iou(tr.box(), fb), default=None)
            if best is not None and _iou(best.box(), fb) >= MATCH_IOU:
                old.remove(best)
                best.follow(fb, self.cfg.smooth)
                tracks.append(best)
            else:
                tracks.append(_Track(*fb))
        self.tracks = tracks
        self._next_full = t + (self.cfg.scan_period if tracks else self.cfg.idle_period)

    def _newcomers(self, gray: np.ndarray, t: float) -> None:
        """Periodic full scan with the tracked faces painted out: they were just re-found, and a
        face costs the cascade ~6x more than background (13.6 vs 2.2 ms on the sample here)."""
        if self._mask is None or self._mask.shape != gray.shape:
            self._mask = np.empty_like(gray)
        masked = self._mask
        np.copyto(masked, gray)
        for tr in self.tracks:
            x0, y0 = max(0, int(tr.x)), max(0, int(tr.y))
            roi = masked[y0:int(math.ceil(tr.y + tr.h)), x0:int(math.ceil(tr.x + tr.w))]
            if roi.size:
                roi[:] = int(roi.mean())
        self.full_scans += 1
        for b in self.detector.detect(masked):
            fb = (float(b[0]), float(b[1]), float(b[2]), float(b[3]))
            if all(_iou(tr.box(), fb) < MATCH_IOU for tr in self.tracks):
                self.tracks.append(_Track(*fb))
        self._next_full = t + self.cfg.scan_period

    def _search_regions(self, gray: np.ndarray) -> bool:
        """Re-find every track near its last box; False as soon as one is not found (then a full scan runs)."""
        for tr in self.tracks:
            b = self._search(gray, tr)
            self.region_searches += 1
            if b is None:
                self.lost += 1
                return False
            tr.follow(b, self.cfg.smooth)
        if len(self.tracks) > 1:   # two tracks that ended on the same face: keep the first
            keep: list[_Track] = []
            for tr in self.tracks:
                if all(_iou(tr.box(), k.box()) < MATCH_IOU for k in keep):
                    keep.append(tr)
            self.tracks = keep
        return True

    def _search(self, gray: np.ndarray, tr: _Track) -> tuple[float, float, float, float] | None:
        """The face in a region around `tr`, scaled so the face is about track_size px wide."""
        H, W = gray.shape
        m = MARGIN * max(tr.w, tr.h)
        x0, y0 = max(0, int(tr.x - m)), max(0, int(tr.y - m))
        x1, y1 = min(W, int(math.ceil(tr.x + tr.w + m))), min(H, int(math.ceil(tr.y + tr.h + m)))
        if x1 - x0 < 8 or y1 - y0 < 8:
            return None
        s = self._side / max(1.0, tr.w)
        rw, rh = max(1, int(round((x1 - x0) * s))), max(1, int(round((y1 - y0) * s)))
        if min(rw, rh) < self._min:
            return None
        if self._buf is None or self._buf.shape[0] < rh or self._buf.shape[1] < rw:
            self._buf = np.empty((max(rh, 2 * self._side), max(rw, 2 * self._side)), np.uint8)
        dst = self._buf[:rh, :rw]
        cv2.resize(gray[y0:y1, x0:x1], (rw, rh), dst=dst, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
        cfg = self.cfg
        found = self.detector.cascade.detectMultiScale(dst, scaleFactor=REGION_SCALE, minNeighbors=min(REGION_NEIGHBORS, cfg.min_neighbors),
                                                       minSize=(self._min, self._min), maxSize=(self._max, self._max))
        if len(found) == 0:
            return None
        sx, sy = (x1 - x0) / rw, (y1 - y0) / rh
        best, best_iou = None, 0.0
        for fx, fy, fw, fh in found.tolist():
            b = (x0 + fx * sx, y0 + fy * sy, fw * sx, fh * sy)
            v = _iou(b, tr.box())
            if v > best_iou:
                best, best_iou = b, v
        return best

    def _output(self, shape: tuple[int, int]) -> list[Box]:
        """Integer boxes clipped to the frame, largest first, at most max_faces."""
        H, W = shape
        self.tracks.sort(key=lambda tr: tr.w * tr.h, reverse=True)
        del self.tracks[self.cfg.max_faces:]
        out: list[Box] = []
        for tr in self.tracks:
            x, y = min(W - 1, max(0, int(round(tr.x)))), min(H - 1, max(0, int(round(tr.y))))
            out.append((x, y, max(1, min(W - x, int(round(tr.w)))), max(1, min(H - y, int(round(tr.h))))))
        return out
