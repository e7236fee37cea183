"""`emotion-edge log`: read the local emotion log (read-only; works while the service writes)."""
from __future__ import annotations

import argparse
import csv
import json
import math
import re
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import TextIO

from edge.affect import fmt_signed
from edge.config import db_path, load_config
from edge.errors import ConfigError
from edge.eventlog import LogRow, Summary, iso_utc, read_rows, summarize
from edge.text import printable

EARLIEST = 0.0  # the log's times are epoch seconds: nothing before 1970
MAX_LAST = 1_000_000_000
SPAN_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
SPAN_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
BOX_COLS = ("box_x", "box_y", "box_w", "box_h")


def add_parser(sub) -> None:
    p = sub.add_parser("log", help="show the local emotion log: latest rows, --since, --summary, --csv/--json export")
    p.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS,
                   help="TOML config (default /etc/emotion-edge/config.toml if it exists)")
    p.add_argument("--db", metavar="PATH", help="SQLite log (default: log.db from the config, or the state directory)")
    p.add_argument("-n", "--last", type=int, metavar="N",
                   help="the latest N rows (default 20; with --since: all rows since; 0 = all)")
    p.add_argument("--since", metavar="WHEN",
                   help="ISO date/time (local time unless it has a zone: 2025-01-31, 2025-01-31T08:00) "
                        "or a span back from now: 30m, 2h, 7d")
    p.add_argument("--summary", action="store_true", help="per-emotion changes and time share, and per-hour table")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--csv", action="store_true", help="CSV with a header row (one column per emotion)")
    fmt.add_argument("--json", action="store_true", help="one JSON array of rows (time, kind, mood, confidence, ...)")
    fmt.add_argument("--chart", action="store_true",
                     help="bars over the log's latest data (at most a day; --since sets the window), each "
                          "split into mood shares in the LED's colours, as wide as the terminal; plain letters "
                          "with NO_COLOR or when not a terminal")


def parse_since(text: str, now: float | None = None) -> float:
    """'2h' / '30m' / '7d' back from now, or an ISO date/time (naive = local time) -> epoch seconds."""
    now = time.time() if now is None else now
    m = SPAN_RE.match(text)
    try:
        if m:
            t = now - float(m.group(1)) * SPAN_S[m.group(2)]
        else:
            dt = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace(" ", "T"))
            t = dt.astimezone().timestamp() if dt.tzinfo is None else dt.timestamp()
    except (ValueError, OverflowError, OSError):  # OverflowError: year 1 in a zone east of UTC
        t = math.nan
    if not (EARLIEST <= t <= now + 86400 * 366 * 100):
        raise ConfigError(f"--since {text!r}: use a date/time from 1970 on like 2025-01-31 or 2025-01-31T08:00, "
                          f"or a span like 30m, 2h, 7d")
    return t


def resolve_db(args: argparse.Namespace) -> Path:
    if getattr(args, "db", None):
        return Path(args.db)
    return db_path(load_config(getattr(args, "config", None)), for_reading=True)


def main(args: argparse.Namespace) -> int:
    db = resolve_db(args)
    since = parse_since(args.since) if getattr(args, "since", None) is not None else None  # "" is an error, not "all"
    last = getattr(args, "last", None)
    if last is not None and not 0 <= last <= MAX_LAST:
        raise ConfigError(f"--last {last}: must be 0 (all) to {MAX_LAST}")
    out = sys.stdout
    if getattr(args, "chart", False):
        from edge.chart import chart_main

        return chart_main(args, db, since, out)
    if getattr(args, "summary", False):
        s = summarize(db, since=since)
        if args.json:
            json.dump(s.as_dict(), out, indent=1)
            out.write("\n")
        elif args.csv:
            write_summary_csv(s, out)
        else:
            write_summary_text(s, db, out)
        return 0
    limit = (20 if since is None else None) if last is None else (last or None)
    rows = read_rows(db, since=since, limit=limit)
    if args.json:
        json.dump([r.as_dict() for r in rows], out)
        out.write("\n")
    elif args.csv:
        write_csv(rows, out)
    else:
        write_text(rows, out)
    return 0


def _labels(rows: list[LogRow]) -> list[str]:
    seen: dict[str, None] = {}
    for r in rows:
        for k in r.probs or ():
            seen.setdefault(k, None)
    return list(seen)


def write_csv(rows: list[LogRow], out: TextIO) -> None:
    labels = _labels(rows)
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["time", "kind", "mood", "confidence", "faces", *BOX_COLS, *labels, "faces_detail", "valence", "arousal"])
    for r in rows:
        box = r.box or ("", "", "", "")
        probs = [f"{r.probs[k]:.4f}" if r.probs and k in r.probs else "" for k in labels]
        detail = json.dumps(r.faces_detail, separators=(",", ":")) if r.faces_detail else ""
        va = [f"{v:.4f}" if v is not None else "" for v in (r.valence, r.arousal)]
        w.writerow([iso_utc(r.time), printable(r.kind), printable(r.mood), f"{r.confidence:.4f}", f"{r.faces:g}", *box, *probs, detail, *va])


def write_text(rows: list[LogRow], out: TextIO) -> None:
    if not rows:
        out.write("no rows\n")
        return
    out.write(f"{'time (UTC)':<25} {'kind':<8} {'mood':<9} {'conf':>5} {'faces':>5} {'val':>5} {'aro':>5}  box\n")
    for r in rows:
        box = ",".join(str(v) for v in r.box) if r.box else "-"
        out.write(f"{iso_utc(r.time):<25} {printable(r.kind):<8} {printable(r.mood):<9} {r.confidence:5.2f} {r.faces:5g} "
                  f"{fmt_signed(r.valence):>5} {fmt_signed(r.arousal):>5}  {box}\n")


def _dur(s: float) -> str:
    return f"{s:.0f}s" if s < 120 else f"{s / 60:.0f}m" if s < 7200 else f"{s / 3600:.1f}h"


def write_summary_text(s: Summary, db: Path, out: TextIO) -> None:
    since = f" since {iso_utc(s.since)}" if s.since is not None else ""
    out.write(f"{printable(db)}: {s.rows} rows{since}, {_dur(s.seconds)} covered\n")
    if not s.rows:
        return
    out.write(f"\n{'mood':<10} {'changes':>7} {'time':>7} {'share':>6}\n")
    for mood, t in sorted(s.moods.items(), key=lambda kv: -kv[1].seconds):
        out.write(f"{printable(mood):<10} {t.changes:>7} {_dur(t.seconds):>7} {t.share:>6.0%}\n")
    out.write(f"\n{'hour (UTC)':<14} {'changes':>7}  moods by time share\n")
    for hour, moods in s.hours.items():
        total = sum(moods.values()) or 1.0
        shares = "  ".join(f"{printable(m)} {v / total:.0%}" for m, v in sorted(moods.items(), key=lambda kv: -kv[1]) if v > 0)
        out.write(f"{hour:<14} {s.hour_changes.get(hour, 0):>7}  {shares or '-'}\n")


def write_summary_csv(s: Summary, out: TextIO) -> None:
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["mood", "changes", "seconds", "share"])
    for mood, t in s.moods.items():
        w.writerow([printable(mood), t.changes, f"{t.seconds:.1f}", f"{t.share:.4f}"])  # text from the database
