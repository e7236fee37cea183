"""The edge loop: the one place that passes values source -> detector -> classifier -> smoother -> LED + log.

Stages do not know each other; edge.pipeline.Pipeline owns them (builds, reloads, closes), the loop
passes values between them, keeps stats, and checks the stop/reload events between frames. Nothing
is logged per frame.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import numpy as np

from edge.config import Config, DetectConfig
from edge.errors import FrameError, SourceStalled
from edge.gate import ClassifyGate
from edge.types import Box, Mood, Prediction

if TYPE_CHECKING:
    from edge.pipeline import Pipeline

log = logging.getLogger("emotion-edge")


@dataclass
class Control:
    """Set from signal handlers or other threads; the loop checks them between frames."""

    stop: threading.Event = field(default_factory=threading.Event)
    reload: threading.Event = field(default_factory=threading.Event)


class _Ring:
    """Fixed-size buffer of recent timings (ms) for p50/p95 without per-frame allocation."""

    def __init__(self, n: int = 1024) -> None:
        self.buf = np.zeros(n, np.float64)
        self.n = 0

    def add(self, v: float) -> None:
        self.buf[self.n % len(self.buf)] = v
        self.n += 1

    def pct(self, q: float) -> float:
        k = min(self.n, len(self.buf))
        return float(np.percentile(self.buf[:k], q)) if k else 0.0


FRAMING_WINDOW = 60.0  # seconds of faces `status` judges the framing over
FRAMING_EVERY = 0.5    # seconds between two measurements of the largest face (not every frame)


class FramingWindow:
    """The last minute's largest face (box, grey level, contrast, sharpness, frame brightness), measured
    twice a second into fixed arrays, so `status` can give `view`'s framing advice (edge/aim.py) without
    pictures. The loop's cost per frame is one comparison (`due`); a measurement is edge.aim.look."""

    COLUMNS = ("x", "y", "w", "h", "mean", "std", "sharpness", "frame_mean")

    def __init__(self, window: float = FRAMING_WINDOW, every: float = FRAMING_EVERY) -> None:
        self.window, self.every = window, every
        n = int(np.ceil(window / every)) + 1
        self.t = np.full(n, -np.inf)
        self.face = np.zeros(n, bool)
        self.vals = np.zeros((n, len(self.COLUMNS)), np.float64)
        self.n = 0
        self.frame_wh = (0, 0)
        self.last_t = -np.inf
        self.next_t = -np.inf

    def due(self, t: float) -> bool:
        """A measurement is due (or the clock went back: a new clip, a restarted camera)."""
        return not self.last_t <= t < self.next_t

    def add(self, t: float, gray: np.ndarray, boxes: list[Box], cfg: DetectConfig) -> None:
        """One sample at frame time `t`: the largest face (boxes[0]) measured, or no face."""
        from edge.aim import look

        if t < self.last_t:  # another clock: the old samples say nothing about now
            self.t.fill(-np.inf)
        self.last_t, self.next_t = t, t + self.every
        i = self.n % len(self.t)
        self.n += 1
        self.t[i] = t
        self.frame_wh = (int(gray.shape[1]), int(gray.shape[0]))
        self.face[i] = bool(boxes)
        if boxes:
            lk = look(gray, boxes[0], cfg)
            self.vals[i] = (*lk.box, lk.mean, lk.std, lk.sharpness, lk.frame_mean)

    def summary(self, cfg: DetectConfig) -> dict[str, object] | None:
        """The window's figures (medians over the samples with a face) and `view`'s advice for them;
        None before the first sample. For status.json: a few small arrays, every few seconds."""
        from edge.aim import FaceLook, advise_recent, detector_scale

        if self.n == 0:
            return None
        recent = self.t >= self.last_t - self.window
        faces = recent & self.face
        seconds = float(self.last_t - self.t[recent].min())
        out: dict[str, object] = {"seconds": round(seconds, 1), "samples": int(recent.sum()),
                                  "face_samples": int(faces.sum()), "frame": list(self.frame_wh)}
        lk = None
        if faces.any():
            x, y, w, h, mean, std, sharp, frame_mean = np.median(self.vals[faces], axis=0)
            box = tuple(int(round(v)) for v in (x, y, w, h))
            lk = FaceLook(box, box[2], int(round(box[2] * detector_scale(self.frame_wh[0], cfg))),  # type: ignore[arg-type]
                          float(mean), float(std), float(sharp), float(frame_mean))
            out.update(box=list(box), detector_width=lk.detector_width, mean=round(lk.mean, 1), std=round(lk.std, 1),
                       sharpness=round(lk.sharpness, 1), frame_mean=round(lk.frame_mean, 1))
        out["advice"] = advise_recent(lk, self.frame_wh, seconds, cfg)
        return out


