"""The whole loop on real replays: real Haar, real LiteRT, real SQLite, gpiozero mock pins."""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from gpiozero.pins.mock import MockFactory, MockPWMPin

from edge.config import Config, load_config
from edge.led import NullLed, blend_color
from edge.loop import Control, Stats, run_loop
from edge.pipeline import Pipeline
from edge.types import Frame

from .conftest import CLIP, replay_labels

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "edge" / "samples" / "sample.mp4"
TIMELINE = json.loads((ROOT / "edge" / "samples" / "sample.json").read_text())["timeline"]


def _cfg(tmp_path: Path, **over) -> Config:
    base = {"source": {"source": str(CLIP)}, "led": {"backend": "gpio"}, "log": {"db": str(tmp_path / "log.db")}}
    for sec, vals in over.items():
        base.setdefault(sec, {}).update(vals)
    return load_config(None, base)


class ListSource:
    """In-memory replay of given images (for frames no file can hold: empty, wrong dtype)."""

    def __init__(self, images: list, fps: float = 15.0) -> None:
        self.images, self.fps, self.i, self.closed = images, fps, 0, 0

    def read(self):
        if self.i >= len(self.images):
            return None
        f = Frame(self.images[self.i], self.i / self.fps, self.i)
        self.i += 1
        return f

    def close(self) -> None:
        self.closed += 1


def test_sample_ends_with_the_led_colour_of_the_expected_mood(tmp_path):
    """The bundled clip ends on a happy face: the mood is happy and the mock pins show its blend."""
    factory = MockFactory(pin_class=MockPWMPin)
    cfg = _cfg(tmp_path, source={"source": str(SAMPLE)}, led={"fade": 0.3})
    parts = Pipeline.build(cfg, pin_factory=factory)
    try:
        assert run_loop(parts, cfg, Control()) == "end"
        mood = parts.smoother.mood
        assert mood.label == TIMELINE[-1]["mood"] == "happy"
        want = np.array(blend_color(mood.probs, mood.labels, cfg.led.colors)) * cfg.led.brightness
        pins = np.array([factory.pin(p).state for p in (cfg.led.red_pin, cfg.led.green_pin, cfg.led.blue_pin)])
        assert np.allclose(pins, want, atol=0.02), (pins, want)
        assert pins.max() > 0.1
    finally:
        parts.close()
    assert [factory.pin(p).state for p in (17, 27, 22)] == [0, 0, 0]  # LED off on exit


def test_sample_mood_timeline_follows_the_script(tmp_path):
    """Inside each scripted segment (after hold + smoothing) the mood is the scripted one most of the time."""
    cfg = _cfg(tmp_path, source={"source": str(SAMPLE)}, led={"backend": "none"})
    seen = replay_labels(cfg)
    for seg in TIMELINE:
        settle = cfg.mood.no_face_timeout if seg["mood"] == "none" else cfg.mood.hold + 1.0
        inside = [lab for t, lab in seen if seg["start"] + settle <= t < seg["end"]]
        assert inside, f"segment {seg} was never checked"
        share = inside.count(seg["mood"]) / len(inside)
        assert share >= 0.6, (seg, share)


def _run_to_end(parts: Pipeline, cfg: Config) -> Stats:
    """Run the loop over the parts' source to its end, then close the parts."""
    stats = Stats()
    try:
        run_loop(parts, cfg, Control(), stats=stats)
    finally:
        parts.close()
    return stats


def _replay(cfg: Config, with_log: bool = False) -> tuple[Pipeline, Stats]:
    """Run the loop over the configured clip to its end; the parts come back closed."""
    parts = Pipeline.build(cfg, with_log=with_log)
    return parts, _run_to_end(parts, cfg)


