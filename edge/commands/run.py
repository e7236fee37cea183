"""`emotion-edge run`: the mood-light loop in the foreground (the service uses --service)."""
from __future__ import annotations

import argparse
import logging
import signal

from edge.commands.common import add_pipeline_flags, config_from_args

log = logging.getLogger("emotion-edge")


def add_parser(sub) -> None:
    p = sub.add_parser("run", help="run the mood light (default: camera on a Pi, else the bundled sample)")
    add_pipeline_flags(p)
    p.add_argument("--max-frames", type=int, help="stop after N frames")
    p.add_argument("--service", action="store_true", help="run as the systemd service (sd_notify, signals, reload)")


def main(args: argparse.Namespace) -> int:
    if args.service:
        from edge.service import service
        return service.run_service(args)
    from edge.loop import Control, Stats, format_stats, run_loop
    from edge.pipeline import Pipeline

    cfg = config_from_args(args)
    if args.max_frames is not None and args.max_frames < 1:
        from edge.errors import ConfigError
        raise ConfigError(f"--max-frames must be at least 1 (got {args.max_frames})")
    control = Control()
    old = {s: signal.signal(s, lambda *_: control.stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    pipe = Pipeline.build(cfg, calibration_required=bool(getattr(args, "calibration", None)))
    try:
        stats = Stats()
        why = run_loop(pipe, cfg, control, max_frames=args.max_frames, stats=stats)
        mood = pipe.smoother.mood
    finally:
        pipe.close()
        for s, h in old.items():
            signal.signal(s, h)
    if why == "end" and stats.frames == 0:  # a folder of unreadable files is an error, as in `bench`
        from edge.errors import SourceError
        raise SourceError(f"{cfg.source.source}: no usable frames (every file was unreadable or refused)")
    print(f"stopped ({why}) after {stats.frames} frames: {format_stats(stats.snapshot(), mood)}")
    return 0
