"""`status`'s framing line: the loop keeps the last minute's largest face (size, light) twice a second, the
service writes `view`'s advice for its medians into status.json, `status` prints it (issue 31)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge import aim
from edge.commands.status import summarize
from edge.config import load_config
from edge.loop import FRAMING_EVERY, FRAMING_WINDOW, Control, FramingWindow, Stats, run_loop
from edge.pipeline import Pipeline
from edge.types import Frame

from .conftest import FACES_DIR, start_sample_service

REPO = Path(__file__).resolve().parents[1]
HAPPY = FACES_DIR / "fer32305_happy_320x240.png"  # one face, about 160 px at (80, 40)
FPS = 15.0


def _cfg():
    return load_config(None, {"led": {"backend": "none"}})


class ListSource:
    """Frames from a list of (image, count), at FPS, timestamps from 0."""

    def __init__(self, runs: list[tuple[np.ndarray, int]]) -> None:
        self.images = [img for img, n in runs for _ in range(n)]
        self.i = 0

    def read(self):
        if self.i >= len(self.images):
            return None
        f = Frame(self.images[self.i], self.i / FPS, self.i)
        self.i += 1
        return f

    def close(self) -> None:
        pass


def _run(runs: list[tuple[np.ndarray, int]], at: list[float]) -> tuple[dict[float, dict], Stats]:
    """The real loop (Haar, LiteRT) over the frames; the framing summary at the frame times `at`."""
    cfg = _cfg()
    parts = Pipeline.build(cfg, with_log=False, open_source=lambda: ListSource(runs))
    stats, seen = Stats(), {}

    def on_frame(s: Stats, mood) -> None:
        for t in at:
            if t not in seen and mood.time >= t:
                seen[t] = s.framing.summary(cfg.detect)

    try:
        assert run_loop(parts, cfg, Control(), on_frame=on_frame, stats=stats) == "end"
    finally:
        parts.close()
    return seen, stats


def _happy() -> np.ndarray:
    return cv2.imread(str(HAPPY), cv2.IMREAD_GRAYSCALE)


def _noface(size=(320, 240)) -> np.ndarray:
    return cv2.resize(cv2.imread(str(FACES_DIR / "noface_320x240.png"), cv2.IMREAD_GRAYSCALE), size,
                      interpolation=cv2.INTER_CUBIC)


def _small_face(side: int) -> np.ndarray:
    """The happy face shrunk to `side` px in a 640x480 frame (as tests/test_view.py makes it)."""
    img = _noface((640, 480))
    img[200:200 + side, 300:300 + side] = cv2.resize(_happy()[40:200, 80:240], (side, side), interpolation=cv2.INTER_AREA)
    return img


def _backlit() -> np.ndarray:
    """A dark face in a bright window (as tests/test_view.py makes it)."""
    img = _happy()
    back = np.full_like(img, 235)
    back[40:200, 80:240] = (img[40:200, 80:240] * 0.35).astype(np.uint8)
    return back


# -- the loop's part ----------------------------------------------------------------------------------
def test_a_backlit_face_then_a_minute_without_one():
    """20 s of a backlit face: `view`'s backlight advice for it (aim.advise_face on the measured median);
    65 s later no face was seen in the last minute, and the window never grew past its fixed size."""
    cfg = _cfg()
    back = _backlit()
    seen, stats = _run([(back, int(20 * FPS)), (_noface(), int(65 * FPS))], at=[19.9, 84.9])
    s = seen[19.9]
    assert s["face_samples"] == s["samples"] >= 19.9 / (FRAMING_EVERY + 1 / FPS)
    assert s["frame"] == [320, 240] and abs(s["box"][2] - 150) <= 20, s
    assert s["frame_mean"] > 150 and s["mean"] < 0.4 * s["frame_mean"]
    assert s["advice"] == aim.advise_face(aim.look(back, tuple(s["box"]), cfg.detect), (320, 240), cfg.detect)
    assert s["advice"].startswith("strong light behind the face")
    end = seen[84.9]
    assert end["face_samples"] == 0 and FRAMING_WINDOW - 1 <= end["seconds"] <= FRAMING_WINDOW
    assert end["advice"].startswith("no face in the last minute: is anyone in view?")
    assert "box" not in end
    assert stats.framing.n > len(stats.framing.t)  # the ring went round: fixed arrays, no growth


def test_the_typical_face_is_the_minutes_median_not_the_newest():
    """30 s of a face 80 px wide in 640x480 (40 px to the detector), then 10 s of a large one: the typical
    face is still the small one, and the advice is `view`'s "move the camera closer" with its figures."""
    cfg = _cfg()
    large = cv2.resize(_happy(), (640, 480), interpolation=cv2.INTER_CUBIC)
    seen, _ = _run([(_small_face(80), int(30 * FPS)), (large, int(10 * FPS))], at=[29.9, 39.9])
    small, later = seen[29.9], seen[39.9]
    for s in (small, later):  # the tracker's box is 80 px give or take a few
        w = s["box"][2]
        assert abs(w - 80) <= 4 and s["detector_width"] == round(w / 2), s
        assert s["advice"] == f"face {w} px wide ({round(w / 2)} px to the detector): move the camera closer (112 px or more reads best)"
    assert later["face_samples"] == later["samples"]


