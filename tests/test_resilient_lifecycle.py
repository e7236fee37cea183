"""ResilientSource lifecycle cases the fault tests leave out: close() while a reopen is under way,
the reader giving up for good (what the loop then sees), and a real OpenCV device lost and reopened."""
from __future__ import annotations

import logging
import shutil
import threading
import time

import cv2
import numpy as np
import pytest

from edge.config import SourceConfig
from edge.errors import CameraNotFound, SourceError, SourceStalled
from edge.resilient import ResilientSource, is_camera
from edge.sources import OpenCvDeviceSource

from .conftest import CLIP
from .test_resilient import FAST, FaultyCamera, read_until


def test_close_during_a_reopen_closes_the_device_that_opens_late():
    opening, release = threading.Event(), threading.Event()
    late: list[FaultyCamera] = []

    def slow_open():
        opening.set()
        release.wait(5)  # the driver takes its time; meanwhile the service stops
        cam = FaultyCamera()
        late.append(cam)
        return cam

    first = FaultyCamera("raise", after=2)
    src = ResilientSource(slow_open, first=first, **FAST)
    assert opening.wait(5), "the reader never tried to reopen"
    t0 = time.monotonic()
    src.close()
    assert time.monotonic() - t0 < 2.0, "close must not wait for the slow open"
    release.set()
    src._thread.join(5)
    assert not src.alive
    assert len(late) == 1 and late[0].closed == 1, "the device opened after close() must be closed, not leaked"
    assert first.closed == 1


def test_after_giving_up_reads_end_and_the_reader_stops():
    attempts = []

    def never():
        attempts.append(time.monotonic())
        raise OSError(19, "No such device")

    src = ResilientSource(never, first=FaultyCamera("oserror", after=1), poll=0.05, stall_after=0.1,
                          backoff=(0.02,), give_up_after=0.4)
    end = time.monotonic() + 5
    while time.monotonic() < end:
        try:
            src.read()
        except SourceStalled:
            continue  # still retrying
        except SourceError:
            break  # given up
    assert src.gave_up
    src._thread.join(2)
    assert not src.alive
    n = len(attempts)
    time.sleep(0.2)
    assert len(attempts) == n, "no more reopen attempts after giving up"
    with pytest.raises(SourceError, match=r"did not come back within \d+ s \(last error: .*No such device\); giving up") as e:
        src.read()  # not a stall: the loop ends and the service exits 1, so systemd restarts it
    assert not isinstance(e.value, SourceStalled)
    src.close()
    assert src.read() is None


def test_a_real_opencv_device_that_goes_away_is_reopened_and_frames_flow_again(tmp_path, caplog):
    """Real cv2.VideoCapture through OpenCvDeviceSource, on a copy of the test clip standing in for the
    device node: the stream ends mid-run (reads fail, as on unplug), the node is gone so every reopen
    fails for real (CameraNotFound), then the node is back and frames flow again."""
    caplog.set_level(logging.INFO, logger="edge.resilient")
    node = tmp_path / "video0"
    shutil.copy(CLIP, node)
    cfg = SourceConfig(source=str(node))
    failed_opens: list[BaseException] = []
    gone = threading.Event()

    def reopen() -> OpenCvDeviceSource:
        try:
            return OpenCvDeviceSource(str(node), cfg)
        except CameraNotFound as e:
            failed_opens.append(e)
            if len(failed_opens) >= 2:
                gone.set()
            raise

    first = OpenCvDeviceSource(str(node), cfg)
    assert is_camera(first)  # what wrap_camera wraps in the app
    node.unlink()  # unplugged: the open capture reads what it has, the node is gone
    src = ResilientSource(reopen, first=first, poll=0.1, stall_after=0.2, backoff=(0.05,), give_up_after=30.0)
    try:
        assert gone.wait(10), "the reader never tried to reopen the lost device"
        assert src.frames == 30 and src.outages == 1 and src.recoveries == 0  # the whole clip, then the loss
        assert "does not exist" in str(failed_opens[-1])
        assert src.read().index == 29  # the newest frame waited in the box; then nothing comes
        with pytest.raises(SourceStalled):
            src.read()
        shutil.copy(CLIP, node)  # plugged back in
        frames, _ = read_until(src, lambda f: True, 10.0)
        assert frames, "no frame after the device came back"
        assert src.recoveries >= 1 and src.frames > 30
    finally:
        src.close()
    clip = [cv2.cvtColor(img, cv2.COLOR_BGR2GRAY) for img in _decode(CLIP)]
    assert any(np.array_equal(frames[-1].image, g) for g in clip), "not a frame decoded from the device"
    lost = [r.getMessage() for r in caplog.records if "camera lost" in r.getMessage()]
    assert lost and "camera stopped delivering frames" in lost[0] and str(node) in lost[0]
    assert [r.getMessage() for r in caplog.records if "camera back after" in r.getMessage()]
    assert not src.alive


def _decode(path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    out = []
    while (got := cap.read())[0]:
        out.append(got[1])
    cap.release()
    return out
