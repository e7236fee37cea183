"""`emotion-edge bench`: per-stage timings and frames/s of detection + classification over a clip.

`fps` is the pipeline's rate with the time spent decoding the video taken out (a camera hands
frames over already decoded); `decode_fps` is the decoder alone. Frames stream from the file
(nothing is preloaded), so `rss_mb` is what the running loop needs. One core by default.

With `--realtime` the clip is replayed at its own rate, as a camera would deliver it: `fps` is then
simply frames / wall time, and `cpu_percent` (process CPU time / wall time x 100, all threads) is
the figure that matters on a Pi, where the camera sets the pace. `decode_cpu_percent` is the part of
it spent decoding the file (a camera hands frames over for much less) and `camera_free_cpu_percent`
the rest: what the loop itself costs behind a camera. `full_scan_share` is the share
of frames that ran a full-frame Haar scan; `cpu_ms_per_frame` is the process CPU time per frame
without the decoder (the figure to compare on a shared machine, where wall time also counts waiting); `detect_ms_mean` is the mean over frames where Haar ran
(full scans and region searches), `detect_ms_per_frame` the detection time spread over every frame.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import time

from edge.argtypes import int_in
from edge.commands.common import add_pipeline_flags, config_from_args
from edge.errors import SourceError
from edge.types import Frame


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="measure frames/s and per-stage ms over a clip (default: the bundled sample)")
    add_pipeline_flags(p)
    p.add_argument("--loops", type=int, default=3, help="replay the clip this many times")
    p.add_argument("--cores", type=int_in(0, len(os.sched_getaffinity(0))), default=1, help="CPU cores to run on (0 = all)")
    p.add_argument("--sweep", type=_sweep, help="comma list of detectors to compare: detect_every values (skip mode) and/or 'track', e.g. 1,3,track")
    p.add_argument("--json", action="store_true", help="print one JSON object (a list with --sweep)")


class _TimedSource:
    """Replays the clip `loops` times with continuous clip time, timing the decoder separately."""

    def __init__(self, cfg, loops: int) -> None:
        from edge.sources import open_source

        self._open = lambda: open_source(cfg.source)
        self.name, self.loops, self.k = cfg.source.source, loops, 0
        self.read_s, self.offset, self.last_t, self.step = 0.0, 0.0, 0.0, 1.0 / cfg.source.fps
        self.read_cpu = 0.0
        self.src = self._open()
        self.clip_fps = float(getattr(self.src, "fps", cfg.source.fps))

    def read(self) -> Frame | None:
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            f = self.src.read()
            while f is None:
                self.k += 1
                self.src.close()
                if self.k >= self.loops:
                    return None
                self.offset = self.last_t + self.step
                self.src = self._open()
                f = self.src.read()
                if f is None:
                    raise SourceError(f"{self.name}: no frames to benchmark")
            self.last_t = f.timestamp + self.offset
            return Frame(f.image, self.last_t, f.index)
        finally:
            self.read_s += time.perf_counter() - t0
            self.read_cpu += time.process_time() - c0

    def close(self) -> None:
        self.src.close()


class _TimedDetector:
    """The loop's detector stage with every call timed (the loop's ring keeps only recent runs)."""

    def __init__(self, inner) -> None:
        self.inner, self.busy_s, self.runs = inner, 0.0, 0

    def boxes(self, frame: Frame):
        t0 = time.perf_counter()
        boxes, ran = self.inner.boxes(frame)
        if ran:
            self.busy_s += time.perf_counter() - t0
            self.runs += 1
        return boxes, ran


def bench_once(cfg, loops: int) -> dict:
    from edge.led import NullLed
    from edge.loop import Control, Stats, run_loop
    from edge.pipeline import Pipeline

    pipe = Pipeline.build(cfg, with_log=False, open_source=lambda: _TimedSource(cfg, loops), led=NullLed(cfg.led))
    src: _TimedSource = pipe.source  # type: ignore[assignment]
    det = pipe.detector = _TimedDetector(pipe.detector)
    stats = Stats()
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        run_loop(pipe, cfg, Control(), stats=stats)
    finally:
        pipe.close()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    if not stats.frames:
        raise SourceError(f"{cfg.source.source}: no frames to benchmark")
    s = stats.snapshot()
    realtime = bool(cfg.source.realtime)
    # realtime: the clip sets the pace, so frames/s is frames over wall time (sleeps included)
    s["fps"] = round(stats.frames / max(1e-9, wall if realtime else wall - src.read_s), 1)
    s["decode_fps"] = round(stats.frames / max(1e-9, src.read_cpu if realtime else src.read_s), 1)
    s["cpu_percent"] = round(100.0 * cpu / max(1e-9, wall), 1)
    s["decode_cpu_percent"] = round(100.0 * src.read_cpu / max(1e-9, wall), 1)
    # what the loop itself costs: a camera hands frames over decoded, so this is the share on a Pi camera
    s["camera_free_cpu_percent"] = round(100.0 * (cpu - src.read_cpu) / max(1e-9, wall), 1)
    # CPU time per frame without the decoder: unlike frames/s, it barely moves when other jobs share the cores
    s["cpu_ms_per_frame"] = round(1e3 * (cpu - src.read_cpu) / stats.frames, 3)
    s["full_scan_share"] = round(det.inner.detector.calls / stats.frames, 3)
    s["detect_ms_mean"] = round(1e3 * det.busy_s / max(1, det.runs), 3)
    s["detect_ms_per_frame"] = round(1e3 * det.busy_s / stats.frames, 3)
    s["detect_mode"] = cfg.detect.mode
    s["detect_every"] = cfg.detect.detect_every
    s["detect_hz"], s["steady_hz"] = cfg.detect.detect_hz, cfg.classify.steady_hz
    s["realtime"], s["clip_fps"] = realtime, round(src.clip_fps, 3)
    return s


def main(args: argparse.Namespace) -> int:
    import cv2

    if args.source is None:
        args.source = "sample"
    if args.loops < 1:
        from edge.errors import ConfigError
        raise ConfigError(f"--loops must be at least 1 (got {args.loops})")
    cfg = config_from_args(args)
    if args.cores:
        os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[:args.cores]))
        cv2.setNumThreads(args.cores)
    values = args.sweep or [(cfg.detect.mode, cfg.detect.detect_every)]
    results = []
    for mode, every in values:
        cfg.detect.mode, cfg.detect.detect_every = mode, every
        r = bench_once(cfg, args.loops)
        r.update(cores=len(os.sched_getaffinity(0)), model=str(cfg.classify.model or "bundled"))
        r["model_cost"] = _model_cost(cfg)
        r["rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        results.append(r)
    if args.json:
        print(json.dumps(results if args.sweep else results[0]))
    else:
        for r in results:
            name = "track" if r["detect_mode"] == "track" else f"detect_every={r['detect_every']}"
            print(f"{name}: {r['frames']} frames on {r['cores']} core(s): "
                  f"{r['fps']} frames/s{' (realtime)' if r['realtime'] else ''} (decoder alone {r['decode_fps']}/s); "
                  f"CPU {r['cpu_percent']} % of a core (decoding {r['decode_cpu_percent']} %, the loop itself {r['camera_free_cpu_percent']} %); "
                  f"detect mean {r['detect_ms_mean']} ms p50 {r['detect_ms_p50']} ms p95 {r['detect_ms_p95']} ms, "
                  f"full scans on {100 * r['full_scan_share']:.1f} % of frames; "
                  f"classify p50 {r['classify_ms_p50']} ms p95 {r['classify_ms_p95']} ms; "
                  f"{r['classifications']} faces classified; peak RSS {r['rss_mb']} MB")
            print(f"  model's own cost (its JSON): {r['model_cost']['describe'] if r['model_cost'] else 'not measured'}")
    return 0


def _model_cost(cfg) -> dict | None:
    """The model contract's cost (ms per face on one thread, where measured), or None."""
    from dataclasses import asdict

    from edge.classify import resolve_model
    from edge.contract import read_model_info

    cost = read_model_info(resolve_model(cfg.classify.model), check_sha=False).cost
    return {**asdict(cost), "describe": cost.describe()} if cost else None


def _sweep(text: str) -> list[tuple[str, int]]:
    """argparse type: '1,3,track' -> [('skip', 1), ('skip', 3), ('track', 3)]; anything else one clear error."""
    import argparse

    parts = [x.strip() for x in text.split(",")]
    if not text.strip() or any(not x for x in parts):
        raise argparse.ArgumentTypeError(f"{text!r}: expected a comma list of detect_every values and/or 'track', like 1,3,track")
    every = int_in(1, 1000)
    out = [("track", 3) if x == "track" else ("skip", every(x)) for x in parts]
    if len(set(out)) != len(out):
        raise argparse.ArgumentTypeError(f"{text!r}: a detector is named twice")
    return out
