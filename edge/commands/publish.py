"""`emotion-edge publish`: follow the local log and status file, publish the mood over MQTT.

Runs as its own unit (emotion-edge-mqtt.service), so the camera service keeps no network access.
"""
from __future__ import annotations

import argparse
import logging
import signal
import threading
from pathlib import Path

from edge.config import db_path, load_config
from edge.errors import ConfigError
from edge.service.statusfile import candidate_paths
from edge.text import printable


def add_parser(sub) -> None:
    p = sub.add_parser("publish", help="publish the mood to an MQTT broker / Home Assistant ([mqtt] in the config)")
    p.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS,
                   help="TOML config (default /etc/emotion-edge/config.toml if it exists)")
    p.add_argument("--db", metavar="PATH", help="SQLite log to follow (default: log.db from the config, or the state directory)")
    p.add_argument("--status-file", metavar="PATH", help="the service's status.json (default: beside the log)")
    p.add_argument("--host", help="broker host (overrides [mqtt] host)")
    p.add_argument("--port", type=int, help="broker port (overrides [mqtt] port)")
    p.add_argument("--uninstall", action="store_true",
                   help="remove this device's retained discovery and state from the broker, then exit "
                        "(Home Assistant drops the device; stop the emotion-edge-mqtt unit first)")


def main(args: argparse.Namespace) -> int:
    from edge.mqtt import Bridge, uninstall

    # the connected and stopped lines (and takeovers) are said even without -v
    mqtt_log = logging.getLogger("edge.mqtt")
    mqtt_log.setLevel(min(logging.getLogger().getEffectiveLevel(), logging.INFO))

    overrides: dict = {}
    for key in ("host", "port"):
        if getattr(args, key, None) is not None:
            overrides.setdefault("mqtt", {})[key] = getattr(args, key)
    cfg = load_config(getattr(args, "config", None), overrides)
    if getattr(args, "uninstall", False):
        if not cfg.mqtt.host:
            raise ConfigError("config key mqtt.host is empty: nothing to remove from a broker")
        print(printable(uninstall(cfg.mqtt)))
        return 0
    db = Path(args.db) if args.db else db_path(cfg, for_reading=True)
    if args.status_file:
        status = Path(args.status_file)
    else:
        beside = db.parent / "status.json"
        status = beside if beside.exists() else next((p for p in candidate_paths(cfg) if p.exists()), beside)
    bridge = Bridge(cfg.mqtt, db, status)
    stop = threading.Event()
    old = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        return bridge.run(stop)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
