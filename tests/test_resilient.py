"""Camera faults injected for real: a camera (a real clip decoded by OpenCV) that raises, returns
nothing or hangs mid-stream, an opener that fails K times; plus the whole loop through an outage."""
from __future__ import annotations

import dataclasses
import logging
import threading
import time

import numpy as np
import pytest
from gpiozero.pins.mock import MockFactory, MockPWMPin

from edge.config import SourceConfig, load_config
from edge.errors import CameraNotFound, SourceError, SourceStalled
from edge.led import GpioLed, hex_to_rgb
from edge.loop import Control, run_loop
from edge.mockcamera import MockPicamera2
from edge.pipeline import Pipeline, build_classifier, build_detector, build_smoother
from edge.resilient import ResilientSource, is_camera, wrap_camera
from edge.sources import ImageFolderSource, Picamera2Source, VideoFileSource, open_source

from .conftest import CLIP, FOLDER, MODELS_DIR

FAST = dict(poll=0.1, stall_after=0.4, backoff=(0.05, 0.1, 0.2), give_up_after=5.0)


class FaultyCamera:
    """A camera stand-in over the real test clip (looped, ~50 fps) with one injected fault after N frames.

    fault: "raise" (SourceError), "oserror", "none" (returns None), "hang" (blocks on `release`).
    """

    def __init__(self, fault: str = "", after: int = 10**9, release: threading.Event | None = None) -> None:
        self.fault, self.after = fault, after
        self.release = release if release is not None else threading.Event()
        self.clip = VideoFileSource(CLIP, SourceConfig())
        self.served = 0
        self.closed = 0
        self.name = "faulty camera"
        self.hanging = threading.Event()

    def read(self):
        if self.closed:
            raise SourceError("faulty camera: read after close")
        if self.served >= self.after:
            if self.fault == "raise":
                raise SourceError("faulty camera: capture failed (cable out)")
            if self.fault == "oserror":
                raise OSError(19, "No such device")
            if self.fault == "none":
                return None
            if self.fault == "hang":
                self.hanging.set()
                self.release.wait()
                if self.closed:
                    raise SourceError("faulty camera: closed while blocked")
        frame = self.clip.read()
        if frame is None:  # loop the clip like a live camera
            self.clip.close()
            self.clip = VideoFileSource(CLIP, SourceConfig())
            frame = self.clip.read()
        self.served += 1
        time.sleep(0.02)
        return dataclasses.replace(frame, index=self.served)  # a serial number across loops of the clip

    def close(self) -> None:
        self.closed += 1
        self.clip.close()
        self.release.set()  # like a driver: closing the device wakes a blocked read


class Opener:
    """open_fn that fails `fail` times (CameraNotFound), then opens `make()`; records attempt times."""

    def __init__(self, make, fail: int = 0) -> None:
        self.make, self.fail = make, fail
        self.times: list[float] = []
        self.opened: list[FaultyCamera] = []

    def __call__(self):
        self.times.append(time.monotonic())
        if len(self.times) <= self.fail:
            raise CameraNotFound("no camera found: /dev/video0 does not exist")
        cam = self.make()
        self.opened.append(cam)
        return cam


def read_until(src: ResilientSource, pred, timeout: float) -> tuple[list, int]:
    """Call read() like the loop does until pred(frame) or timeout; returns (frames, stalls)."""
    frames, stalls = [], 0
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            f = src.read()
        except SourceStalled:
            stalls += 1
            continue
        frames.append(f)
        if pred(f):
            break
    return frames, stalls


def read_until_recovered(src: ResilientSource, recoveries: int, timeout: float = 5.0) -> None:
    """Read like the loop until the camera has come back `recoveries` times (or timeout), then close the source."""
    try:
        deadline = time.monotonic() + timeout
        while src.recoveries < recoveries and time.monotonic() < deadline:
            read_until(src, lambda f: False, 0.1)
    finally:
        src.close()


def lines(caplog, level: int, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == level and text in r.getMessage()]


def waits(caplog) -> list[float]:
    """The reopen waits, in order, from the reader's debug lines ('reopening in 0.05 s')."""
    return [float(m.split("reopening in ")[1].split()[0]) for m in lines(caplog, logging.DEBUG, "reopening in ")]


