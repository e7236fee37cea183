"""`emotion-edge bench`: per-stage timings and frames/s of detection + classification over a clip.

`fps` is the pipeline's rate with the time spent decoding the video taken out (a camera hands
frames over already decoded); `decode_fps` is the decoder alone. Frames stream from the file
(nothing is preloaded), so `rss_mb` is what the running loop needs. One core by default.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import time

from edge.argtypes import int_in, int_list
from edge.commands.common import add_pipeline_flags, config_from_args
from edge.errors import SourceError
from edge.types import Frame


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="measure frames/s and per-stage ms over a clip (default: the bundled sample)")
    add_pipeline_flags(p)
    p.add_argument("--loops", type=int, default=3, help="replay the clip this many times")
    p.add_argument("--cores", type=int_in(0, len(os.sched_getaffinity(0))), default=1, help="CPU cores to run on (0 = all)")
    p.add_argument("--sweep", type=int_list(1, 1000), help="comma list of detect_every values to compare, e.g. 1,2,3,5")
    p.add_argument("--json", action="store_true", help="print one JSON object (a list with --sweep)")


class _TimedSource:
    """Replays the clip `loops` times with continuous clip time, timing the decoder separately."""

    def __init__(self, cfg, loops: int) -> None:
        from edge.sources import open_source

        self._open = lambda: open_source(cfg.source)
        self.name, self.loops, self.k = cfg.source.source, loops, 0
        self.read_s, self.offset, self.last_t, self.step = 0.0, 0.0, 0.0, 1.0 / cfg.source.fps
        self.src = self._open()

    def read(self) -> Frame | None:
        t0 = time.perf_counter()
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

    def close(self) -> None:
        self.src.close()


def bench_once(cfg, loops: int) -> dict:
    from edge.app import build_classifier, build_detector, build_smoother
    from edge.led import NullLed
    from edge.loop import Control, Parts, Stats, run_loop

    clf = build_classifier(cfg)
    src = _TimedSource(cfg, loops)
    parts = Parts(src, build_detector(cfg), clf, build_smoother(cfg, clf.labels), NullLed(cfg.led), None)
    stats = Stats()
    t0 = time.perf_counter()
    try:
        run_loop(parts, cfg, Control(), stats=stats)
    finally:
        parts.close()
    wall = time.perf_counter() - t0
    if not stats.frames:
        raise SourceError(f"{cfg.source.source}: no frames to benchmark")
    s = stats.snapshot()
    s["fps"] = round(stats.frames / max(1e-9, wall - src.read_s), 1)
    s["decode_fps"] = round(stats.frames / max(1e-9, src.read_s), 1)
    s["detect_every"] = cfg.detect.detect_every
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
    values = args.sweep or [cfg.detect.detect_every]
    results = []
    for every in values:
        cfg.detect.detect_every = every
        r = bench_once(cfg, args.loops)
        r.update(cores=len(os.sched_getaffinity(0)), model=str(cfg.classify.model or "bundled"))
        r["rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        results.append(r)
    if args.json:
        print(json.dumps(results if args.sweep else results[0]))
    else:
        for r in results:
            print(f"detect_every={r['detect_every']}: {r['frames']} frames on {r['cores']} core(s): "
                  f"{r['fps']} frames/s (decoder alone {r['decode_fps']}/s); "
                  f"detect p50 {r['detect_ms_p50']} ms p95 {r['detect_ms_p95']} ms; "
                  f"classify p50 {r['classify_ms_p50']} ms p95 {r['classify_ms_p95']} ms; "
                  f"{r['classifications']} faces classified; peak RSS {r['rss_mb']} MB")
    return 0
