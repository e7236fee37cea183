"""Frames from the running service for `emotion-edge view`: small, grey, only while a view asks.

The service holds the camera, so a viewer drops a request file into the service's request folder
(the group-writable drop box `calibrate` uses) and renews it every second. While a fresh request is
there, the service writes the newest frame, downscaled and grey, beside it at most `max_rate` times a
second (mode 0640: the service's group only; each write replaces the last by rename, so only the newest
exists). The request goes stale after EXPIRE_SECONDS without renewal, or the viewer removes it; then
the frame is deleted, and at the service's stop too. Per frame the service pays one clock read while
nobody asks, a stat twice a second to look for a request.
"""
from __future__ import annotations

import json
import logging
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import cv2
import numpy as np

from edge.calibration.requests import ensure_requests_dir, read_json_small, requests_dir, write_json_atomic
from edge.config import DetectConfig
from edge.safeio import read_bytes
from edge.types import Box, Mood, Prediction

log = logging.getLogger(__name__)

REQUEST_NAME = "view.request"
FRAME_NAME = "view.frame"
MAGIC = b"EMOTION-EDGE-VIEW 1\n"
POLL_SECONDS = 0.5       # how often the service looks for a request while none is active
EXPIRE_SECONDS = 3.0     # a request not renewed for this long is over (the viewer renews every RENEW_SECONDS)
RENEW_SECONDS = 1.0
MAX_RATE = 4.0           # frames written per second at most
MIN_WIDTH, MAX_WIDTH = 32, 320
DEFAULT_WIDTH = 160
FRAME_MODE = 0o640
MAX_FRAME_BYTES = MAX_WIDTH * MAX_WIDTH + (64 << 10)  # pixels (never taller than wide by much) + header

FaceIn = tuple[Box, "Prediction | None"]


class FrameShare:
    """The service's side: `offer()` once per frame (cheap when nobody looks), `close()` at stop.

    `offer(image, faces, mood, t, fps)`: `image` the grey frame, `faces` (box, prediction or None) in
    its pixels, largest first. Never raises for disk trouble: one warning, then it waits for the next request.
    """

    def __init__(self, state_dir: str | Path, *, detect: DetectConfig | None = None, max_rate: float = MAX_RATE,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time) -> None:
        self.dir = requests_dir(Path(state_dir))
        self.request_path = self.dir / REQUEST_NAME
        self.frame_path = self.dir / FRAME_NAME
        self.detect = detect or DetectConfig()
        self.interval = 1.0 / max_rate
        self._clock, self._wall = clock, wall
        self._next = 0.0
        self.active = False
        self.width = DEFAULT_WIDTH
        self.writes = 0
        self._buf: np.ndarray | None = None
        self._last_reads: list[tuple[str, float]] = []  # per face: the last classification (frames between have none)
        self._warned = False
        try:
            ensure_requests_dir(Path(state_dir))
        except OSError as e:
            log.warning("view requests disabled: cannot create %s (%s)", self.dir, e)
        self._remove_frame()  # a frame left by a service that was killed

    # -- per frame --------------------------------------------------------------------------
    def offer(self, image: np.ndarray, faces: Sequence[FaceIn] | None, mood: Mood | None, t: float,
              fps: float | None = None, boxes: Sequence[Box] = ()) -> None:
        """`faces` None (no classification this frame): `boxes` are drawn with the last reading of each."""
        now = self._clock()
        if now < self._next:
            return
        if not self.active:
            self._next = now + POLL_SECONDS
            width = self._fresh_request()
            if width is None:
                return
            self.active, self.width = True, width
            log.info("a view asked for frames (%d px wide)", width)
        else:
            width = self._fresh_request()
            if width is None:
                self._end()
                self._next = now + POLL_SECONDS
                return
            self.width = width
        self._next = now + self.interval
        try:
            self._write(image, faces if faces is not None else [(b, None) for b in boxes], mood, t, fps)
        except (OSError, ValueError, cv2.error) as e:
            if not self._warned:
                log.warning("cannot share a frame with the view: %s", e)
                self._warned = True
            self._end()
            self._next = now + POLL_SECONDS
            return
        if not os.path.lexists(self.request_path):  # the viewer left while we wrote: leave nothing behind
            self._end()

    def close(self) -> None:
        """At the service's stop: the frame goes; a viewer's request is the viewer's to remove."""
        self._end()

    # -- inside -----------------------------------------------------------------------------
    def _fresh_request(self) -> int | None:
        """The asked width if a request renewed within EXPIRE_SECONDS is there, else None."""
        try:
            st = os.lstat(self.request_path)
        except OSError:
            return None
        if self._wall() - st.st_mtime > EXPIRE_SECONDS:
            return None
        req = read_json_small(self.request_path)
        if req is None:
            return None
        w = req.get("width", DEFAULT_WIDTH)
        if not isinstance(w, int) or isinstance(w, bool):
            w = DEFAULT_WIDTH
        return max(MIN_WIDTH, min(MAX_WIDTH, w))

    def _end(self) -> None:
        if self.active:
            log.info("view ended; %d frames shared", self.writes)
        self.active = False
        self._remove_frame()

    def _remove_frame(self) -> None:
        try:
            os.unlink(self.frame_path)
        except FileNotFoundError:
            pass
        except OSError as e:
            log.warning("cannot remove %s: %s", self.frame_path, e)

    def _write(self, image: np.ndarray, faces: Sequence[FaceIn], mood: Mood | None, t: float, fps: float | None) -> None:
        from edge.aim import look

        h, w = image.shape[:2]
        sw = min(self.width, w)
        sh = max(1, int(round(h * sw / w)))
        if self._buf is None or self._buf.shape != (sh, sw):
            self._buf = np.empty((sh, sw), np.uint8)
        small = image if sw == w else cv2.resize(image, (sw, sh), dst=self._buf, interpolation=cv2.INTER_AREA)
        frame_mean = float(image.mean())
        out = []
        for i, (box, pred) in enumerate(faces):
            lk = look(image, box, self.detect, frame_mean)
            while len(self._last_reads) <= i:
                self._last_reads.append(("", 0.0))
            if pred is not None:
                self._last_reads[i] = (pred.top, round(pred.confidence, 3))
            label, conf = self._last_reads[i]
            out.append({"box": list(lk.box), "label": label, "conf": conf,
                        "mean": round(lk.mean, 1), "std": round(lk.std, 1), "sharp": round(lk.sharpness, 1)})
        head = {"w": sw, "h": sh, "src_w": w, "src_h": h, "t": float(t), "wall": self._wall(),
                "fps": None if fps is None else round(float(fps), 1), "frame_mean": round(frame_mean, 1),
                "mood": [mood.label, round(float(mood.confidence), 3)] if mood is not None else None, "faces": out}
        data = MAGIC + json.dumps(head).encode("utf-8") + b"\n" + np.ascontiguousarray(small).tobytes()
        from edge.safeio import write_atomic

        write_atomic(self.frame_path, data, FRAME_MODE, exact=True)
        self.writes += 1