class Clock:
    """A clock the test sets: outages are timed by it (the reader's waits stay real)."""

    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


# ------------------------------------------------------------------ the wrapper alone
def test_frames_flow_newest_first_and_close_is_idempotent():
    cam = FaultyCamera()
    src = ResilientSource(lambda: cam, **FAST)
    try:
        frames, stalls = read_until(src, lambda f: False, 0.5)
        assert len(frames) >= 10 and stalls == 0
        idx = [f.index for f in frames]
        assert min(np.diff(idx)) >= 1, "frames come in the camera's order, none twice"
        time.sleep(0.3)  # loop slower than the camera: older frames are dropped, the newest is handed over
        newest = src.read()
        assert src.dropped >= 5 and newest.image.dtype == np.uint8
        assert newest.index >= cam.served - 1, (newest.index, cam.served)  # the newest, not the oldest waiting
    finally:
        src.close()
    taken = len(frames) + 1
    assert src.frames - src.dropped - taken in (0, 1), (src.frames, src.dropped, taken)  # 1: one left in the slot
    src.close()
    assert cam.closed == 1 and not src.alive
    assert src.read() is None


@pytest.mark.parametrize("fault,words", [("raise", "cable out"), ("oserror", "No such device"),
                                         ("none", "no frame")])
def test_failing_camera_stalls_warns_once_backs_off_and_recovers(caplog, fault, words):
    caplog.set_level(logging.DEBUG, logger="edge.resilient")
    opener = Opener(lambda: FaultyCamera(), fail=3)
    first = FaultyCamera(fault, after=5)
    src = ResilientSource(opener, first=first, **FAST)
    try:
        frames, stalls = read_until(src, lambda f: False, 0.3)
        assert len(frames) == 5 and stalls >= 1
        # Each read during the outage gives up after `poll`, not later.
        t = time.monotonic()
        with pytest.raises(SourceStalled):
            src.read()
        assert time.monotonic() - t < FAST["poll"] + 0.1
        # 3 failed reopens then success: waits follow the backoff schedule 0.05, 0.1, 0.2, 0.2 (the last step repeats).
        frames, stalls = read_until(src, lambda f: True, 3.0)
        assert frames, "no frame after the camera came back"
        assert len(opener.times) == 4 and src.open_attempts == 4
        assert waits(caplog) == [0.05, 0.1, 0.2, 0.2]
        gaps = np.diff(opener.times)
        assert all(g >= want - 0.01 for g, want in zip(gaps, (0.1, 0.2, 0.2))), gaps  # each wait is really waited
        assert first.closed == 1 and src.outages == 1 and src.recoveries == 1
        more, _ = read_until(src, lambda f: False, 0.3)
        assert len(more) >= 5
    finally:
        src.close()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]  # one line per outage, not per frame/attempt
    assert words in warnings[0].getMessage() and "camera lost" in warnings[0].getMessage()
    assert len(lines(caplog, logging.INFO, "camera back after")) == 1
    assert opener.opened[0].closed == 1


def test_the_backoff_starts_over_after_a_camera_came_back(caplog):
    caplog.set_level(logging.DEBUG, logger="edge.resilient")
    cams = iter([FaultyCamera("raise", after=5), FaultyCamera()])  # the camera reopened after 2 failures dies again
    opener = Opener(lambda: next(cams), fail=2)
    src = ResilientSource(opener, first=FaultyCamera("raise", after=5), **FAST)
    read_until_recovered(src, 2)
    assert src.recoveries == 2 and src.outages == 2
    assert waits(caplog) == [0.05, 0.1, 0.2, 0.05]  # the second outage waits the first step again


