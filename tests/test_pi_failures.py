"""What a Pi owner hits first (issue 14): the service with no camera, a busy GPIO pin, and how each
one shows up: one line, an exit status systemd acts on, `status`, and never the sample's moods in
the user's log."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory, MockPWMPin

from edge.service import service
from edge.pipeline import Pipeline
from edge.config import load_config
from edge.led import NullLed
from edge.mockcamera import MockPicamera2
from edge.service.notify import Notifier

from .test_led import BusyPinFactory

REPO = Path(__file__).resolve().parents[1]
FIX = REPO / "tests" / "fixtures"
CLIP = FIX / "clip.mp4"
MODEL = FIX / "models" / "tiny_int8.tflite"


NO_CAMERAS = MockPicamera2.make(cameras=[])
"""picamera2 on a Pi whose camera is not (yet) there: the list is empty."""


pytestmark = pytest.mark.usefixtures("restore_logging")


def _picamera2_importable() -> bool:
    try:
        import picamera2  # noqa: F401
    except Exception:
        return False
    return True


@pytest.mark.skipif(_picamera2_importable(), reason="picamera2 is installed here: this machine may have a camera")
def test_service_with_auto_and_no_camera_exits_1_without_a_mood(notify, tmp_path):
    """Not the sample clip on the real LED and into the user's log, then exit 0 (never restarted)."""
    db, status = tmp_path / "log.db", tmp_path / "status.json"
    env = {**os.environ, "NOTIFY_SOCKET": notify.path, "PYTHONPATH": str(REPO)}
    for k in ("JOURNAL_STREAM", "STATE_DIRECTORY", "WATCHDOG_USEC"):
        env.pop(k, None)
    p = subprocess.run([sys.executable, "-m", "edge.service", "--source", "auto", "--model", str(MODEL),
                        "--led", "console", "--db", str(db), "--status-file", str(status)],
                       env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert p.returncode == 1, p.stderr
    # (LiteRT's own stderr: XNNPACK, and cpuinfo without /sys under the CI's arm64 emulation)
    lines = [x for x in p.stderr.splitlines() if "XNNPACK" not in x and "Error in cpuinfo" not in x]
    assert len(lines) == 1 and "ERROR" in lines[0] and "no camera found" in lines[0], p.stderr
    assert "mood" not in p.stdout, p.stdout  # the console LED never showed a mood
    assert not db.exists()  # nothing written to the user's log
    assert not notify.times("READY=1")
    st = json.loads(status.read_text())
    assert st["state"] == "failed" and "no camera found" in st["last_error"]["message"]


def test_service_without_camera_shows_the_no_camera_colour_then_exits_1(notify, tmp_path, monkeypatch):
    monkeypatch.setattr(service, "NO_CAMERA_HOLD", 0.2)
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    factory = MockFactory(pin_class=MockPWMPin)
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[classify]\nmodel = "{MODEL}"\n[led]\nbackend = "gpio"\nno_camera_color = "#ff0000"\n'
                   'brightness = 1.0\nfade = 0.5\n')
    args = service.build_parser().parse_args(["--config", str(cfg), "--source", "auto", "--db", str(tmp_path / "l.db")])
    with Notifier(notify.path) as n:
        rc = service.run_service(args, notifier=n, pin_factory=factory, camera_factory=NO_CAMERAS)
    assert rc == 1
    red, green = factory.pin(17), factory.pin(27)
    assert 1.0 in [s.state for s in red.states] and max(s.state for s in green.states) == 0  # the no-camera red
    assert red.state == 0  # and dark again once the process gives up the pins
    assert not (tmp_path / "l.db").exists()
    st = json.loads((tmp_path / "status.json").read_text())
    assert st["state"] == "failed" and "no camera found" in st["last_error"]["message"]


def test_busy_gpio_pin_runs_without_the_led_and_says_so_once(tmp_path):
    cfg = load_config(None, {"source": {"source": str(CLIP)}, "classify": {"model": str(MODEL)},
                             "led": {"backend": "gpio"}, "log": {"db": str(tmp_path / "l.db")}})
    errors: list[str] = []
    parts = Pipeline.build(cfg, pin_factory=BusyPinFactory(pin_class=MockPWMPin), on_error=errors.append)
    try:
        assert isinstance(parts.led, NullLed)
    finally:
        parts.close()
    assert len(errors) == 1 and "BCM pins 17,27,22" in errors[0] and "running without the LED" in errors[0]


def test_service_with_a_busy_gpio_pin_logs_moods_and_shows_the_error_in_status(notify, tmp_path, monkeypatch):
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[classify]\nmodel = "{MODEL}"\n[led]\nbackend = "gpio"\n')
    args = service.build_parser().parse_args(["--config", str(cfg), "--source", str(CLIP), "--db", str(tmp_path / "l.db")])
    with Notifier(notify.path) as n:
        rc = service.run_service(args, notifier=n, pin_factory=BusyPinFactory(pin_class=MockPWMPin))
    assert rc == 0 and notify.times("READY=1")
    st = json.loads((tmp_path / "status.json").read_text())
    assert st["frames"] == 30 and "running without the LED" in st["last_error"]["message"]
    assert (tmp_path / "l.db").exists()
