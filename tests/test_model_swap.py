"""A model file that changes under the running service (the real entry point, a real notify socket):
it is only picked up on SIGHUP, and only when it passes the contract checks; a truncated or
half-copied file never disturbs the model already loaded."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path


from edge.contract import sha256_file

from .notify_socket import Collector

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "tests" / "fixtures" / "models"
LONG_CLIP = REPO / "edge" / "samples" / "sample.mp4"


def install(src: str, dst: Path, with_json: bool = True) -> None:
    """Copy over the running model IN PLACE (truncate + write, like a careless `cp`), not a rename."""
    with open(dst, "r+b") as f:
        f.truncate(0)
        f.write((MODELS / f"{src}.tflite").read_bytes())
    if with_json:
        dst.with_suffix(".json").write_bytes((MODELS / f"{src}.json").read_bytes())


def test_model_changed_on_disk_is_used_only_after_sighup_and_only_if_valid(tmp_path):
    model = tmp_path / "emotion.tflite"
    shutil.copy(MODELS / "tiny_int8.tflite", model)
    shutil.copy(MODELS / "tiny_int8.json", model.with_suffix(".json"))
    old_sha, new_sha = sha256_file(model), sha256_file(MODELS / "tiny_uint8.tflite")
    (tmp_path / "config.toml").write_text(f'[classify]\nmodel = "{model}"\n[led]\nbackend = "none"\n')
    status = tmp_path / "status.json"
    notify = Collector(tmp_path / "notify.sock")
    env = {**os.environ, "NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "200000", "PYTHONPATH": str(REPO)}
    env.pop("STATE_DIRECTORY", None)
    env.pop("JOURNAL_STREAM", None)
    p = subprocess.Popen([sys.executable, "-m", "edge.service", "--config", str(tmp_path / "config.toml"),
                          "--source", str(LONG_CLIP), "--realtime", "--db", str(tmp_path / "log.db")],
                         env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def sha() -> str:  # READY=1 goes out just before the first status.json is written
        end = time.monotonic() + 5
        while not status.exists() and time.monotonic() < end:
            time.sleep(0.02)
        return json.loads(status.read_text())["model"]["sha256"]

    def fresh_sha(after: float) -> str:
        """The model in a status file written after `after` (wall time): it is rewritten every 5 s,
        so an older one could not show a model swapped in since."""
        end = time.monotonic() + 12
        while time.monotonic() < end:
            st = json.loads(status.read_text())
            if st.get("updated", 0) > after:
                return st["model"]["sha256"]
            time.sleep(0.1)
        raise AssertionError("status.json was not rewritten within 12 s")

    try:
        notify.wait_for("READY=1")
        assert sha() == old_sha
        # 1. Truncated, then a half-written file under the running service: nothing happens, pings go on.
        t = time.monotonic()
        with open(model, "r+b") as f:
            f.truncate(0)
        time.sleep(0.5)
        (model).write_bytes((MODELS / "tiny_uint8.tflite").read_bytes()[:1000])
        notify.wait_for("WATCHDOG=1", 5, after=t)
        assert p.poll() is None and sha() == old_sha
        # 2. SIGHUP with the half-written file: refused by the contract check (sha256), old model kept.
        t = time.monotonic()
        p.send_signal(signal.SIGHUP)
        notify.wait_for("READY=1", after=t)
        notify.wait_for("WATCHDOG=1", 3, after=t)
        st = json.loads(status.read_text())
        assert st["model"]["sha256"] == old_sha and "sha256" in st["last_error"]["message"]
        # 3. A complete valid model copied in place: still the old one until SIGHUP ...
        install("tiny_uint8", model)
        t, t_wall = time.monotonic(), time.time()
        notify.wait_for("WATCHDOG=1", 5, after=t)
        assert fresh_sha(t_wall) == old_sha and notify.count("RELOADING=1") == 1
        # ... then picked up by SIGHUP without a restart; status.json shows it by the time READY=1 comes
        # (`systemctl reload` returns on READY=1, and `emotion-edge status` right after must see the new model)
        t = time.monotonic()
        p.send_signal(signal.SIGHUP)
        notify.wait_for("READY=1", after=t)
        assert sha() == new_sha
        notify.wait_for("WATCHDOG=1", 3, after=t)
        assert p.poll() is None
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=15)
    finally:
        p.kill()
        notify.close()
    assert p.returncode == 0, err
    errors = [line for line in err.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and "reload failed" in errors[0] and "does not match" in errors[0], err
    assert notify.count("READY=1") == 3