def test_a_stall_warns_at_stall_after_and_the_recovery_says_how_long_it_lasted(caplog):
    """On the source's clock: the warning comes once the silence reaches stall_after, each stall names
    the silence so far, and the recovery line names the outage's length."""
    caplog.set_level(logging.INFO, logger="edge.resilient")
    clock = Clock(1000.0)
    cam = FaultyCamera("hang", after=1)  # one frame, then the read hangs
    src = ResilientSource(lambda: cam, poll=0.05, stall_after=2.0, backoff=(0.05,), give_up_after=None, clock=clock)
    try:
        frames, _ = read_until(src, lambda f: True, 2.0)
        assert len(frames) == 1 and cam.hanging.wait(2)
        assert (src.frames, src.dropped) == (1, 0)
        clock.t = 1001.9
        with pytest.raises(SourceStalled, match=r"no frame for 1\.9 s"):
            src.read()
        assert not lines(caplog, logging.WARNING, "") and src.outages == 0
        clock.t = 1002.0
        with pytest.raises(SourceStalled, match=r"no frame for 2\.0 s"):
            src.read()
        assert lines(caplog, logging.WARNING, "") == [
            "resilient faulty camera: no frame from camera for 2.0 s (hung or disconnected); LED shows no-camera"]
        assert src.outages == 1
        clock.t = 1007.3
        cam.after = 10**9
        cam.release.set()
        frames, _ = read_until(src, lambda f: True, 2.0)
        assert frames and src.recoveries == 1
    finally:
        src.close()
    assert lines(caplog, logging.INFO, "camera back") == ["resilient faulty camera: camera back after 7.3 s"]
    assert len(lines(caplog, logging.WARNING, "")) == 1


def test_two_outages_give_two_warnings(caplog):
    caplog.set_level(logging.INFO, logger="edge.resilient")
    opener = Opener(lambda: FaultyCamera("raise", after=5))
    src = ResilientSource(opener, first=FaultyCamera("raise", after=5), **FAST)
    read_until_recovered(src, 2)
    assert src.recoveries >= 2
    assert len(lines(caplog, logging.WARNING, "camera lost")) == src.outages
    assert len(lines(caplog, logging.INFO, "camera back after")) == src.recoveries


def test_hung_camera_warns_once_without_busy_looping_and_close_is_prompt(caplog):
    caplog.set_level(logging.INFO, logger="edge.resilient")
    cam = FaultyCamera("hang", after=3)
    src = ResilientSource(lambda: cam, poll=0.2, stall_after=0.5, backoff=(0.05,), give_up_after=5.0)
    try:
        read_until(src, lambda f: False, 0.2)
        assert cam.hanging.wait(2)
        cpu0 = time.process_time()
        frames, stalls = read_until(src, lambda f: False, 2.0)
        cpu = time.process_time() - cpu0
        assert frames == [] and 7 <= stalls <= 11, stalls  # one SourceStalled per poll (0.2 s)
        assert cpu < 0.2, f"{cpu:.3f} s CPU in a 2 s stall: busy loop"
        warn = lines(caplog, logging.WARNING, "no frame from camera for")
        assert len(warn) == 1, warn
        t = time.monotonic()
        src.close()
        assert time.monotonic() - t < 0.5  # stalled: no waiting for a read that will not return
    finally:
        src.close()
    assert cam.closed == 1 and not src.alive


def test_hung_camera_that_recovers_delivers_again(caplog):
    caplog.set_level(logging.INFO, logger="edge.resilient")
    release = threading.Event()
    cam = FaultyCamera("hang", after=3, release=release)
    src = ResilientSource(lambda: cam, poll=0.1, stall_after=0.3, backoff=(0.05,))
    try:
        assert cam.hanging.wait(2)
        read_until(src, lambda f: False, 0.6)
        cam.after = 10**9
        release.set()
        frames, _ = read_until(src, lambda f: True, 2.0)
        assert frames
    finally:
        src.close()
    assert len(lines(caplog, logging.WARNING, "no frame from camera")) == 1
    assert len(lines(caplog, logging.INFO, "camera back after")) == 1


