"""`emotion-edge status --db PATH` reads the status.json beside that log, as `log --db` reads the log (issue 30.5)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def status_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("STATE_DIRECTORY", None)
    return subprocess.run([sys.executable, "-m", "edge.cli", "status", *args], capture_output=True, text=True,
                          env=env, timeout=60, cwd=REPO)


def test_status_db_reads_the_status_file_beside_the_log(tmp_path):
    state = tmp_path / "elsewhere"
    state.mkdir()
    (state / "status.json").write_text(json.dumps({"state": "stopped", "updated": time.time(), "mood": "happy",
                                                   "confidence": 0.81, "stop_reason": "end"}))
    p = status_cli("--db", str(state / "emotion-edge.db"), "--unit", "emotion-edge-test-none")
    assert p.returncode == 3, p.stderr  # not running, like systemctl status
    assert f"({state / 'status.json'})" in p.stdout and "mood:    happy (0.81)" in p.stdout, p.stdout
    p = status_cli("--db", str(tmp_path / "nothing" / "x.db"), "--json", "--unit", "emotion-edge-test-none")
    out = json.loads(p.stdout)
    assert out["status_file"] == str(tmp_path / "nothing" / "status.json") and out["status"] is None
