"""The calibration request folder under hostile use (issue 29 G, H, J): a folder at the request path, a
forged or escape-laden answer, and a reset that would delete what is not a calibration."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from edge.calibration.capture import CalibrationController
from edge.calibration.requests import (REQUEST_NAME, RESULT_NAME, ensure_requests_dir, new_request, read_json_small,
                                       wait_result, write_json_atomic)

REPO = Path(__file__).resolve().parents[1]
LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root (CI runs as root)")


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def controller(state: Path, cal_path: Path, clock: Clock) -> CalibrationController:
    return CalibrationController(state, cal_path, seconds=1, min_frames=1, apply=lambda cal: None,
                                 model=lambda: ("ab" * 32, LABELS), clock=clock)


def cli(*args) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("STATE_DIRECTORY", None)
    return subprocess.run([sys.executable, "-m", "edge.cli", *args], capture_output=True, text=True, env=env, timeout=120)


def test_a_folder_at_the_request_path_is_named_once_not_twice_a_second(tmp_path, caplog):
    clock = Clock()
    ctl = controller(tmp_path, tmp_path / "calibration.json", clock)
    stuck = tmp_path / "requests" / REQUEST_NAME
    (stuck / "x").mkdir(parents=True)  # a member's folder that the service cannot remove
    with caplog.at_level(logging.WARNING, logger="emotion-edge"):
        for _ in range(20):  # ten seconds of polls
            clock.t += 0.5
            assert ctl.feed(clock.t, 0, None) is None
    said = [r for r in caplog.records if "calibrate.request" in r.getMessage()]
    assert len(said) == 1 and "a folder" in said[0].getMessage()
    with pytest.raises(IsADirectoryError) as e:  # and `calibrate` says what to do, in one line
        new_request(tmp_path, "calibrate", 5)
    assert "is a folder, not a request; remove it" in str(e.value)
    (stuck / "x").rmdir()
    clock.t += 0.5
    ctl.feed(clock.t, 0, None)
    assert not stuck.exists()  # an empty one is removed, and requests work again
    assert new_request(tmp_path, "calibrate", 5)


def test_reset_removes_only_a_calibration(tmp_path):
    thesis = tmp_path / "thesis.txt"
    thesis.write_text("three years of work")
    r = cli("calibrate", "--reset", "--no-service", "--out", str(thesis))
    assert r.returncode == 2 and "not an emotion-edge calibration file; not removed" in r.stderr
    assert thesis.read_text() == "three years of work"
    # the service side: a wrong [calibrate] file is not deleted either
    clock = Clock()
    ctl = controller(tmp_path, thesis, clock)
    ctl.reset("abc")
    res = read_json_small(tmp_path / "requests" / RESULT_NAME)
    assert res["state"] == "failed" and "not removed" in res["message"] and thesis.exists()


@needs_root
def test_an_answer_not_written_by_the_service_is_ignored(tmp_path):
    state = tmp_path / "state"
    ensure_requests_dir(state)
    result = state / "requests" / RESULT_NAME
    write_json_atomic(result, {"id": "r1", "state": "done", "message": "calibrated (forged)"})
    os.chown(result, 4321, 4321)  # another member of the group wrote it
    assert wait_result(state, "r1", timeout=0.6, poll=0.1) is None
    os.chown(result, os.stat(state).st_uid, -1)  # as the service
    assert wait_result(state, "r1", timeout=0.6, poll=0.1)["message"] == "calibrated (forged)"
    os.unlink(result)
    os.symlink(tmp_path / "elsewhere.json", result)  # nor through a link
    (tmp_path / "elsewhere.json").write_text(json.dumps({"id": "r1", "state": "done", "message": "x"}))
    assert wait_result(state, "r1", timeout=0.4, poll=0.1) is None


def test_the_services_answer_is_printed_without_escape_sequences(tmp_path):
    state = tmp_path / "state"
    ensure_requests_dir(state)
    status = state / "status.json"
    status.write_text(json.dumps({"state": "running", "updated": time.time()}))

    def fake_service() -> None:  # answers the one request it sees with escapes in message and file
        end = time.monotonic() + 30
        while time.monotonic() < end:
            req = read_json_small(state / "requests" / REQUEST_NAME)
            if req:
                write_json_atomic(state / "requests" / RESULT_NAME,
                                  {"id": req["id"], "state": "done", "message": "ok\x1b[2J\x1b[31mdone",
                                   "file": "/x\x1b]0;title\x07.json"})
                return
            time.sleep(0.05)

    t = threading.Thread(target=fake_service, daemon=True)
    t.start()
    r = cli("calibrate", "--seconds", "1", "--status-file", str(status))
    t.join(5)
    assert r.returncode == 0, r.stderr
    assert "\x1b" not in r.stdout and "\x07" not in r.stdout and "ok" in r.stdout and "done" in r.stdout