# -- the viewer's side ---------------------------------------------------------------------------
@dataclass
class SharedFace:
    box: Box                 # in the service's frame pixels
    label: str
    confidence: float
    mean: float
    std: float
    sharpness: float


@dataclass
class SharedFrame:
    image: np.ndarray        # the downscaled grey frame
    src_size: tuple[int, int]
    t: float
    wall: float
    fps: float | None
    frame_mean: float
    mood: tuple[str, float] | None
    faces: list[SharedFace] = field(default_factory=list)


class ShareError(ValueError):
    """A frame file that is not what the service writes."""


def parse_frame(data: bytes) -> SharedFrame:
    if not data.startswith(MAGIC):
        raise ShareError("not a view frame")
    try:
        line, pixels = data[len(MAGIC):].split(b"\n", 1)
        head = json.loads(line.decode("utf-8"))
        w, h, sw, sh = (int(head[k]) for k in ("w", "h", "src_w", "src_h"))
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
        raise ShareError(f"bad view frame header ({e})") from None
    if not (0 < w <= MAX_WIDTH and 0 < h <= 4 * MAX_WIDTH and 0 < sw <= 8192 and 0 < sh <= 8192) or len(pixels) != w * h:
        raise ShareError("view frame size does not match its header")
    faces = []
    for f in head.get("faces") or []:
        try:
            faces.append(SharedFace(tuple(int(v) for v in f["box"])[:4], str(f.get("label", "")), float(f.get("conf", 0.0)),
                                    float(f.get("mean", 0.0)), float(f.get("std", 0.0)), float(f.get("sharp", 0.0))))
        except (KeyError, TypeError, ValueError):
            raise ShareError("bad face in view frame") from None
    mood = head.get("mood")
    fps = head.get("fps")
    return SharedFrame(np.frombuffer(pixels, np.uint8).reshape(h, w), (sw, sh), float(head.get("t", 0.0)),
                       float(head.get("wall", 0.0)), float(fps) if isinstance(fps, (int, float)) else None,
                       float(head.get("frame_mean", 0.0)),
                       (str(mood[0]), float(mood[1])) if isinstance(mood, list) and len(mood) == 2 else None, faces)


class FrameReader:
    """The viewer's side: `renew()` keeps the request fresh, `read()` the newest frame, `close()` ends it.

    `renew` raises PermissionError for a user outside the service's group, FileNotFoundError when the
    service has no request folder."""

    def __init__(self, state_dir: str | Path, width: int = DEFAULT_WIDTH, wall: Callable[[], float] = time.time) -> None:
        self.dir = requests_dir(Path(state_dir))
        self.request_path = self.dir / REQUEST_NAME
        self.frame_path = self.dir / FRAME_NAME
        self.width = max(MIN_WIDTH, min(MAX_WIDTH, int(width)))
        self.id = secrets.token_hex(6)
        self._wall = wall
        self._renewed = -1e9
        self._last_wall = -1.0

    def renew(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._renewed < RENEW_SECONDS:
            return
        if not self.dir.is_dir():
            raise FileNotFoundError(f"{self.dir} does not exist (is the service running?)")
        write_json_atomic(self.request_path, {"id": self.id, "width": self.width, "time": self._wall(), "uid": os.getuid()},
                          0o644)  # the service reads it whatever group the folder gives it
        self._renewed = now

    def read(self) -> SharedFrame | None:
        """The newest frame if the service wrote one since the last call, else None."""
        try:
            data = read_bytes(self.frame_path, MAX_FRAME_BYTES)
        except OSError:
            return None
        try:
            frame = parse_frame(data)
        except ShareError:
            return None
        if frame.wall <= self._last_wall:
            return None
        self._last_wall = frame.wall
        return frame

    def close(self) -> None:
        """Request first, then the frame: the service removes a frame it writes after the request is gone."""
        for p in (self.request_path, self.frame_path):
            try:
                os.unlink(p)
            except OSError:
                pass


def request_of(state_dir: str | Path) -> dict[str, Any] | None:
    """The current view request (tests and `status`)."""
    return read_json_small(requests_dir(Path(state_dir)) / REQUEST_NAME)
