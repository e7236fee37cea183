"""The 'hobby pattern' baseline, and emotion-edge's ratio to it, measured in one run (a script, not a test).

Most hobby emotion-detection projects do, per frame: `detectMultiScale(gray, 1.3, 5)` on the full
camera frame (the OpenCV tutorial's line), then for each face: crop, resize to 48x48, scale to [0,1]
and Keras `model.predict`. This script times exactly that over a clip with the Keras model the
bundled .tflite was made from, on one core (CPU affinity + TensorFlow's thread pools = 1), with
decoding taken out as `emotion-edge bench` takes it out. Then it runs `emotion-edge bench --json`
for each given detector setting in the same run, and prints frames/s and the ratio; `--realtime`
clips are also replayed at their own rate for `cpu_percent` (`sample@2x` is the bundled sample with
every frame shown twice, each with its own noise: the same 27 s at 30 fps). Needs TensorFlow (the dev venv has it); edge/
never imports it.

    nice -n 10 .venv/bin/python tests/benchmarks/hobby.py --source sample --sweep 3,track --realtime sample sample@2x
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
KERAS_MODEL = ROOT / "model_export" / "runs" / "edgenet48_ft" / "best.keras"


def hobby(source: str, model_path: Path, scale_factor: float, loops: int) -> dict:
    """frames/s of full-frame Haar + Keras predict per face, decoding excluded."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import cv2
    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    cv2.setNumThreads(1)
    from edge.config import SourceConfig
    from edge.detect import find_cascade
    from edge.sources import open_source
    from model_export.predictors import load_keras

    model = load_keras(model_path)
    casc = cv2.CascadeClassifier(str(find_cascade()))
    frames = faces = 0
    busy = busy_cpu = haar_cpu = 0.0
    for _ in range(loops):
        with open_source(SourceConfig(source=source)) as src:
            for f in src:                      # decoded (and grayed) outside the timed part
                t0, c0 = time.perf_counter(), time.process_time()
                gray = f.image
                found = casc.detectMultiScale(gray, scale_factor, 5)
                haar_cpu += time.process_time() - c0
                for (x, y, w, h) in found:
                    roi = cv2.resize(gray[y:y + h, x:x + w], (48, 48)).astype(np.float32) / 255.0
                    model.predict(roi[None, :, :, None], verbose=0)
                    faces += 1
                busy += time.perf_counter() - t0
                busy_cpu += time.process_time() - c0
                frames += 1
    return {"pattern": f"Haar detectMultiScale(gray, {scale_factor}, 5) on every full frame + Keras predict per face",
            "model": str(model_path.relative_to(ROOT)), "frames": frames, "faces": faces,
            "fps": round(frames / busy, 2), "ms_per_frame": round(1e3 * busy / frames, 2),
            "cpu_ms_per_frame": round(1e3 * busy_cpu / frames, 2), "haar_cpu_ms_per_frame": round(1e3 * haar_cpu / frames, 2)}


def doubled(source: str, tmp: Path, noise: float = 2.0) -> Path:
    """The clip with every frame written twice at twice the rate (same motion per second), each copy with
    its own sensor-like noise (grey-level sigma `noise`): no two frames of a real camera are identical."""
    import cv2
    import numpy as np

    rng = np.random.default_rng(0)

    from edge.config import SourceConfig
    from edge.sources import open_source

    out = tmp / (Path(source).stem + "_2x.mp4")
    with open_source(SourceConfig(source=source)) as src:
        fps, w = getattr(src, "fps", 15.0), None
        for f in src:
            if w is None:
                h, wd = f.image.shape
                w = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), 2 * fps, (wd, h), isColor=False)
            for _ in range(2):
                w.write(np.clip(f.image + rng.normal(0, noise, f.image.shape), 0, 255).astype(np.uint8))
    w.release()
    return out


def bench(source: str, sweep: str, loops: int, realtime: bool, config: str | None = None) -> list[dict]:
    cmd = [sys.executable, "-m", "edge.cli", *(["--config", config] if config else []),
           "bench", "--source", source, "--loops", str(loops), "--sweep", sweep, "--json"]
    if realtime:
        cmd.append("--realtime")
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(r.stdout)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", default="sample")
    ap.add_argument("--sweep", default="3,track", help="emotion-edge detector settings to compare (bench --sweep)")
    ap.add_argument("--loops", type=int, default=1)
    ap.add_argument("--scale-factor", type=float, default=1.3, help="the hobby pattern's Haar scaleFactor")
    ap.add_argument("--model", type=Path, default=KERAS_MODEL)
    ap.add_argument("--realtime", nargs="*", default=[], help="clips to replay at their own rate for cpu_percent (SRC@2x: every frame twice)")
    ap.add_argument("--config", help="emotion-edge config file for its bench runs (e.g. the caps off, to compare)")
    a = ap.parse_args()
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})   # one core, like bench's default
    # emotion-edge first: a child started after TensorFlow is loaded would report TF's peak RSS as its own
    fast = bench(a.source, a.sweep, a.loops, False, a.config)
    real = []
    with tempfile.TemporaryDirectory() as tmp:
        for clip in a.realtime:
            path = str(doubled(clip[:-3], Path(tmp))) if clip.endswith("@2x") else clip
            real += bench(path, a.sweep, 1, True, a.config)
    base = hobby(a.source, a.model, a.scale_factor, a.loops)
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    print(f"hobby pattern: {base['fps']} frames/s ({base['ms_per_frame']} ms/frame, CPU {base['cpu_ms_per_frame']} ms/frame of which Haar {base['haar_cpu_ms_per_frame']}, {base['faces']} predicts)")
    for r in fast:
        name = "track" if r["detect_mode"] == "track" else f"skip detect_every={r['detect_every']}"
        r["ratio_to_hobby"] = round(r["fps"] / base["fps"], 1)
        r["cpu_ratio_to_hobby"] = round(base["cpu_ms_per_frame"] / r["cpu_ms_per_frame"], 1)
        print(f"emotion-edge {name}: {r['fps']} frames/s = {r['ratio_to_hobby']}x the hobby pattern; "
              f"CPU {r['cpu_ms_per_frame']} ms/frame = {r['cpu_ratio_to_hobby']}x less; "
              f"detect mean {r['detect_ms_mean']} ms, {r['detect_ms_per_frame']} ms/frame, full scans {r['full_scan_share']:.3f}")
    for r in real:
        name = "track" if r["detect_mode"] == "track" else f"skip detect_every={r['detect_every']}"
        print(f"emotion-edge {name} --realtime at {r['clip_fps']} fps: {r['fps']} frames/s, "
              f"CPU {r['cpu_percent']} % of a core (decoding {r['decode_cpu_percent']} %, camera-free {r['camera_free_cpu_percent']} %); detect mean {r['detect_ms_mean']} ms, "
              f"{r['detect_ms_per_frame']} ms/frame, full scans {r['full_scan_share']:.3f}; classify p50 {r['classify_ms_p50']} ms")
    print(json.dumps({"hobby": base, "bench": fast, "realtime": real, "load": os.getloadavg()[0]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