def test_gives_up_after_the_deadline_and_stops_retrying(caplog):
    caplog.set_level(logging.INFO, logger="edge.resilient")
    opener = Opener(lambda: FaultyCamera(), fail=10**9)
    src = ResilientSource(opener, first=FaultyCamera("raise", after=2), poll=0.1, backoff=(0.05, 0.1),
                          give_up_after=0.6)
    try:
        cpu0 = time.process_time()
        deadline = time.monotonic() + 3
        with pytest.raises(SourceError) as gave_up:  # the loop sees stalls, then one SourceError ends it
            while time.monotonic() < deadline:
                read_until(src, lambda f: False, 0.1)
        assert not isinstance(gave_up.value, SourceStalled)
        assert "giving up" in str(gave_up.value) and "/dev/video0 does not exist" in str(gave_up.value)
        assert not src.alive and src.gave_up
        tries = len(opener.times)
        assert 4 <= tries <= 8, tries
        time.sleep(0.3)
        assert len(opener.times) == tries  # no reopen after giving up
        with pytest.raises(SourceError, match="giving up"):  # and every later read says so at once
            src.read()
        assert time.process_time() - cpu0 < 0.4
    finally:
        src.close()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]  # the caller logs the one error line
    assert len(lines(caplog, logging.WARNING, "camera lost")) == 1


def test_gives_up_when_the_silence_reaches_give_up_after_on_the_sources_clock():
    clock = Clock(1000.0)
    opener = Opener(lambda: FaultyCamera(), fail=10**9)
    src = ResilientSource(opener, first=FaultyCamera("raise", after=2), poll=0.05, backoff=(0.02,),
                          give_up_after=10.0, clock=clock)
    try:
        read_until(src, lambda f: False, 0.3)  # the two frames, at 1000.0, then the camera fails
        assert src.frames == 2 and opener.times
        clock.t = 1009.9
        deadline = time.monotonic() + 2
        while len(opener.times) < 5 and time.monotonic() < deadline:
            read_until(src, lambda f: False, 0.05)
        assert len(opener.times) >= 5 and src.alive and not src.gave_up  # still retrying just before the deadline
        clock.t = 1010.0
        with pytest.raises(SourceError, match="did not come back within 10 s") as gave_up:
            read_until(src, lambda f: False, 2.0)
        assert not isinstance(gave_up.value, SourceStalled) and src.gave_up
    finally:
        src.close()


def test_first_open_failure_propagates():
    with pytest.raises(CameraNotFound, match="does not exist"):
        ResilientSource(Opener(FaultyCamera, fail=1), **FAST)


def test_bad_settings_are_refused():
    for bad in (dict(poll=0), dict(stall_after=-0.1), dict(backoff=()), dict(backoff=(0.1, -0.1))):
        with pytest.raises(ValueError, match="poll must be > 0, stall_after >= 0, backoff non-empty and >= 0"):
            ResilientSource(FaultyCamera, **bad)
    ResilientSource(FaultyCamera, poll=0.01, stall_after=0, backoff=(0.0, 0.1)).close()  # the limits themselves are fine


def test_the_defaults_are_the_documented_ones():
    """docs/RELIABILITY.md and docs/PI.md name them: backoff 1/2/4/8/30 s, stall_after 3 s, give_up_after 300 s."""
    src = ResilientSource(FaultyCamera)
    src.close()
    assert (src.backoff, src.poll, src.stall_after, src.give_up_after, src.close_timeout) == \
        ((1.0, 2.0, 4.0, 8.0, 30.0), 1.0, 3.0, 300.0, 1.0)


# ------------------------------------------------------------------ which sources get wrapped
def test_wrap_camera_wraps_cameras_only_and_reopens_the_resolved_kind(caplog):
    cfg = SourceConfig(source=str(CLIP))
    clip = open_source(cfg)
    assert wrap_camera(clip, cfg) is clip and not is_camera(clip)
    folder = ImageFolderSource(FOLDER, cfg)
    assert wrap_camera(folder, cfg) is folder
    clip.close()
    # auto found a Pi camera: a failure reopens picamera2 (never falls back to the sample clip).
    picam = MockPicamera2.make(error=RuntimeError("Camera frontend has timed out!"))
    auto = SourceConfig(source="auto")
    cam = open_source(auto, camera_factory=picam)
    assert isinstance(cam, Picamera2Source)
    src = wrap_camera(cam, auto, camera_factory=picam, poll=0.1, backoff=(0.05,))
    try:
        assert isinstance(src, ResilientSource)
        assert src.read().image.shape == (240, 320)
        picam.fail_on = "capture"  # on the class: the reopened cameras fail too, until it is cleared
        read_until(src, lambda f: False, 0.3)
        picam.fail_on = ""
        frames, _ = read_until(src, lambda f: True, 2.0)
        assert frames and len(picam.instances) >= 2 and src.recoveries == 1
        assert all(c.closed for c in picam.instances[:-1])  # every camera given up on was released
    finally:
        src.close()
    assert "Camera frontend has timed out" in " ".join(lines(caplog, logging.WARNING, "camera lost"))


