"""`emotion-edge log --chart`: the day at a glance in a terminal, one bar per hour (or per bucket).

Each bar is the bucket's time split by mood, in the LED's own colours (24-bit ANSI backgrounds),
with '.' for time without a face and blanks where the service was not running; beside it the
share of time a face was seen and the leading emotion. With NO_COLOR set, TERM=dumb or output
that is not a terminal, the segments are letters (H happy, S sad, ...) so it pipes and diffs.

Time accounting is `summarize()`'s: each row's mood holds until the next row, and a gap over two
summary intervals means the service was stopped; a span that crosses bucket edges is split.
"""
from __future__ import annotations

import argparse
import math
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Mapping, Sequence, TextIO

from edge.config import load_config
from edge.eventlog import read_timeline
from edge.text import printable
from edge.types import NO_MOOD

BUCKETS_S = (60, 300, 600, 900, 1800, 3600, 7200, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 7 * 86400)
MAX_LINES = 24  # a day is 24 hourly lines; other windows get the bucket that fits 24 lines
DEFAULT_SPAN = 86400.0
BAR_WIDTH = 48
NONE_CHAR, OFF_CHAR = ".", " "
NONE_RGB = (110, 110, 110)
RESET = "\x1b[0m"


@dataclass
class Bucket:
    start: float
    seconds: dict[str, float] = field(default_factory=dict)  # mood (incl. 'none') -> seconds covered

    @property
    def covered(self) -> float:
        return sum(self.seconds.values())

    @property
    def face(self) -> float:
        return sum(s for m, s in self.seconds.items() if m != NO_MOOD)


def bucket_size(span: float) -> int:
    """The smallest bucket that fits the window in MAX_LINES lines."""
    return next((b for b in BUCKETS_S if math.ceil(span / b) <= MAX_LINES), BUCKETS_S[-1])


def make_buckets(rows: Sequence[tuple[float, str]], start: float, end: float, size: int, cap: float) -> list[Bucket]:
    """Seconds per mood in each bucket of [start, end); `rows` (time, mood) in time order, may begin before start."""
    first = math.floor(start / size) * size
    out = [Bucket(float(t)) for t in range(int(first), int(math.ceil(end)), size)]
    if not out:
        return out
    for i, (t, mood) in enumerate(rows):
        stop = rows[i + 1][0] if i + 1 < len(rows) else max(t, end)
        if stop - t > cap:  # a gap: the service was not running
            continue
        a, b = max(t, start), min(stop, end)
        while a < b:
            k = int((a - first) // size)
            if k >= len(out):
                break
            edge = min(b, first + (k + 1) * size)
            if k >= 0:
                out[k].seconds[mood] = out[k].seconds.get(mood, 0.0) + (edge - a)
            a = edge
    return out


def letters(labels: Sequence[str]) -> dict[str, str]:
    """One distinct capital per label: its first letter, else the next unused letter of the label."""
    out: dict[str, str] = {}
    taken = {NONE_CHAR.upper(), OFF_CHAR}
    for lab in labels:
        pick = next((c.upper() for c in lab if c.isalpha() and c.upper() not in taken), None)
        if pick is None:
            pick = next(c for c in "0123456789#*+=%@" if c not in taken)
        out[lab] = pick
        taken.add(pick)
    return out


def _cells(parts: Sequence[float], width: int) -> list[int]:
    """Largest-remainder rounding: integer cells that sum to round(sum(parts) * width)."""
    raw = [p * width for p in parts]
    cells = [int(r) for r in raw]
    short = round(sum(raw)) - sum(cells)
    for i in sorted(range(len(raw)), key=lambda i: raw[i] - cells[i], reverse=True)[:max(0, short)]:
        cells[i] += 1
    return cells


def _rgb(color: str) -> tuple[int, int, int]:
    c = color.lstrip("#")
    return int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16)


def use_color(stream: TextIO, env: Mapping[str, str] | None = None) -> bool:
    """24-bit colour only on a terminal, and never with NO_COLOR (no-color.org) or TERM=dumb."""
    env = os.environ if env is None else env
    if env.get("NO_COLOR") or env.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def _label(t: float, size: int, multi_day: bool) -> str:
    d = datetime.fromtimestamp(t, timezone.utc)
    if size >= 86400:
        return d.strftime("%Y-%m-%d")
    return d.strftime("%Y-%m-%d %H:%M" if multi_day else "%H:%M")


