"""The service entry point with a real NOTIFY_SOCKET: READY, watchdog only while frames arrive,
SIGTERM (exit 0 fast, LED off, DB intact), SIGHUP with a broken config or model keeps the old one."""
from __future__ import annotations

import json
import logging
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.service import service
from edge.mockcamera import MockPicamera2
from edge.service.notify import Notifier

from .notify_socket import Collector

REPO = Path(__file__).resolve().parents[1]
FIX = REPO / "tests" / "fixtures"
CLIP = FIX / "clip.mp4"                      # 30 frames at 10 fps: 3 s in realtime
LONG_CLIP = REPO / "edge" / "samples" / "sample.mp4"
MODELS = FIX / "models"
FACE = FIX / "faces" / "fer32305_happy_320x240.png"


pytestmark = pytest.mark.usefixtures("restore_logging")


def start(args: list[str], notify: Collector, tmp_path: Path, **env: str) -> subprocess.Popen:
    e = {**os.environ, "NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "200000",
         "PYTHONPATH": str(REPO), "GPIOZERO_PIN_FACTORY": "mock", "GPIOZERO_MOCK_PIN_CLASS": "mockpwmpin", **env}
    e.pop("JOURNAL_STREAM", None)
    e.pop("STATE_DIRECTORY", None)
    return subprocess.Popen([sys.executable, "-m", "edge.service", *args], env=e, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(p: subprocess.Popen, timeout: float = 30) -> tuple[int, str]:
    try:
        _, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        _, err = p.communicate()
        raise AssertionError(f"service did not exit within {timeout}s:\n{err}")
    return p.returncode, err


def write_config(path: Path, model: str = "tiny_int8", led: str = 'backend = "none"\n') -> Path:
    path.write_text(f'[classify]\nmodel = "{MODELS / (model + ".tflite")}"\n[led]\n{led}')
    return path


def db_ok(db: Path) -> int:
    """integrity_check passes and the tables are readable; returns the number of event rows."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        assert tables, "event log has no tables"
        return sum(con.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0] for t in tables)
    finally:
        con.close()


# ------------------------------------------------------------------ subprocess: the real entry point
@pytest.mark.slow
def test_ready_then_watchdog_while_the_clip_plays(notify, tmp_path):
    p = start(["--source", str(CLIP), "--realtime", "--model", str(MODELS / "tiny_int8.tflite"), "--led", "none",
               "--db", str(tmp_path / "log.db")], notify, tmp_path, WATCHDOG_USEC="1000000")
    rc, err = finish(p)
    exited = time.monotonic()
    assert rc == 0, err
    first = [m for _, m in notify.messages][0]
    assert first.startswith("READY=1") and f"MAINPID={p.pid}" in first
    ready = notify.times("READY=1")[0]
    pings = notify.times("WATCHDOG=1")
    # 3 s of frames at 10 fps, a ping every WATCHDOG_USEC/2 = 0.5 s: about 6, not one per frame (30).
    assert 4 <= len(pings) <= 8, len(pings)
    assert all(t > ready for t in pings)
    assert min(np.diff(pings)) >= 0.45
    statuses = [m for _, m in notify.messages if m.startswith("STATUS=") and "fps" in m]
    assert statuses and "fps" in statuses[-1]
    assert exited - pings[-1] < 2.5
    st = json.loads((tmp_path / "status.json").read_text())
    assert st["state"] == "stopped" and st["stop_reason"] == "end" and st["frames"] == 30
    assert st["model"]["path"].endswith("tiny_int8.tflite") and len(st["model"]["sha256"]) == 64
    assert db_ok(tmp_path / "log.db") >= 1
    assert "Traceback" not in err


def test_sigterm_exits_zero_fast_with_db_intact(notify, tmp_path):
    db = tmp_path / "log.db"
    p = start(["--source", str(LONG_CLIP), "--realtime", "--model", str(MODELS / "tiny_int8.tflite"),
               "--led", "gpio", "--db", str(db)], notify, tmp_path)
    try:
        notify.wait_for("READY=1")
        notify.wait_for("WATCHDOG=1", count=5)
        t0 = time.monotonic()
        p.send_signal(signal.SIGTERM)
        rc, err = finish(p, timeout=10)
        took = time.monotonic() - t0
    finally:
        p.kill()
    assert rc == 0, err
    assert took < 5.0, took
    assert notify.times("STOPPING=1")
    assert not [t for t in notify.times("WATCHDOG=1") if t > notify.times("STOPPING=1")[0] + 0.05]
    assert db_ok(db) >= 1
    st = json.loads((tmp_path / "status.json").read_text())
    assert st["state"] == "stopped" and st["stop_reason"] == "stop" and st["led"] == "gpio"
    print(f"SIGTERM to exit: {took:.2f} s")


def test_sighup_with_broken_config_or_model_keeps_running_on_the_old(notify, tmp_path):
    cfg = write_config(tmp_path / "config.toml")
    status = tmp_path / "status.json"
    p = start(["--config", str(cfg), "--source", str(LONG_CLIP), "--realtime", "--db", str(tmp_path / "log.db")],
              notify, tmp_path)
    try:
        notify.wait_for("READY=1")
        # 1. broken config: one error line, old config and model kept, pings go on.
        cfg.write_text('[led]\nbrightness = 7\n')
        t = time.monotonic()
        p.send_signal(signal.SIGHUP)
        notify.wait_for("RELOADING=1", after=t)
        notify.wait_for("READY=1", count=1, after=t)
        notify.wait_for("WATCHDOG=1", count=3, after=t)
        st = json.loads(status.read_text())
        assert "led.brightness" in st["last_error"]["message"] and "reload failed" in st["last_error"]["message"]
        assert st["model"]["path"].endswith("tiny_int8.tflite") and st["state"] == "running"
        # 2. a model whose JSON disagrees with the tflite: refused, old model kept.
        write_config(cfg, "wrong_shape")
        t = time.monotonic()
        p.send_signal(signal.SIGHUP)
        notify.wait_for("READY=1", after=t)
        notify.wait_for("WATCHDOG=1", count=3, after=t)
        st = json.loads(status.read_text())
        assert "wrong_shape" in st["last_error"]["message"]
        assert st["model"]["path"].endswith("tiny_int8.tflite")
        # 3. a good config with another model: swapped without a restart.
        write_config(cfg, "tiny_uint8")
        t = time.monotonic()
        p.send_signal(signal.SIGHUP)
        notify.wait_for("READY=1", after=t)
        notify.wait_for("WATCHDOG=1", count=3, after=t)
        deadline = time.monotonic() + 5
        while json.loads(status.read_text())["model"]["path"].endswith("tiny_int8.tflite") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert json.loads(status.read_text())["model"]["path"].endswith("tiny_uint8.tflite")
        assert p.poll() is None
        p.send_signal(signal.SIGTERM)
        rc, err = finish(p, timeout=10)
    finally:
        p.kill()
    assert rc == 0, err
    assert len(notify.times("READY=1")) == 4
    errors = [line for line in err.splitlines() if " ERROR " in line]
    assert len(errors) == 2 and all("reload failed" in e for e in errors), err


@pytest.mark.parametrize("args,code,words", [
    (["--config", "{tmp}/bad.toml"], 2, "unknown key led.colour"),
    (["--model", str(MODELS / "wrong_shape.tflite")], 2, "wrong_shape"),
    (["--source", "/dev/video99"], 1, "/dev/video99"),
])
def test_start_failures_exit_with_one_line_and_no_ready(notify, tmp_path, args, code, words):
    (tmp_path / "bad.toml").write_text('[led]\ncolour = "red"\n')
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    base = ["--source", str(CLIP), "--model", str(MODELS / "tiny_int8.tflite"), "--led", "none", "--db", str(tmp_path / "l.db")]
    p = start(base + args, notify, tmp_path)
    rc, err = finish(p)
    assert rc == code, err
    lines = [x for x in err.splitlines() if "XNNPACK" not in x]
    assert len(lines) == 1 and words in lines[0] and "ERROR" in lines[0], err
    assert not notify.times("READY=1")


def test_journald_priority_prefixes(notify, tmp_path):
    """Under systemd (JOURNAL_STREAM names our stderr) lines carry <N> priorities and no timestamps."""
    errfile = tmp_path / "stderr"
    with open(errfile, "w") as f:
        st = os.fstat(f.fileno())
        e = {**os.environ, "PYTHONPATH": str(REPO), "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
        rc = subprocess.run([sys.executable, "-m", "edge.service", "--config", str(tmp_path / "missing.toml")],
                            env=e, stderr=f, timeout=60).returncode
    assert rc == 2
    assert errfile.read_text().startswith("<3>") and "config file not found" in errfile.read_text()


# ------------------------------------------------------------------ in process: a camera that hangs
def hanging_camera() -> type[MockPicamera2]:
    """picamera2 stand-in: 25 good frames of a real face, then a capture that never returns, not even on close."""
    face = cv2.imread(str(FACE), cv2.IMREAD_GRAYSCALE)
    return MockPicamera2.make(frames=[face], hang_after=25, wake_on_close=False)


@pytest.mark.slow
@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(), reason="signals need the main thread")
def test_hung_camera_stops_the_watchdog_and_sigterm_still_stops_with_led_off(notify, tmp_path, monkeypatch):
    from gpiozero.pins.mock import MockFactory, MockPWMPin

    monkeypatch.setattr(service, "STOP_GRACE", 1.0)
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    cams = hanging_camera()
    factory = MockFactory(pin_class=MockPWMPin)
    cfg = write_config(tmp_path / "config.toml", led=(
        'backend = "gpio"\nactive_high = false\nidle_color = "#ffffff"\nbrightness = 1.0\nfade = 0.0\n'))
    args = service.build_parser().parse_args(
        ["--config", str(cfg), "--source", "picamera2", "--db", str(tmp_path / "log.db")])
    seen: dict = {}

    def operator() -> None:  # plays systemd: waits for the hang, then sends SIGTERM to the process
        deadline = time.monotonic() + 20
        while not cams.instances and time.monotonic() < deadline:
            time.sleep(0.01)
        cam = cams.instances[0]
        cam.hung.wait(20)
        seen["hung"] = time.monotonic()
        time.sleep(0.8)
        seen["lit"] = [factory.pin(n).state for n in (17, 27, 22)]
        seen["kill"] = time.monotonic()
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=operator, daemon=True).start()
    with Notifier(notify.path, watchdog=200_000) as n:
        rc = service.run_service(args, notifier=n, pin_factory=factory, camera_factory=cams,
                                 status_interval=0.2)
    returned = time.monotonic()
    assert rc == 0
    assert returned - seen["kill"] < service.STOP_GRACE + 2.0
    pings = notify.times("WATCHDOG=1")
    assert len(pings) >= 3 and notify.times("READY=1")[0] < pings[0]
    assert not [t for t in pings if t > seen["hung"] + 0.05], "watchdog pinged while the camera hung"
    assert notify.times("STOPPING=1")
    cam = cams.instances[0]
    assert cam.names()[-2:] == ["stop", "close"] and cam.closed
    # Common-anode LED: lit = low duty; at stop the loop writes "off" (1.0) before releasing the pins.
    assert min(seen["lit"]) < 0.5, seen["lit"]
    for pin in (factory.pin(n) for n in (17, 27, 22)):
        states = [s.state for s in pin.states]
        assert states[-2:] == [1.0, 0.0], states[-6:]
    assert db_ok(tmp_path / "log.db") >= 1
    st = json.loads((tmp_path / "status.json").read_text())
    assert st["state"] == "stopped" and st["stop_reason"] == "stop"


# ------------------------------------------------------------------ in process: a camera that never comes back
def unplugged_camera(frames: int) -> type[MockPicamera2]:
    """picamera2 stand-in: `frames` good frames of a real face, then the ribbon cable comes out for good:
    the capture fails and libcamera lists no camera any more, so every reopen fails."""
    face = cv2.imread(str(FACE), cv2.IMREAD_GRAYSCALE)
    base = MockPicamera2.make(frames=[face], fail_on="capture", fail_after=frames,
                              error=RuntimeError("Camera frontend has timed out!"))

    class Unplugged(base):  # type: ignore[misc, valid-type]
        listed: list[int] = []  # cameras listed by each global_camera_info() call (each open or reopen)

        @classmethod
        def global_camera_info(cls) -> list[dict]:
            cams = [] if cls.instances else super().global_camera_info()
            cls.listed.append(len(cams))
            return cams

    return Unplugged


class Lines(logging.Handler):
    """Every log record with its monotonic time; `lost` is set by the camera-lost warning."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[tuple[float, int, str]] = []
        self.lost = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append((time.monotonic(), record.levelno, record.getMessage()))
        if "camera lost" in record.getMessage():
            self.lost.set()

    def at(self, level: int) -> list[tuple[float, str]]:
        return [(t, m) for t, lv, m in self.records if lv == level]


@pytest.mark.slow
@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(), reason="signals need the main thread")
def test_after_the_camera_is_given_up_the_service_exits_1_so_systemd_restarts_it(notify, tmp_path, monkeypatch):
    """A camera that never comes back (docs/RELIABILITY.md): while it retries, no WATCHDOG=1 and the
    no-camera LED; at give_up_after the reader stops reopening and the service ends by itself with
    exit 1, state failed and one error line naming the last reopen error (Restart=on-failure then
    restarts it, with or without a watchdog); not exit 0 as if a clip had ended."""
    from gpiozero.pins.mock import MockFactory, MockPWMPin

    monkeypatch.setattr(service, "STOP_GRACE", 1.0)
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    cams = unplugged_camera(20)
    factory = MockFactory(pin_class=MockPWMPin)
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[classify]\nmodel = "{MODELS / "tiny_int8.tflite"}"\n'
                   '[source]\nsource = "picamera2"\nfps = 30.0\npoll = 0.1\nstall_after = 0.2\ngive_up_after = 1.0\n'
                   '[led]\nbackend = "gpio"\nno_camera_color = "#ff0000"\nbrightness = 1.0\nfade = 0.0\n')
    args = service.build_parser().parse_args(["--config", str(cfg), "--db", str(tmp_path / "log.db")])
    lines = Lines()
    logging.getLogger().addHandler(lines)
    returned = threading.Event()
    seen: dict = {}

    def operator() -> None:  # watches the LED while the camera is gone; stops a service that never ends
        try:
            if not lines.lost.wait(30):
                return
            time.sleep(0.5)  # retrying, before give_up_after
            seen["lit"] = [factory.pin(n).state for n in (17, 27, 22)]
            seen["ended_by_itself"] = returned.wait(20)
        finally:
            if not returned.is_set():
                seen["kill"] = time.monotonic()
                os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=operator, daemon=True).start()
    try:
        with Notifier(notify.path, watchdog=200_000) as n:
            rc = service.run_service(args, notifier=n, pin_factory=factory, camera_factory=cams, status_interval=0.2)
        returned.set()
    finally:
        logging.getLogger().removeHandler(lines)
    assert lines.lost.is_set(), "the camera was never lost"
    assert "kill" not in seen, "the service did not end by itself after giving up"
    assert rc == 1
    st = json.loads((tmp_path / "status.json").read_text())
    assert st["state"] == "failed" and st["stop_reason"] == "error"
    assert "giving up" in st["last_error"]["message"]
    # one warning for the loss, one error line for the give-up naming the last reopen error, nothing else
    (lost_t, lost), = lines.at(logging.WARNING)
    assert "camera lost" in lost and "Camera frontend has timed out" in lost
    (gave_up_t, gave_up), = lines.at(logging.ERROR)
    assert "giving up" in gave_up and "lists none" in gave_up
    assert gave_up_t - lost_t >= 1.0 - 0.05  # it retried for give_up_after first
    # no reopen after the give-up; the one camera opened was released
    listed = list(cams.listed)
    assert listed[0] == 1 and set(listed[1:]) == {0}  # listed at start, then every reopen found none
    time.sleep(0.3)
    assert cams.listed == listed
    assert len(cams.instances) == 1 and cams.instances[0].closed
    # frames pinged the watchdog; from the loss on nothing did
    pings = notify.times("WATCHDOG=1")
    assert len(pings) >= 3 and notify.times("READY=1")[0] < pings[0]
    assert not [t for t in pings if t > lost_t + 0.05], "watchdog pinged after the camera was lost"
    assert seen["lit"] == [1.0, 0.0, 0.0]  # the no-camera colour while it retried
    assert [factory.pin(n).state for n in (17, 27, 22)] == [0, 0, 0]  # off once it exited


