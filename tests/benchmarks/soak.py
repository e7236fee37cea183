"""Soak benchmark (a script, not a test): the real loop on the bundled clip replayed over and over.

Real Haar, real LiteRT, the real SQLite EventLog in a temp dir, the ResilientSource reader thread
(unless --no-resilient). Samples RSS (VmRSS) and open file descriptors at the start, every
--every seconds and at the end; paced at the clip's 15 fps like a camera (--fast: as fast as it
decodes; the reader thread then drops most frames, as it would for a camera faster than the loop). Prints a table and one JSON line. Exit 1 when RSS grew more than
--rss-limit-mb after warm-up, or the fd / thread count grew.

    nice -n 5 .venv/bin/python tests/benchmarks/soak.py --minutes 10
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from edge.config import SourceConfig, load_config  # noqa: E402
from edge.eventlog import EventLog  # noqa: E402
from edge.eventlog import read_rows  # noqa: E402
from edge.led import NullLed  # noqa: E402
from edge.loop import Control, Stats, run_loop  # noqa: E402
from edge.pipeline import Pipeline, build_classifier, build_detector, build_smoother  # noqa: E402
from edge.resilient import ResilientSource  # noqa: E402
from edge.sources import SAMPLE_CLIP, FrameSource, VideoFileSource  # noqa: E402
from edge.types import Frame  # noqa: E402


class LoopingClip(FrameSource):
    """A clip replayed for ever with continuous clip time, like a camera that never ends."""

    def __init__(self, path: Path, cfg: SourceConfig) -> None:
        self.path, self.cfg = path, cfg
        self.name = f"looping {path.name}"
        self.loops = 0
        self._clip = VideoFileSource(path, cfg)
        self._t0 = 0.0
        self._i0 = 0
        self._last: Frame | None = None

    def read(self) -> Frame | None:
        f = self._clip.read()
        if f is None:
            self._clip.close()
            self.loops += 1
            if self._last is not None:
                self._t0 = self._last.timestamp + 1.0 / self._clip.fps
                self._i0 = self._last.index + 1
            self._clip = VideoFileSource(self.path, self.cfg)
            f = self._clip.read()
        f = Frame(f.image, self._t0 + f.timestamp, self._i0 + f.index)
        self._last = f
        return f

    def close(self) -> None:
        self._clip.close()


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def n_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--every", type=float, default=60.0, help="seconds between samples")
    ap.add_argument("--warmup", type=float, default=60.0, help="seconds before the RSS baseline")
    ap.add_argument("--rss-limit-mb", type=float, default=10.0)
    ap.add_argument("--clip", default=str(SAMPLE_CLIP))
    ap.add_argument("--model", default="", help="NAME.tflite (default: the bundled model)")
    ap.add_argument("--fast", action="store_true",
                    help="replay as fast as the clip decodes (default: at the clip's 15 fps, like a camera)")
    ap.add_argument("--no-resilient", action="store_true", help="do not wrap the replay in ResilientSource")
    args = ap.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="emotion-soak-"))
    db = tmp / "soak.db"
    # Short summary/commit intervals so the log really works during a 10-minute run.
    cfg = load_config(None, {"classify": {"model": args.model}, "led": {"backend": "none"},
                             "source": {"source": args.clip, "realtime": not args.fast},
                             "log": {"db": str(db), "summary_interval": 5.0}})
    classifier = build_classifier(cfg)
    clip = LoopingClip(Path(args.clip), cfg.source)
    source: FrameSource = clip if args.no_resilient else ResilientSource(lambda: clip, first=clip, poll=2.0)
    parts = Pipeline(source, build_detector(cfg), classifier, build_smoother(cfg, classifier.labels),
                  NullLed(cfg.led), EventLog(db, cfg.log))
    control = Control()
    stats = Stats()
    rows: list[dict] = []
    t_start = time.monotonic()
    end = t_start + args.minutes * 60.0
    state = {"next": t_start, "warm": None}

    def sample(label: str) -> None:
        now = time.monotonic()
        rows.append({"label": label, "t": round(now - t_start, 1), "frames": stats.frames, "fps": round(stats.fps, 1),
                     "rss_mb": round(rss_mb(), 2), "fds": n_fds(), "threads": threading.active_count(),
                     "cpu_s": round(time.process_time(), 1)})
        r = rows[-1]
        print(f"{r['label']:>6} {r['t']:8.1f} {r['frames']:9d} {r['fps']:7.1f} {r['rss_mb']:9.2f} {r['fds']:5d} "
              f"{r['threads']:4d} {r['cpu_s']:8.1f}", flush=True)

    def on_frame(s: Stats, mood) -> None:  # the service's per-frame hook: cheap unless a sample is due
        now = time.monotonic()
        if now >= end:
            control.stop.set()
        elif now >= state["next"]:
            state["next"] = now + args.every
            if state["warm"] is None and now - t_start >= args.warmup:
                state["warm"] = len(rows)
                sample("warm")
            else:
                sample("")

    print(f"soak: {args.minutes:g} min on {args.clip} ({'fast' if args.fast else 'realtime'}, "
          f"{'plain' if args.no_resilient else 'ResilientSource'}), log {db}")
    print(f"{'':>6} {'t_s':>8} {'frames':>9} {'fps':>7} {'rss_mb':>9} {'fds':>5} {'thr':>4} {'cpu_s':>8}")
    sample("start")
    try:
        why = run_loop(parts, cfg, control, on_frame=on_frame, stats=stats)
        sample("end")
    finally:
        parts.close()
    n_rows = len(read_rows(db))
    first = rows[0]
    warm = rows[state["warm"]] if state["warm"] is not None else rows[min(1, len(rows) - 1)]
    last = rows[-1]
    drift = last["rss_mb"] - warm["rss_mb"]
    peak_after_warm = max(r["rss_mb"] for r in rows[rows.index(warm):])
    ok = drift <= args.rss_limit_mb and last["fds"] <= warm["fds"] and last["threads"] <= warm["threads"]
    result = {
        "soak": "emotion-edge", "stopped": why, "minutes": round((time.monotonic() - t_start) / 60, 2),
        "frames": stats.frames, "fps_avg": round(stats.frames / max(1e-9, time.monotonic() - t_start), 1),
        "clip_loops": clip.loops, "dropped": getattr(source, "dropped", 0), "event_rows": n_rows,
        "rss_start_mb": first["rss_mb"], "rss_warm_mb": warm["rss_mb"], "rss_end_mb": last["rss_mb"],
        "rss_drift_mb": round(drift, 2), "rss_peak_after_warm_mb": peak_after_warm,
        "fds_start": first["fds"], "fds_warm": warm["fds"], "fds_end": last["fds"],
        "threads_warm": warm["threads"], "threads_end": last["threads"],
        "detect_ms_p50": stats.snapshot()["detect_ms_p50"], "classify_ms_p50": stats.snapshot()["classify_ms_p50"],
        "ok": ok,
    }
    print(json.dumps(result))
    for p in sorted(tmp.iterdir()):
        p.unlink()
    tmp.rmdir()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
