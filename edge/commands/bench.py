"""`emotion-edge bench`: per-stage timings and frames/s of detection + classification over a clip.

Frames are decoded once into memory, so the numbers are the pipeline's cost, not the video
decoder's (a camera hands frames over already decoded). Runs on one core by default.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import time

from edge.commands.common import add_pipeline_flags, config_from_args
from edge.errors import SourceError
from edge.types import Frame


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="measure frames/s and per-stage ms over a clip (default: the bundled sample)")
    add_pipeline_flags(p)
    p.add_argument("--loops", type=int, default=3, help="replay the clip this many times")
    p.add_argument("--cores", type=int, default=1, help="CPU cores to run on (0 = all)")
    p.add_argument("--sweep", help="comma list of detect_every values to compare, e.g. 1,2,3,5")
    p.add_argument("--json", action="store_true", help="print one JSON object (or a list with --sweep)")


class _Replay:
    """In-memory source: the decoded clip, replayed `loops` times with continuous clip time."""

    def __init__(self, frames: list[Frame], loops: int, period: float) -> None:
        self.frames, self.loops, self.period, self.i = frames, loops, period, 0

    def read(self) -> Frame | None:
        n = len(self.frames)
        if self.i >= n * self.loops:
            return None
        k, f = divmod(self.i, n)
        fr = self.frames[f]
        self.i += 1
        return Frame(fr.image, fr.timestamp + k * self.period, self.i - 1)

    def close(self) -> None:
        pass


def _load(cfg) -> tuple[list[Frame], float, float]:
    from edge.sources import open_source

    t0 = time.perf_counter()
    frames = []
    with open_source(cfg.source) as src:
        while (f := src.read()) is not None:
            frames.append(f)
    decode_s = time.perf_counter() - t0
    if not frames:
        raise SourceError(f"{cfg.source.source}: no frames to benchmark")
    period = frames[-1].timestamp - frames[0].timestamp + (frames[1].timestamp - frames[0].timestamp if len(frames) > 1 else 1.0)
    return frames, period, decode_s


def bench_once(cfg, frames: list[Frame], period: float, loops: int) -> dict:
    from edge.app import build_classifier, build_detector, build_smoother
    from edge.led import NullLed
    from edge.loop import Control, Parts, Stats, run_loop

    clf = build_classifier(cfg)
    parts = Parts(_Replay(frames, loops, period), build_detector(cfg), clf, build_smoother(cfg, clf.labels), NullLed(cfg.led), None)
    stats = Stats()
    t0 = time.perf_counter()
    run_loop(parts, cfg, Control(), stats=stats)
    wall = time.perf_counter() - t0
    parts.close()
    s = stats.snapshot()
    s["fps"] = round(stats.frames / wall, 1)
    s["detect_every"] = cfg.detect.detect_every
    return s


def main(args: argparse.Namespace) -> int:
    import cv2

    if args.source is None:
        args.source = "sample"
    cfg = config_from_args(args)
    if args.cores:
        os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[:args.cores]))
        cv2.setNumThreads(args.cores)
    frames, period, decode_s = _load(cfg)
    h, w = frames[0].image.shape
    values = [int(v) for v in args.sweep.split(",")] if args.sweep else [cfg.detect.detect_every]
    results = []
    for every in values:
        cfg.detect.detect_every = every
        r = bench_once(cfg, frames, period, args.loops)
        r.update(frame_size=f"{w}x{h}", cores=args.cores or os.cpu_count(),
                 model=str(cfg.classify.model or "bundled"), decode_fps=round(len(frames) / decode_s, 1))
        r["rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        results.append(r)
    if args.json:
        print(json.dumps(results if args.sweep else results[0]))
    else:
        for r in results:
            print(f"detect_every={r['detect_every']}: {r['frames']} frames {r['frame_size']} on {r['cores']} core(s): "
                  f"{r['fps']} frames/s; detect p50 {r['detect_ms_p50']} ms p95 {r['detect_ms_p95']} ms; "
                  f"classify p50 {r['classify_ms_p50']} ms p95 {r['classify_ms_p95']} ms; "
                  f"{r['classifications']} faces classified; peak RSS {r['rss_mb']} MB")
    return 0
