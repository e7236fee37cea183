"""`emotion-edge view` through the running service (the real entry point on a replayed clip): a frame
within 2 s of asking, nothing written before a view asks, and no frame left on disk after it ends."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge.viewshare import FRAME_NAME, REQUEST_NAME, FrameReader

from .test_service import finish, start

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "edge" / "samples" / "sample.mp4"  # 27 s at 15 fps, replayed in real time

pytestmark = [pytest.mark.usefixtures("restore_logging"), pytest.mark.slow]


def wait_running(status: Path, p: subprocess.Popen, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            st = json.loads(status.read_text())
            if st.get("state") == "running" and st.get("frames", 0) > 0:
                return
        except (OSError, ValueError):
            pass
        assert p.poll() is None, p.communicate()[1]
        time.sleep(0.1)
    raise AssertionError("the service did not start running")


def live_in_tmux(status: Path, requests: Path) -> None:
    """The live view of the service's frames in a real terminal; q ends it and its files go."""
    import shutil

    from .test_view import tmux, wait_for

    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed (apt install tmux; .ci/run installs it)")
    sock = f"emotion-edge-test-{os.getpid()}-svc"
    cmd = f"cd {ROOT} && {sys.executable} -m edge.cli view --status-file {status}; echo EXITED $?; sleep 60"
    env = {**os.environ, "TERM": "xterm-256color", "PYTHONPATH": str(ROOT)}
    env.pop("TMUX", None)
    r = subprocess.run(["tmux", "-L", sock, "-f", "/dev/null", "new-session", "-d", "-s", "v", "-x", "120", "-y", "50", cmd],
                       env=env, capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, r.stderr
    try:
        def shows(text: str) -> str:
            p = tmux("capture-pane", "-p", "-t", "v", sock=sock).stdout
            return p if text in p else ""

        pane = wait_for(lambda: shows("the service's camera, 640x480"))
        assert pane and "advice:" in pane and "frames/s" in pane, tmux("capture-pane", "-p", "-t", "v", sock=sock).stdout
        assert (requests / REQUEST_NAME).exists()
        tmux("send-keys", "-t", "v", "q", sock=sock)
        assert "EXITED 0" in wait_for(lambda: shows("EXITED"), 10)
        time.sleep(1.0)
        assert sorted(x.name for x in requests.iterdir() if "view" in x.name) == []
    finally:
        tmux("kill-server", sock=sock)


def test_view_gets_the_services_frames_and_leaves_nothing_behind(notify, tmp_path):
    p = start(["--source", str(SAMPLE), "--realtime", "--led", "none", "--db", str(tmp_path / "log.db")], notify, tmp_path)
    status = tmp_path / "status.json"
    requests = tmp_path / "requests"
    try:
        wait_running(status, p)
        time.sleep(1.0)
        assert not (requests / FRAME_NAME).exists()  # nobody asked: nothing written
        # the viewer's side: a frame within 2 s of asking
        reader = FrameReader(tmp_path, width=160)
        t0 = time.monotonic()
        reader.renew(force=True)
        frame = None
        while frame is None and time.monotonic() - t0 < 2.0:
            frame = reader.read()
            time.sleep(0.02)
        assert frame is not None, "no frame within 2 s"
        assert frame.src_size == (640, 480) and frame.image.shape == (120, 160)
        assert (os.stat(requests / FRAME_NAME).st_mode & 0o777) == 0o640
        reader.close()
        time.sleep(1.0)  # the service's next look: it must not write again
        assert not (requests / FRAME_NAME).exists() and not (requests / REQUEST_NAME).exists()
        # the command
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        r = subprocess.run([sys.executable, "-m", "edge.cli", "view", "--once", "--plain", "--status-file", str(status)],
                           cwd=ROOT, capture_output=True, text=True, timeout=60, env=env)
        assert r.returncode == 0, r.stderr
        lines = r.stdout.splitlines()
        assert lines[-1].startswith("advice: ") and any("the service's camera, 640x480" in ln for ln in lines)
        assert len(lines) <= 60 and sum(len(ln) > 20 for ln in lines) >= 10
        time.sleep(1.0)
        assert sorted(x.name for x in requests.iterdir() if "view" in x.name) == []
        live_in_tmux(status, requests)
        # a viewer that vanishes without cleaning up (SIGKILL): its request expires, the frame goes
        FrameReader(tmp_path).renew(force=True)
        end = time.monotonic() + 2.0
        while not (requests / FRAME_NAME).exists() and time.monotonic() < end:
            time.sleep(0.05)
        assert (requests / FRAME_NAME).exists()
        time.sleep(4.5)
        assert not (requests / FRAME_NAME).exists()
        # and at the service's stop
        FrameReader(tmp_path).renew(force=True)
        end = time.monotonic() + 2.0
        while not (requests / FRAME_NAME).exists() and time.monotonic() < end:
            time.sleep(0.05)
        p.send_signal(signal.SIGTERM)
        rc, err = finish(p)
        assert rc == 0, err
        assert not (requests / FRAME_NAME).exists()
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