# ------------------------------------------------------------------ small pieces
def test_on_frame_throttles_pings_and_status(notify, tmp_path):
    from edge.loop import Stats
    from edge.types import Mood

    args = service.build_parser().parse_args(["--status-file", str(tmp_path / "s.json")])
    with Notifier(notify.path, watchdog=1_000_000) as n:
        svc = service.Service(args, n, status_interval=10.0)
        svc.status_file = tmp_path / "s.json"
        stats, mood = Stats(), Mood("happy", 0.82, None, ("happy",), 0.0)
        for _ in range(2000):
            stats.frames += 1
            svc.on_frame(stats, mood)
        time.sleep(0.2)
    assert len(notify.times("WATCHDOG=1")) == 1
    status = [m for _, m in notify.messages if m.startswith("STATUS=")]
    assert len(status) == 1 and re.fullmatch(r"STATUS=[\d.]+ fps, mood happy \(0\.82\), faces in 0% of frames", status[0])
    assert json.loads((tmp_path / "s.json").read_text())["mood"] == "happy"


def test_status_line():
    assert service.status_line({"fps": 12.06, "mood": "happy", "confidence": 0.82, "face_ratio": 0.95}) == \
        "12.1 fps, mood happy (0.82), faces in 95% of frames"
    assert service.status_line({"fps": 3.0, "mood": "none", "last_error": {"message": "camera lost"}}) == \
        "3.0 fps, no face, last error: camera lost"