@dataclass
class Stats:
    """Running counters; `snapshot()` is what the service and bench report."""

    frames: int = 0
    frames_skipped: int = 0     # frames where Haar did not run (boxes reused)
    detections: int = 0         # Haar runs
    classifications: int = 0    # faces classified
    faces_seen: int = 0         # frames with at least one face
    bad_frames: int = 0
    stalls: int = 0             # source polls that timed out without a frame
    started: float = field(default_factory=time.monotonic)
    detect_ms: _Ring = field(default_factory=_Ring)
    classify_ms: _Ring = field(default_factory=_Ring)
    framing: FramingWindow = field(default_factory=FramingWindow)  # the last minute's largest face, for `status`
    _fps_t: float = field(default_factory=time.monotonic)
    _fps_n: int = 0
    fps: float = 0.0

    def tick_fps(self, now: float) -> None:
        dt = now - self._fps_t
        if dt >= 1.0:
            self.fps = (self.frames - self._fps_n) / dt
            self._fps_t, self._fps_n = now, self.frames

    def snapshot(self) -> dict[str, float | int]:
        elapsed = time.monotonic() - self.started
        return {
            "frames": self.frames, "fps": round(self.fps or (self.frames / elapsed if elapsed > 0 else 0.0), 2),
            "frames_skipped": self.frames_skipped, "detections": self.detections,
            "classifications": self.classifications, "faces_seen": self.faces_seen, "bad_frames": self.bad_frames, "stalls": self.stalls,
            "detect_ms_p50": round(self.detect_ms.pct(50), 3), "detect_ms_p95": round(self.detect_ms.pct(95), 3),
            "classify_ms_p50": round(self.classify_ms.pct(50), 3), "classify_ms_p95": round(self.classify_ms.pct(95), 3),
        }


def format_stats(s: dict[str, float | int], mood: Mood | None) -> str:
    m = f"mood {mood.label} ({mood.confidence:.2f})" if mood else "mood none"
    return (f"{s['fps']:.1f} fps, {m}, detect {s['detect_ms_p50']:.1f} ms, classify {s['classify_ms_p50']:.2f} ms, "
            f"skipped {s['frames_skipped']}, faces seen {s['faces_seen']}, bad frames {s['bad_frames']}")


def run_loop(pipe: Pipeline, cfg: Config, control: Control, max_frames: int | None = None,
             on_frame: Callable[[Stats, Mood], None] | None = None, stats: Stats | None = None) -> str:
    """Process frames until the source ends, max_frames is reached or control asks to stop/reload."""
    stats = stats if stats is not None else Stats()
    gate = ClassifyGate(cfg.classify, settle=cfg.mood.hold + cfg.mood.half_life)
    led_state: str | None = None
    max_faces = cfg.detect.max_faces
    next_stats = time.monotonic() + cfg.stats.interval
    clock = time.perf_counter
    mood: Mood = pipe.smoother.mood
    framing = stats.framing
    last_t, last_wall = 0.0, time.monotonic()
    while True:
        if control.stop.is_set():
            return "stop"
        if control.reload.is_set():
            return "reload"
        if max_frames is not None and stats.frames >= max_frames:
            return "max_frames"
        try:
            frame = pipe.source.read()
        except SourceStalled:
            # No frame within the source's poll time: show it, keep checking stop/reload, and do
            # not call on_frame, so the service's watchdog pings stop while the camera is gone.
            stats.stalls += 1
            pipe.led.show_state("no_camera", last_t + (time.monotonic() - last_wall))
            continue
        if frame is None:
            return "end"
        stats.frames += 1
        t = last_t = frame.timestamp
        last_wall = time.monotonic()
        try:
            t0 = clock()
            boxes, ran = pipe.detector.boxes(frame)
            if ran:
                stats.detect_ms.add((clock() - t0) * 1e3)
                stats.detections += 1
            else:
                stats.frames_skipped += 1
            readings: list[tuple[Box, Prediction]] | None = None  # (box, prediction) of the faces read this frame
            if boxes:
                stats.faces_seen += 1
                # at most classify_hz, and steady_hz while the mood is settled (edge/gate.py); while
                # a calibration is taken (its LED state shows) every allowed frame counts
                if gate.due(t, frame.image, boxes[:max_faces], force=led_state is not None):
                    readings = []
                    for box in boxes[:max_faces]:
                        t0 = clock()
                        readings.append((box, pipe.classifier.classify(frame.image, box)))
                        stats.classify_ms.add((clock() - t0) * 1e3)
                        stats.classifications += 1
            else:
                gate.forget()
        except FrameError:
            stats.bad_frames += 1
            continue
        if framing.due(t):  # twice a second: the largest face's size and light, for `status`'s framing advice
            framing.add(t, frame.image, boxes, cfg.detect)
        readings, led_state = pipe.calibration.update(t, len(boxes), readings, frame.image)
        mood = pipe.smoother.update(t, readings[0][1] if readings else None, bool(boxes))  # the largest face drives the mood
        if readings:
            gate.read(t, readings[0][1].top, mood.label)
        if led_state is None:
            pipe.led.show(mood, t)
        else:  # a calibration is being taken or has just ended: the LED says so instead of the mood
            pipe.led.show_state(led_state, t)
        if pipe.share is not None:  # `emotion-edge view`: a clock read per frame unless a view asks
            pipe.share.offer(frame.image, readings, mood, t, stats.fps, boxes)
        if pipe.eventlog is not None:
            pipe.eventlog.record(mood, len(boxes), _largest(boxes), time.monotonic(), readings)
        now = time.monotonic()
        stats.tick_fps(now)
        if on_frame is not None:
            on_frame(stats, mood)
        if now >= next_stats:
            next_stats = now + cfg.stats.interval
            log.info("stats: %s", format_stats(stats.snapshot(), mood))


def _largest(boxes: list[Box]) -> Box | None:
    return boxes[0] if boxes else None