def render(buckets: Sequence[Bucket], size: int, colors: Mapping[str, str], color: bool,
           width: int = BAR_WIDTH, title: str = "") -> str:
    """The chart as text (deterministic: the test compares it)."""
    moods = [m for m in colors]
    for b in buckets:
        moods += [m for m in b.seconds if m not in moods and m != NO_MOOD]
    marks = letters(moods)
    multi_day = bool(buckets) and buckets[-1].start - buckets[0].start >= 86400
    head = "day (UTC)" if size >= 86400 else "time (UTC)"
    lab_w = max(len(head), len(_label(buckets[0].start, size, multi_day)) if buckets else 0)
    lines = [title] if title else []
    step = f"{size // 3600} h" if size % 3600 == 0 else f"{size // 60} min"
    lines.append(f"{head:<{lab_w}}  {('mood, ' + step + ' per line'):<{width + 2}}  faces  top")
    for b in buckets:
        order = [m for m in moods if b.seconds.get(m)] + ([NO_MOOD] if b.seconds.get(NO_MOOD) else [])
        cells = _cells([b.seconds[m] / size for m in order], width)
        bar = []
        for m, n in zip(order, cells):
            if not n:
                continue
            if m == NO_MOOD:
                bar.append(f"\x1b[38;2;{NONE_RGB[0]};{NONE_RGB[1]};{NONE_RGB[2]}m{NONE_CHAR * n}{RESET}" if color
                           else NONE_CHAR * n)
            elif color:
                r, g, bl = _rgb(colors.get(m, "#ffffff"))
                bar.append(f"\x1b[48;2;{r};{g};{bl}m{' ' * n}{RESET}")
            else:
                bar.append(marks[m] * n)
        bar.append(OFF_CHAR * (width - sum(cells)))
        cov, face = b.covered, b.face
        faces = f"{face / cov:5.0%}" if cov > 0 else "    -"
        emo = {m: s for m, s in b.seconds.items() if m != NO_MOOD}
        top = ""
        if emo and face > 0:
            m = max(emo, key=lambda k: (emo[k], -moods.index(k)))
            top = f"{printable(m)} {emo[m] / face:.0%}"  # moods come from the database: anything may be there
        lines.append(f"{_label(b.start, size, multi_day):<{lab_w}}  |{''.join(bar)}|  {faces}  {top}".rstrip())
    key = []
    for m in moods:
        if color:
            r, g, bl = _rgb(colors.get(m, "#ffffff"))
            key.append(f"\x1b[48;2;{r};{g};{bl}m  {RESET} {printable(m)}")
        else:
            key.append(f"{marks[m]} {printable(m)}")
    key.append((f"\x1b[38;2;{NONE_RGB[0]};{NONE_RGB[1]};{NONE_RGB[2]}m{NONE_CHAR}{RESET}" if color else NONE_CHAR)
               + " no face")
    key.append("blank: not running")
    lines.append("")
    lines.append("  ".join(key))
    return "\n".join(lines) + "\n"


def load_rows(db: Path, since: float) -> tuple[list[tuple[float, str]], float]:
    """(time, mood) rows from one gap limit before `since` (the mood in effect at the start), and the limit."""
    rows, cap = read_timeline(db, since, lookback_gaps=1.0)
    return [(t, m) for t, _, m in rows], cap


def chart(db: Path, since: float | None, now: float, colors: Mapping[str, str], color: bool,
          width: int = BAR_WIDTH) -> str:
    start = now - DEFAULT_SPAN if since is None else since
    if start >= now:
        return f"{printable(db)}: nothing to chart after {datetime.fromtimestamp(start, timezone.utc):%Y-%m-%dT%H:%MZ}\n"
    rows, cap = load_rows(db, start)
    size = bucket_size(now - start)
    buckets = make_buckets(rows, start, now, size, cap)
    title = (f"{printable(db)}: {datetime.fromtimestamp(start, timezone.utc):%Y-%m-%d %H:%M} .. "
             f"{datetime.fromtimestamp(now, timezone.utc):%Y-%m-%d %H:%M} UTC")
    return render(buckets, size, colors, color, width, title)


def chart_main(args: argparse.Namespace, db: Path, since: float | None, out: TextIO) -> int:
    """`log --chart`: colours from the config's [led.colors] (the LED's own), else the defaults."""
    colors = load_config(getattr(args, "config", None)).led.colors
    out.write(chart(db, since, time.time(), colors, use_color(out)))
    return 0
