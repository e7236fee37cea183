"""The `emotion-edge` console commands that drive the pipeline: run, bench, check (real subprocesses)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import CLIP

ROOT = Path(__file__).resolve().parents[1]


def edge_cli(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge.cli", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def test_run_replays_a_clip_with_the_console_led(tmp_path):
    db = tmp_path / "log.db"
    r = edge_cli("run", "--source", str(CLIP), "--led", "console", "--db", str(db))
    assert r.returncode == 0, r.stderr
    assert "mood" in r.stdout and "LED #" in r.stdout
    assert "stopped (end)" in r.stdout
    assert db.is_file()


def test_run_max_frames(tmp_path):
    r = edge_cli("run", "--source", str(CLIP), "--led", "none", "--db", str(tmp_path / "l.db"), "--max-frames", "7")
    assert r.returncode == 0, r.stderr
    assert "stopped (max_frames) after 7 frames" in r.stdout


@pytest.mark.parametrize("args, needle", [
    (["run", "--source", "/no/such/clip.mp4"], "/no/such/clip.mp4"),
    (["run", "--max-frames", "0"], "--max-frames"),
    (["run", "--detect-every", "0"], "detect.detect_every"),
    (["run", "--model", "/no/such/model.tflite"], "/no/such/model.tflite"),
])
def test_bad_arguments_give_one_clear_line(tmp_path, args, needle):
    r = edge_cli(*args, "--led", "none", "--db", str(tmp_path / "l.db"))
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("emotion-edge: error:")]
    assert len(lines) == 1 and needle in lines[0], r.stderr
    assert "Traceback" not in r.stderr


def test_bad_config_file_names_the_key(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[detect]\nmin_neighbours = 3\n")
    r = edge_cli("--config", str(cfg), "run", "--led", "none")
    assert r.returncode == 2 and "detect.min_neighbours" in r.stderr and "Traceback" not in r.stderr


def test_bench_json_has_the_promised_keys():
    r = edge_cli("bench", "--source", str(CLIP), "--loops", "2", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    for key in ("frames", "fps", "detect_ms_p50", "detect_ms_p95", "classify_ms_p50", "classify_ms_p95", "rss_mb"):
        assert key in out
    assert out["frames"] == 2 * 30 and out["fps"] > 0 and 0 < out["rss_mb"] < 2000
    assert out["detections"] < out["frames"]  # no Haar on empty frames between idle scans
    assert out["detect_mode"] == "track" and not out["realtime"] and out["clip_fps"] == 10
    assert 0 < out["cpu_percent"] and 0 <= out["decode_cpu_percent"] <= out["cpu_percent"]
    assert 0 < out["full_scan_share"] < 1 and out["detect_ms_per_frame"] <= out["detect_ms_mean"]
    assert 0 < out["cpu_ms_per_frame"] < 1000
    assert out["model_cost"]["threads"] == 1 and 0 < out["model_cost"]["ms_per_face"] < 100  # the bundled model's JSON


def test_bench_prints_the_models_own_cost():
    r = edge_cli("bench", "--source", str(CLIP), "--loops", "1")
    assert r.returncode == 0, r.stderr
    assert "model's own cost (its JSON): " in r.stdout and " ms per face on 1 thread of " in r.stdout


def test_bench_sweep_compares_skip_and_track():
    r = edge_cli("bench", "--source", str(CLIP), "--loops", "1", "--sweep", "3,track", "--json")
    assert r.returncode == 0, r.stderr
    skip, track = json.loads(r.stdout)
    assert (skip["detect_mode"], skip["detect_every"], track["detect_mode"]) == ("skip", 3, "track")
    assert skip["full_scan_share"] == round(10 / 30, 3)       # frames 0, 3, ... 27
    assert track["full_scan_share"] < skip["full_scan_share"]  # one scan per face appearance + idle scans


def test_bench_realtime_runs_at_the_clip_rate():
    """30 frames at 10 fps: about 3 s of wall time, so frames/s is the clip's 10, and CPU is well under a core."""
    r = edge_cli("bench", "--source", str(CLIP), "--loops", "1", "--realtime", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["realtime"] and 9.0 <= out["fps"] <= 10.5, out
    assert out["cpu_percent"] < 80, out
    # the loop's own share, decoding the file apart (what it costs behind a camera)
    assert 0 < out["camera_free_cpu_percent"] <= out["cpu_percent"]
    assert abs(out["camera_free_cpu_percent"] + out["decode_cpu_percent"] - out["cpu_percent"]) <= 0.15, out


def test_bench_bad_sweep_is_one_clear_line():
    r = edge_cli("bench", "--source", str(CLIP), "--sweep", "3,fast")
    assert r.returncode == 2 and "--sweep: 'fast'" in r.stderr and "not a whole number" in r.stderr and "Traceback" not in r.stderr


def test_check_finds_runtime_cascade_and_a_working_model():
    r = edge_cli("check", "--json", "--led", "console")
    out = json.loads(r.stdout)
    assert out["runtime"]["ok"] and "ai_edge_litert" in out["runtime"]["detail"]
    assert out["cascade"]["ok"] and out["cascade"]["detail"].endswith(".xml")
    assert out["model"]["ok"] and "answers" in out["model"]["detail"]
    assert " ms per face on 1 thread of " in out["model"]["detail"]  # the bundled model's cost, from its JSON
    assert r.returncode == 0, r.stdout


def test_check_reports_a_broken_model(tmp_path):
    bad = tmp_path / "m.tflite"
    bad.write_bytes(b"not a model")
    r = edge_cli("check", "--json", "--model", str(bad), "--led", "none")
    out = json.loads(r.stdout)
    assert r.returncode == 1 and not out["model"]["ok"] and "m.json" in out["model"]["detail"]