def test_measured_twice_a_second_into_fixed_arrays():
    cfg = _cfg()
    fr = FramingWindow()
    arrays = (fr.t, fr.face, fr.vals)
    img, empty = _happy(), _noface()
    added = 0
    for i in range(int(12 * FPS)):  # 12 s without a face
        t = i / FPS
        if fr.due(t):
            fr.add(t, empty, [], cfg.detect)
            added += 1
    assert added == int(np.ceil(12 * FPS / np.ceil(FRAMING_EVERY * FPS)))  # every 8th frame at 15 fps
    s = fr.summary(cfg.detect)
    assert s["face_samples"] == 0 and s["advice"].startswith("no face in the last 12 s: is anyone in view?")
    for i in range(int(12 * FPS), int(200 * FPS)):
        t = i / FPS
        if fr.due(t):
            fr.add(t, img, [(80, 40, 160, 160)], cfg.detect)
    assert all(a is b for a, b in zip((fr.t, fr.face, fr.vals), arrays))  # the same arrays, filled in place
    s = fr.summary(cfg.detect)
    assert s["samples"] == s["face_samples"] and s["box"] == [80, 40, 160, 160]
    assert s["advice"] == aim.advise_face(aim.look(img, (80, 40, 160, 160), cfg.detect), (320, 240), cfg.detect)
    assert fr.due(0.0)  # the clock went back (a new clip, a restarted camera): the old samples go
    fr.add(0.0, empty, [], cfg.detect)
    s = fr.summary(cfg.detect)
    assert s["samples"] == 1 and s["face_samples"] == 0 and s["seconds"] == 0.0
    assert FramingWindow().summary(cfg.detect) is None


# -- status's line ---------------------------------------------------------------------------------------
def _lines(framing) -> list[str]:
    data = {"state": "running", "updated": time.time(), "fps": 15.0, "frames": 900, "framing": framing}
    _, lines, _ = summarize(None, Path("status.json"), data)
    return [ln for ln in lines if ln.startswith("framing")]


def test_status_prints_the_advice_with_the_window():
    good = {"seconds": 60.0, "samples": 113, "face_samples": 90, "box": [302, 119, 176, 176],
            "advice": "framing good: face 176 px wide (88 px to the detector), well lit"}
    assert _lines(good) == ["framing: good: face 176 px wide (88 px to the detector), well lit (typical face, last minute)"]
    assert _lines({**good, "seconds": 12.4}) == [
        "framing: good: face 176 px wide (88 px to the detector), well lit (typical face, last 12 s)"]
    none = {"seconds": 60.0, "samples": 113, "face_samples": 0,
            "advice": "no face in the last minute: is anyone in view? (`emotion-edge view` shows what the camera sees)"}
    assert _lines(none) == ["framing: " + none["advice"]]
    # status.json is another process's file: anything may be there, and nothing breaks `status`
    for bad in (None, "x", [], {}, {"advice": 3}, {"advice": "framing good", "face_samples": True, "seconds": "x"}):
        assert len(_lines(bad)) <= 1


# -- the real service ---------------------------------------------------------------------------------------
@pytest.mark.slow
def test_status_of_the_running_service_gives_views_framing_advice(tmp_path):
    """The service replaying the sample (faces about 176-220 px in 640x480, well lit): status.json holds the
    typical face's figures and `status` prints `view`'s advice for them; so does the final status."""
    svc, status = start_sample_service(tmp_path)
    try:
        data: dict = {}
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            data = json.loads(status.read_text())
            if (data.get("framing") or {}).get("face_samples", 0) >= 5:
                break
            time.sleep(0.3)
        fr = data["framing"]
        assert fr["frame"] == [640, 480] and 150 <= fr["box"][2] <= 240, fr
        assert fr["detector_width"] == round(fr["box"][2] / 2)  # detect_width 320 of 640
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        env.pop("STATE_DIRECTORY", None)
        r = subprocess.run([sys.executable, "-m", "edge.cli", "status", "--status-file", str(status)],
                           capture_output=True, text=True, timeout=60, env=env)
        (line,) = [ln for ln in r.stdout.splitlines() if ln.startswith("framing:")]
        assert line.startswith("framing: good: face ") and " px wide (" in line and "well lit (typical face, last " in line, line
    finally:
        svc.send_signal(signal.SIGTERM)
        _, err = svc.communicate(timeout=30)
    assert svc.returncode == 0, err
    final = json.loads(status.read_text())
    assert final["state"] == "stopped" and final["framing"]["advice"].startswith("framing good: face ")
