"""`emotion-edge status`: systemctl show parsing, the human summary, and a real service's status.json."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from edge.commands.status import STALE_AFTER, parse_show, service_state, summarize
from edge.service.statusfile import read_status, write_status

REPO = Path(__file__).resolve().parents[1]
FIX = REPO / "tests" / "fixtures"

SHOW = """ActiveState=active
SubState=running
MainPID=812
NRestarts=2
Result=success
StatusText=12.1 fps, mood happy (0.82), faces in 95% of frames
ExecMainStartTimestamp=Tue 2026-11-24 10:00:01 GMT
UnitFileState=enabled
LoadState=loaded
"""

STATUS = {"state": "running", "updated": 1000.0, "mood": "happy", "confidence": 0.82, "face_ratio": 0.95,
          "fps": 12.06, "frames": 5000, "source": "picamera2", "led": "gpio",
          "model": {"path": "/opt/emotion-edge/models/emotion.tflite", "sha256": "ab" * 32},
          "last_error": {"time": 940.0, "message": "reload failed, still running the previous config and model: x"}}


def cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("STATE_DIRECTORY", None)
    return subprocess.run([sys.executable, "-m", "edge.cli", *args], capture_output=True, text=True, env=env, timeout=60)


def test_parse_show():
    d = parse_show(SHOW)
    assert d["ActiveState"] == "active" and d["MainPID"] == "812"
    assert d["StatusText"] == "12.1 fps, mood happy (0.82), faces in 95% of frames"


def test_summary_of_a_running_service():
    obj, lines, code = summarize(parse_show(SHOW), Path("/var/lib/emotion-edge/status.json"), STATUS, now=1003.0)
    text = "\n".join(lines)
    assert code == 0 and obj["running"] and not obj["stale"]
    assert "service: active (running), pid 812" in text and "2 restarts" in text and "enabled at boot" in text
    assert "mood:    happy (0.82), faces in 95% of frames" in text
    assert "speed:   12.1 frames/s, 5000 frames" in text
    assert "model:   /opt/emotion-edge/models/emotion.tflite (sha256 abababababab)" in text
    assert "error:   reload failed" in text and "(63 s ago)" in text
    assert "updated 3 s ago" in text


def test_stale_status_while_systemd_says_running_is_flagged():
    obj, lines, code = summarize(parse_show(SHOW), Path("s.json"), STATUS, now=1000.0 + STALE_AFTER + 5)
    assert code == 3 and obj["stale"]
    assert "STALE" in lines[-1]


def test_not_installed_and_no_systemd():
    _, lines, code = summarize({"LoadState": "not-found", "ActiveState": "inactive"}, None, None)
    assert code == 3 and "not installed" in lines[0] and "no status file yet" in lines[1]
    stopped = {**STATUS, "state": "stopped", "stop_reason": "stop"}
    _, lines, code = summarize(None, Path("s.json"), stopped, now=1010.0)
    assert code == 3 and lines[0] == "service: systemd not available here" and "stopped: stop" in lines[-1]
    _, _, code = summarize(None, Path("s.json"), STATUS, now=1001.0)
    assert code == 0


def test_service_state_never_raises(monkeypatch):
    """Whatever systemctl does (missing, hangs, fails, prints nonsense), `status` gets None or a dict."""
    import shutil as _shutil

    def raising(exc):
        def run(*a, **k):
            raise exc
        return run

    def returning(rc, out):
        return lambda *a, **k: subprocess.CompletedProcess(a, rc, out, "")

    monkeypatch.setattr(_shutil, "which", lambda name: "/usr/bin/systemctl")
    assert service_state(run=raising(FileNotFoundError(2, "No such file"))) is None
    assert service_state(run=raising(PermissionError(13, "denied"))) is None
    assert service_state(run=raising(subprocess.TimeoutExpired("systemctl", 10))) is None
    assert service_state(run=returning(1, "Failed to connect to bus")) is None
    assert service_state(run=returning(0, "")) is None
    assert service_state(run=returning(0, "garbage without equals\n\n")) is None
    got = service_state(run=returning(0, "LoadState=loaded\nActiveState=active\nStatusText=a=b\n"))
    assert got == {"LoadState": "loaded", "ActiveState": "active", "StatusText": "a=b"}
    monkeypatch.setattr(_shutil, "which", lambda name: None)
    assert service_state(run=raising(AssertionError("must not be called"))) is None


def test_status_file_atomic_and_corrupt(tmp_path):
    p = tmp_path / "sub" / "status.json"
    write_status(p, {"state": "running"})
    assert read_status(p) == {"state": "running"} and oct(p.stat().st_mode & 0o777) == "0o644"
    assert [x.name for x in p.parent.iterdir()] == ["status.json"]  # no temp files left behind
    p.write_text("{half")
    assert "not valid JSON" in read_status(p)["last_error"]
    assert read_status(tmp_path / "none.json") is None


def test_status_of_a_real_service_run(tmp_path):
    db = tmp_path / "data" / "log.db"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("STATE_DIRECTORY", None)
    p = subprocess.run([sys.executable, "-m", "edge.service", "--source", str(FIX / "clip.mp4"),
                        "--model", str(FIX / "models" / "tiny_int8.tflite"), "--led", "none", "--db", str(db)],
                       capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == 0, p.stderr
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[log]\ndb = "{db}"\n')
    r = cli("--config", str(cfg), "status", "--json")  # found beside the log via the config
    assert r.returncode == 3, r.stderr
    obj = json.loads(r.stdout)
    assert obj["status_file"] == str(db.parent / "status.json")
    st = obj["status"]
    assert st["state"] == "stopped" and st["stop_reason"] == "end" and st["frames"] == 30
    assert st["model"]["path"] == str(FIX / "models" / "tiny_int8.tflite")
    # the mood the loop itself ends with on this clip and model (computed here, in-process)
    from edge.config import load_config
    from edge.loop import Control, run_loop
    from edge.pipeline import Pipeline

    c = load_config(None, {"source": {"source": str(FIX / "clip.mp4")}, "led": {"backend": "none"},
                           "classify": {"model": str(FIX / "models" / "tiny_int8.tflite")}})
    parts = Pipeline.build(c, with_log=False)
    try:
        run_loop(parts, c, Control())
        final = parts.smoother.mood
    finally:
        parts.close()
    assert st["mood"] == final.label and abs(st["confidence"] - final.confidence) < 1e-3
    r = cli("status", "--status-file", str(db.parent / "status.json"))
    assert r.returncode == 3
    assert "tiny_int8.tflite" in r.stdout and "speed:" in r.stdout and "stopped" in r.stdout
    assert time.time() - st["updated"] < 60


def test_bad_config_at_start_shows_in_status(tmp_path):
    """Under systemd ($STATE_DIRECTORY) a config error at start lands in status.json for `status`."""
    state = tmp_path / "state"
    state.mkdir()
    bad = tmp_path / "bad.toml"
    bad.write_text("[mood]\nhalf_life = -1\n")
    env = {**os.environ, "PYTHONPATH": str(REPO), "STATE_DIRECTORY": str(state)}
    p = subprocess.run([sys.executable, "-m", "edge.service", "--config", str(bad)],
                       capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == 2
    st = read_status(state / "status.json")
    assert st["state"] == "failed" and "mood.half_life" in st["last_error"]["message"]
    _, lines, code = summarize(None, state / "status.json", st)
    assert code == 3 and any(line.startswith("error:   ") and "mood.half_life" in line for line in lines)
