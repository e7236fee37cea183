"""What each loop setting costs in CPU and in mood latency on the sample's scripted timeline (a script, not a test).

For each clip and each variant (config overrides), the real pipeline runs over the clip as fast as
possible on one core, and the script prints:
- `cpu_pct`: process CPU seconds, decoding and the synthetic camera noise taken out, over the clip's
  own duration: the camera-free share of one core the loop would use in real time (`bench --realtime`
  measures the same thing by waiting; this is quicker and barely moves on a loaded machine);
- the CPU split (detect / classify / the rest), detections and classifications per second;
- mood latency: for each scripted change of edge/samples/sample.json after the first, the seconds from
  the change until the loop's mood (what it logs and shows) first equals the scripted mood; `lat_face`
  is their mean over the face-to-face changes, `lat_none` the one into the empty room (no_face_timeout
  dominates it), `miss` the share of frames inside segments (after hold + 1 s settling) with the wrong mood.

Clips: `sample` (15 fps), `sample@30` (every frame shown twice with fresh sensor-like noise, sigma
`--noise`: the same 27 s at 30 fps, so no two frames are identical as on a real camera), `sample@7.5`
(every other frame), `moving` / `moving@30` (tests/fixtures/moving.mp4; no scripted moods, CPU only),
`empty` / `empty@30` (the sample's scripted empty room, 7.2-13.4 s: what the light costs while no one is there).

    nice .venv/bin/python tests/benchmarks/loop_cost.py --clips sample sample@30 \
        --variant base: --variant hz10:detect.detect_hz=10
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
SAMPLE = ROOT / "edge" / "samples" / "sample.mp4"
MOVING = ROOT / "tests" / "fixtures" / "moving.mp4"
TIMELINE = json.loads((ROOT / "edge" / "samples" / "sample.json").read_text())["timeline"]


class ClipSource:
    """The clip decoded frame by frame, shown `repeat` times each (or every `1/repeat`-th) with fresh noise;
    the CPU spent here (decoding, noise) is counted apart, as a camera hands frames over decoded."""

    def __init__(self, path: Path, rate: float, noise: float, seed: int = 0, window: tuple[float, float] | None = None) -> None:
        from edge.config import SourceConfig
        from edge.sources import open_source

        self.src = open_source(SourceConfig(source=str(path)))
        self.fps = float(getattr(self.src, "fps", 15.0))
        self.rate, self.noise = rate, noise
        self.rng = np.random.default_rng(seed)
        self.out_fps = self.fps * rate
        self.i, self.pending, self.n_in = 0, None, 0
        self.cpu = 0.0
        self.window = window

    def read(self):
        from edge.types import Frame

        c0 = time.process_time()
        try:
            while True:
                if self.pending is None or self.pending[1] <= 0:
                    f = self.src.read()
                    if f is None:
                        return None
                    self.n_in += 1
                    if self.window and not self.window[0] <= (self.n_in - 1) / self.fps < self.window[1]:
                        continue
                    if self.rate < 1 and (self.n_in - 1) % int(round(1 / self.rate)):
                        continue
                    self.pending = [f.image, max(1, int(round(self.rate)))]
                img = self.pending[0]
                self.pending[1] -= 1
                if self.noise > 0:
                    img = np.clip(img + self.rng.normal(0, self.noise, img.shape).astype(np.float32), 0, 255).astype(np.uint8)
                fr = Frame(img, self.i / self.out_fps, self.i)
                self.i += 1
                return fr
        finally:
            self.cpu += time.process_time() - c0

    def close(self) -> None:
        self.src.close()


class Timed:
    """Wraps a stage method and sums the process CPU time spent in it (all threads)."""

    def __init__(self, obj, name: str) -> None:
        self.cpu, self.calls = 0.0, 0
        inner = getattr(obj, name)

        def timed(*a, **k):
            c0 = time.process_time()
            try:
                return inner(*a, **k)
            finally:
                self.cpu += time.process_time() - c0
                self.calls += 1
        setattr(obj, name, timed)


def parse_variant(text: str) -> tuple[str, dict]:
    """'name:detect.detect_hz=10;classify.steady_hz=1' -> (name, {'detect': {'detect_hz': 10.0}, ...})."""
    name, _, rest = text.partition(":")
    over: dict[str, dict] = {}
    for item in filter(None, (x.strip() for x in rest.split(";"))):
        key, _, val = item.partition("=")
        sec, _, k = key.partition(".")
        try:
            v: object = json.loads(val)
        except json.JSONDecodeError:
            v = val
        over.setdefault(sec, {})[k] = v
    return name, over


def latency(seen: list[tuple[float, str]]) -> dict:
    """Per scripted change: seconds until the mood first equals the scripted one (None: never in that segment)."""
    out = []
    for seg in TIMELINE[1:]:
        hit = next((t for t, lab in seen if seg["start"] - 1e-6 <= t < seg["end"] and lab == seg["mood"]), None)
        out.append({"to": seg["mood"], "at": seg["start"], "latency": None if hit is None else round(hit - seg["start"], 3)})
    faces = [c["latency"] for c in out if c["to"] != "none"]
    none = [c["latency"] for c in out if c["to"] == "none"]
    wrong = total = 0
    for seg in TIMELINE:
        settle = 5.0 if seg["mood"] == "none" else 2.0
        inside = [lab for t, lab in seen if seg["start"] + settle <= t < seg["end"]]
        total += len(inside)
        wrong += sum(lab != seg["mood"] for lab in inside)
    return {"changes": out,
            "lat_face": None if None in faces else round(float(np.mean(faces)), 3),
            "lat_face_max": None if None in faces else round(float(np.max(faces)), 3),
            "lat_none": none[0] if none else None, "miss": round(wrong / max(1, total), 3)}


def run(clip: str, over: dict, noise: float) -> dict:
    from edge.config import load_config
    from edge.led import NullLed
    from edge.loop import Control, Stats, run_loop
    from edge.pipeline import Pipeline

    base, _, rate_s = clip.partition("@")
    path = {"sample": SAMPLE, "moving": MOVING, "empty": SAMPLE}.get(base, Path(base))
    window = (7.2, 13.4) if base == "empty" else None   # the sample's scripted empty room
    src = ClipSource(path, float(rate_s) / 15.0 if rate_s else 1.0, noise if rate_s and float(rate_s) > 15 else 0.0, window=window)
    merged = {"source": {"source": str(path)}, "calibrate": {"strength": 0.0}}
    for sec, vals in over.items():
        merged.setdefault(sec, {}).update(vals)
    cfg = load_config(None, merged)
    pipe = Pipeline.build(cfg, with_log=False, open_source=lambda: src, led=NullLed(cfg.led))
    det = Timed(pipe.detector, "boxes")
    clf = Timed(pipe.classifier, "classify")
    seen: list[tuple[float, str]] = []
    stats = Stats()
    c0 = time.process_time()
    try:
        run_loop(pipe, cfg, Control(), stats=stats, on_frame=lambda s, m: seen.append((m.time, m.label)))
    finally:
        pipe.close()
    cpu = time.process_time() - c0 - src.cpu
    dur = stats.frames / src.out_fps
    r = {"clip": clip, "frames": stats.frames, "fps_in": src.out_fps,
         "cpu_pct": round(100 * cpu / dur, 2), "cpu_ms_frame": round(1e3 * cpu / stats.frames, 3),
         "detect_pct": round(100 * det.cpu / dur, 2), "classify_pct": round(100 * clf.cpu / dur, 2),
         "rest_pct": round(100 * (cpu - det.cpu - clf.cpu) / dur, 2),
         "detect_hz": round(stats.detections / dur, 2), "classify_hz": round(stats.classifications / dur, 2),
         "full_scans": getattr(pipe.detector, "full_scans", None), "lost": getattr(pipe.detector, "lost", None)}
    if base == "sample":
        r.update(latency(seen))
    return r


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", nargs="+", default=["sample", "sample@30"])
    ap.add_argument("--variant", action="append", default=[], help="NAME:section.key=value;... (repeatable; 'base:' = the defaults)")
    ap.add_argument("--noise", type=float, default=2.0, help="grey-level sigma of the noise on the @30 clips' frames")
    ap.add_argument("--cores", type=int, default=1, help="CPU cores to run on (the first N)")
    ap.add_argument("--cv-threads", type=int, default=1, help="cv2.setNumThreads (-1: OpenCV's default, as the service runs)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    import cv2

    os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[:a.cores]))
    if a.cv_threads >= 0:
        cv2.setNumThreads(a.cv_threads)
    variants = [parse_variant(v) for v in (a.variant or ["base:"])]
    rows = []
    for clip in a.clips:
        for name, over in variants:
            r = run(clip, over, a.noise)
            r["variant"] = name
            rows.append(r)
            lat = f"lat_face {r['lat_face']} (max {r['lat_face_max']}) lat_none {r['lat_none']} miss {r['miss']}" if "lat_face" in r else ""
            print(f"{clip:10s} {name:14s} cpu {r['cpu_pct']:5.2f} % (det {r['detect_pct']:5.2f} cls {r['classify_pct']:5.2f} "
                  f"rest {r['rest_pct']:5.2f}) {r['cpu_ms_frame']:.3f} ms/frame; det {r['detect_hz']} Hz cls {r['classify_hz']} Hz "
                  f"scans {r['full_scans']} lost {r['lost']}; {lat}", flush=True)
    if a.json:
        print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