def test_wrap_camera_takes_timing_from_config_keys_when_present():
    @dataclasses.dataclass
    class Cfg(SourceConfig):
        poll: float = 0.3
        stall_after: float = 2.0
        give_up_after: float = 0.0

    picam = MockPicamera2.make()
    cfg = Cfg(source="picamera2")
    src = wrap_camera(open_source(cfg, camera_factory=picam), cfg, camera_factory=picam)
    try:
        assert (src.poll, src.stall_after, src.give_up_after) == (0.3, 2.0, None)
    finally:
        src.close()
    src = wrap_camera(open_source(cfg, camera_factory=picam), cfg, camera_factory=picam, poll=0.05, give_up_after=9.0)
    try:
        assert (src.poll, src.stall_after, src.give_up_after) == (0.05, 2.0, 9.0)  # what the caller says wins
    finally:
        src.close()


# ------------------------------------------------------------------ the whole loop through an outage
def test_loop_through_a_camera_outage_stops_on_frame_shows_no_camera_and_resumes(tmp_path):
    """Real Haar + LiteRT + mock PWM pins: the camera dies mid-run and comes back 2 reopens later."""
    factory = MockFactory(pin_class=MockPWMPin)
    cfg = load_config(None, {"classify": {"model": str(MODELS_DIR / "tiny_int8.tflite")},
                             "led": {"backend": "gpio", "fade": 0.0, "no_camera_color": "#400000"}})
    pins = [factory.pin(n) for n in (cfg.led.red_pin, cfg.led.green_pin, cfg.led.blue_pin)]
    seen_during_outage: list[list[float]] = []

    class LoopOpener(Opener):
        def __call__(self):
            seen_during_outage.append([p.state for p in pins])  # what the LED shows while we retry
            return super().__call__()

    opener = LoopOpener(lambda: FaultyCamera(), fail=2)
    source = ResilientSource(opener, first=FaultyCamera("raise", after=15), poll=0.1, stall_after=0.3,
                             backoff=(0.3,), give_up_after=10.0)
    classifier = build_classifier(cfg)
    parts = Pipeline(source, build_detector(cfg), classifier, build_smoother(cfg, classifier.labels),
                  GpioLed(cfg.led, pin_factory=factory))
    calls: list[float] = []
    control = Control()

    def on_frame(stats, mood):  # the service pings the watchdog here
        calls.append(time.monotonic())
        if source.recoveries and len(calls) >= 40:
            control.stop.set()

    result: dict = {}
    th = threading.Thread(target=lambda: result.setdefault("why", run_loop(parts, cfg, control, on_frame=on_frame)))
    th.start()
    th.join(10)
    control.stop.set()
    th.join(2)
    try:
        assert result.get("why") == "stop"
        gaps = np.diff(calls)
        assert gaps.max() >= 0.85, gaps.max()           # 3 waits of 0.3 s: no on_frame (= no pings) meanwhile
        before = int(np.argmax(gaps)) + 1                # frames handled before the camera died (15 sent,
        assert 5 <= before <= 15, before                 # a few dropped when the loop was busier than the camera)
        assert len(calls) >= 40                          # ... and on_frame resumed after recovery
        want = [c * cfg.led.brightness for c in hex_to_rgb(cfg.led.no_camera_color)]
        assert len(seen_during_outage) == 3
        assert all(np.allclose(s, want, atol=0.01) for s in seen_during_outage), (seen_during_outage, want)
    finally:
        parts.close()
    assert [p.state for p in pins] == [0, 0, 0]
    assert not source.alive
