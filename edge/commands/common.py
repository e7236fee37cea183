"""Flags shared by commands that run the pipeline or ask the service, and how they override the config."""
from __future__ import annotations

import argparse

from edge.config import Config, load_config


def add_pipeline_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--source", help="auto | picamera2 | sample | /dev/videoN | N | video file | image folder")
    p.add_argument("--realtime", action="store_true", default=None, help="replay files at the clip's own pace")
    p.add_argument("--model", help="NAME.tflite (with NAME.json beside it)")
    p.add_argument("--num-threads", type=int, help="LiteRT interpreter threads")
    p.add_argument("--detect-every", type=int, help="run Haar every N frames")
    p.add_argument("--detect-mode", choices=("track", "skip"), help="track faces with region searches, or skip: Haar every --detect-every frames")
    p.add_argument("--led", choices=("auto", "gpio", "console", "none"), help="LED backend")
    p.add_argument("--db", help="SQLite event log path")
    cal = p.add_mutually_exclusive_group()
    cal.add_argument("--calibration", metavar="PATH",
                     help="apply this per-person calibration (default: calibration.json beside the log, if made for this model)")
    cal.add_argument("--no-calibration", action="store_true", default=None, help="ignore any per-person calibration")


def add_service_flags(p: argparse.ArgumentParser) -> None:
    """For commands that go through the running service when there is one (calibrate, view)."""
    p.add_argument("--no-service", action="store_true", help="open the camera here even if the service seems to run")
    p.add_argument("--status-file", metavar="PATH", help="the service's status.json (default: where the service writes it)")


def overrides(args: argparse.Namespace) -> dict:
    """Only flags the user gave override the file (None means 'not given')."""
    o: dict[str, dict] = {}

    def put(sec: str, key: str, val) -> None:
        if val is not None:
            o.setdefault(sec, {})[key] = val

    put("source", "source", getattr(args, "source", None))
    put("source", "realtime", getattr(args, "realtime", None))
    put("classify", "model", getattr(args, "model", None))
    put("classify", "num_threads", getattr(args, "num_threads", None))
    put("detect", "detect_every", getattr(args, "detect_every", None))
    put("detect", "mode", getattr(args, "detect_mode", None))
    put("led", "backend", getattr(args, "led", None))
    put("log", "db", getattr(args, "db", None))
    put("calibrate", "file", getattr(args, "calibration", None))
    if getattr(args, "no_calibration", None):
        put("calibrate", "strength", 0.0)
    return o


def config_from_args(args: argparse.Namespace) -> Config:
    return load_config(getattr(args, "config", None), overrides(args))