def test_frame_skipping_really_skips(tmp_path):
    parts, stats = _replay(_cfg(tmp_path, detect={"mode": "skip", "detect_every": 4, "detect_hz": 0}, led={"backend": "none"}))
    n = stats.frames
    assert n > 10
    assert parts.detector.detector.calls == stats.detections == -(-n // 4)
    assert stats.frames_skipped == n - stats.detections


@pytest.mark.parametrize("hz", [2.0, 4.0])
def test_classification_rate_is_capped_by_classify_hz(tmp_path, hz):
    """Exactly the classifications the cap allows: a face frame is classified when at least
    1/classify_hz seconds of clip time passed since the last one (counted here independently)."""
    cfg = _cfg(tmp_path, classify={"classify_hz": hz, "steady_hz": hz}, detect={"detect_hz": 0},   # no steady rate,
               led={"backend": "none"})                                                       # a box every frame
    parts = Pipeline.build(cfg, with_log=False)
    face_times: list[float] = []
    boxes_of = parts.detector.boxes

    def recording(frame):
        boxes, ran = boxes_of(frame)
        if boxes:
            face_times.append(frame.timestamp)
        return boxes, ran

    parts.detector.boxes = recording
    stats = _run_to_end(parts, cfg)
    expect, last = 0, -1e18
    for t in face_times:
        if t - last >= 1.0 / hz:
            expect, last = expect + 1, t
    assert len(face_times) >= 15 and stats.classifications == expect
    assert expect < len(face_times) / 2, "the cap must matter on this clip"


def test_bad_frames_are_skipped_and_counted(tmp_path, face_images):
    good = face_images[0][1]
    bad = [np.zeros((0, 0), np.uint8), good.astype(np.float64), np.zeros((5,), np.uint8), None]
    images = [good, *bad, good, good]
    cfg = _cfg(tmp_path, detect={"detect_every": 1})
    parts = Pipeline.build(cfg, with_log=False, open_source=lambda: ListSource(images), led=NullLed(cfg.led))
    stats = Stats()
    assert run_loop(parts, cfg, Control(), stats=stats) == "end"
    assert stats.frames == len(images)
    assert stats.bad_frames == len(bad)
    assert stats.faces_seen == 3


def test_stop_reload_and_max_frames(tmp_path):
    cfg = _cfg(tmp_path, led={"backend": "none"})
    parts = Pipeline.build(cfg, with_log=False)
    try:
        ctl = Control()
        assert run_loop(parts, cfg, ctl, max_frames=5) == "max_frames"
        ctl.reload.set()
        assert run_loop(parts, cfg, ctl) == "reload"
        ctl.reload.clear()
        calls = []

        def stop_after_3(stats, mood):
            calls.append(stats.frames)
            if len(calls) == 3:
                ctl.stop.set()
        assert run_loop(parts, cfg, ctl, on_frame=stop_after_3) == "stop"
        assert len(calls) == 3
    finally:
        parts.close()
        parts.close()  # safe twice


def test_log_holds_mood_changes_not_one_row_per_frame(tmp_path):
    parts, stats = _replay(_cfg(tmp_path, source={"source": str(SAMPLE)}, led={"backend": "none"}), with_log=True)
    assert parts.eventlog is not None and not hasattr(parts, "log")  # the stage, apart from the modules' `log` loggers
    con = sqlite3.connect(tmp_path / "log.db")
    rows = con.execute("SELECT mood FROM events ORDER BY id").fetchall()
    con.close()
    moods = [r[0] for r in rows]
    assert 3 <= len(moods) < stats.frames / 5
    assert moods[-1] == "happy" and "none" in moods


def _record_calls(parts: Pipeline) -> tuple[list[tuple[float, bool]], list[float]]:
    """Wrap the detector and the classifier: (frame time, Haar ran) per detector call, frame time per face read."""
    det_calls: list[tuple[float, bool]] = []
    reads: list[float] = []
    boxes_of, classify = parts.detector.boxes, parts.classifier.classify

    def boxes(frame):
        out = boxes_of(frame)
        det_calls.append((frame.timestamp, out[1]))
        return out

    def reading(image, box):
        reads.append(current[0])
        return classify(image, box)

    current = [0.0]
    source_read = parts.source.read

    def read():
        f = source_read()
        if f is not None:
            current[0] = f.timestamp
        return f

    parts.detector.boxes, parts.classifier.classify, parts.source.read = boxes, reading, read
    return det_calls, reads


@pytest.mark.parametrize("hz", [3.0, 5.0])
def test_detection_rate_is_capped_by_detect_hz(tmp_path, hz):
    """Haar runs on a frame only when 1/detect_hz s of clip time passed since it last ran; the frames
    between reuse its boxes (a face stays seen on them)."""
    cfg = _cfg(tmp_path, source={"source": str(SAMPLE)}, detect={"detect_hz": hz}, led={"backend": "none"})
    parts = Pipeline.build(cfg, with_log=False)
    calls, _ = _record_calls(parts)
    stats = _run_to_end(parts, cfg)
    ran = [t for t, r in calls if r]
    assert len(ran) == stats.detections and stats.detections < stats.frames / 2, "the cap must matter on this clip"
    gaps = np.diff(ran)
    assert gaps.min() >= 1.0 / hz - 0.006, gaps.min()
    free_cfg = _cfg(tmp_path, source={"source": str(SAMPLE)}, detect={"detect_hz": 0}, led={"backend": "none"})
    _, free = _replay(free_cfg)
    assert free.detections > 1.8 * stats.detections
    assert abs(free.faces_seen - stats.faces_seen) <= 3 * 15 / hz   # boxes reused: faces seen on the frames between


def _still_then(images: list[np.ndarray], seconds: float, fps: float = 15.0) -> list[np.ndarray]:
    n = int(round(seconds * fps))
    return [img for img in images for _ in range(n)]


def _reads_over(tmp_path, images, fps: float = 15.0, **classify) -> tuple[list[float], Stats]:
    cfg = _cfg(tmp_path, classify=classify, led={"backend": "none"})
    parts = Pipeline.build(cfg, with_log=False, open_source=lambda: ListSource(images, fps), led=NullLed(cfg.led))
    _, reads = _record_calls(parts)
    return reads, _run_to_end(parts, cfg)


def test_a_still_face_is_read_at_steady_hz_once_the_mood_is_settled(tmp_path, face_images):
    """One face that does not change, 6 s: classify_hz while the mood forms, then one reading a second."""
    face = dict(face_images)["happy"]
    reads, stats = _reads_over(tmp_path, _still_then([face], 6.0), classify_hz=10.0, steady_hz=1.0)
    settle = 1.0 + 0.8   # mood hold + half-life (the defaults)
    late = [t for t in reads if t > settle + 0.2]
    assert late and all(np.diff(late) >= 1.0 - 1e-6), late      # not re-read within 15 frames
    assert 3 <= len(late) <= 5
    full, _ = _reads_over(tmp_path, _still_then([face], 6.0), classify_hz=10.0, steady_hz=10.0)
    assert len(full) > 2 * len(reads)


def test_a_changed_face_is_read_at_classify_hz_until_the_mood_follows(tmp_path, face_images):
    """A still happy face for 4 s, then an angry face in its place: the first reading of the new face
    comes within 1/steady_hz, and from there the reads are at classify_hz again; with `change` set the
    new face is read on its first frame."""
    faces = dict(face_images)
    images = _still_then([faces["happy"], faces["angry"]], 4.0)   # the model reads both as labelled
    reads, _ = _reads_over(tmp_path, images, classify_hz=10.0, steady_hz=1.0)
    after = [t for t in reads if t >= 4.0]
    assert after[0] < 4.0 + 1.0 + 1e-6
    burst = [t for t in after if t < after[0] + 1.0]
    assert len(burst) >= 6 and np.diff(burst).max() < 0.14       # every other frame at 15 fps: classify_hz
    looked, _ = _reads_over(tmp_path, images, classify_hz=10.0, steady_hz=1.0, change=12.0)
    assert min(t for t in looked if t >= 4.0) == pytest.approx(4.0)


def test_sample_mood_latency_with_the_default_rates_stays_within_half_a_second(tmp_path):
    """The defaults (detect_hz, steady_hz) against detection on every frame and reading at classify_hz:
    after each scripted change of the sample, the mood follows no more than 0.5 s later than it did."""
    def latencies(**over) -> list[float]:
        seen = replay_labels(_cfg(tmp_path, source={"source": str(SAMPLE)}, led={"backend": "none"}, **over))
        out = []
        for seg in TIMELINE[1:]:
            if seg["mood"] != "none":
                out.append(next(t for t, lab in seen if seg["start"] <= t < seg["end"] and lab == seg["mood"]) - seg["start"])
        return out
    base = latencies(detect={"detect_hz": 0}, classify={"steady_hz": 10.0})
    now = latencies()
    assert len(now) == len(base) == 4
    assert all(a <= b + 0.5 for a, b in zip(now, base)), (now, base)


def test_a_calibration_capture_reads_every_allowed_frame_even_of_a_still_face(tmp_path, face_images):
    """A still face, the mood long settled (one reading a second), then a capture starts at 4 s: while
    it runs (its LED state shows) the face is read at classify_hz, so a capture gets its frames."""
    face = dict(face_images)["happy"]   # read happy at 0.99 on every frame: the mood settles (the capture then fails: a smile)
    cfg = _cfg(tmp_path, classify={"classify_hz": 10.0, "steady_hz": 1.0}, calibrate={"seconds": 3.0}, led={"backend": "none"})
    parts = Pipeline.build(cfg, with_log=False, open_source=lambda: ListSource(_still_then([face], 9.0)), led=NullLed(cfg.led))
    _, reads = _record_calls(parts)
    ctl = parts.calibration.add_capture(tmp_path / "state", tmp_path / "cal.json", requests=False)

    def ask_at_4s(stats, mood):
        if stats.frames == 60:
            ctl.start_soon()
    try:
        run_loop(parts, cfg, Control(), on_frame=ask_at_4s)
    finally:
        parts.close()
    before = [t for t in reads if 2.5 <= t < 4.0]
    during = [t for t in reads if 4.2 <= t < 6.9]
    assert len(before) <= 2, before                  # settled: one a second
    assert len(during) >= 18, during                 # every other frame at 15 fps
