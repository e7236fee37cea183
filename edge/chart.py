"""`emotion-edge log --chart`: the log at a glance in a terminal, one bar per bucket of time.

By default the window is the log's own data (its latest day at most, from its first row in that
day to its end), so a 10-minute log gets minute bars, not 24 empty hours; `--since` sets the
window. Each bar is the bucket's time split into mood shares, in the LED's own colours (24-bit
ANSI backgrounds), always in the legend's mood order, then '.' for time without a face and
blanks for time the service was not running: a stacked share, not a timeline (a timeline at a
few dozen cells would drop short moods by rounding; finer time is what a shorter window is for).
Beside it the share of time a face was seen and the leading emotion. With NO_COLOR set, TERM=dumb
or output that is not a terminal, the segments are letters (H happy, S sad, ...) so it pipes and
diffs; on a terminal the bars fill its width, elsewhere they are BAR_WIDTH cells.

Time accounting is `summarize()`'s: each row's mood holds until the next row, and a gap over two
summary intervals means the service was stopped; a span that crosses bucket edges is split.
"""
from __future__ import annotations

import argparse
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Mapping, Sequence, TextIO

from edge.config import load_config
from edge.eventlog import read_rows, read_timeline
from edge.text import printable
from edge.types import NO_MOOD

BUCKETS_S = (60, 300, 600, 900, 1800, 3600, 7200, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 7 * 86400)
MAX_LINES = 24  # a day is 24 hourly lines; other windows get the bucket that fits 24 lines
DEFAULT_SPAN = 86400.0  # the default window: the log's data in its latest day
BAR_WIDTH = 48  # cells per bar when the output is not a terminal (pipes and tests stay the same)
MIN_BAR_WIDTH = 10
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
    """The smallest bucket that fits the window in MAX_LINES lines (a second's slack: `--since 2h` is
    parsed a moment before the chart reads the clock, and still gets its 24 five-minute lines)."""
    return next((b for b in BUCKETS_S if math.ceil((span - 1.0) / b) <= MAX_LINES), BUCKETS_S[-1])


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


def _step(size: int) -> str:
    return f"{size // 3600} h" if size % 3600 == 0 else f"{size // 60} min"


def _wrap(items: Sequence[tuple[str, int]], columns: int | None, sep: str = "  ") -> list[str]:
    """(text, visible width) items joined by `sep`, in lines shorter than `columns` (None: one line)."""
    lines: list[str] = []
    cur, used = "", 0
    for text, n in items:
        if cur and columns is not None and used + len(sep) + n >= columns:
            lines.append(cur)
            cur, used = "", 0
        cur, used = (cur + sep + text, used + len(sep) + n) if cur else (text, n)
    return lines + ([cur] if cur else [])


def render(buckets: Sequence[Bucket], size: int, colors: Mapping[str, str], color: bool,
           width: int = BAR_WIDTH, title: str = "", columns: int | None = None) -> str:
    """The chart as text (deterministic: the test compares it). `columns`: the terminal's width, which
    the bars then fill (else `width` cells) and the legend wraps to."""
    moods = [m for m in colors]
    for b in buckets:
        moods += [m for m in b.seconds if m not in moods and m != NO_MOOD]
    marks = letters(moods)
    multi_day = bool(buckets) and buckets[-1].start - buckets[0].start >= 86400
    head = "day (UTC)" if size >= 86400 else "time (UTC)"
    lab_w = max(len(head), len(_label(buckets[0].start, size, multi_day)) if buckets else 0)
    rows = []
    for b in buckets:
        cov, face = b.covered, b.face
        faces = f"{face / cov:5.0%}" if cov > 0 else "    -"
        emo = {m: s for m, s in b.seconds.items() if m != NO_MOOD}
        top = ""
        if emo and face > 0:
            m = max(emo, key=lambda k: (emo[k], -moods.index(k)))
            top = f"{printable(m)} {emo[m] / face:.0%}"  # moods come from the database: anything may be there
        rows.append((b, faces, top))
    if columns is not None:  # label, "  |", bar, "|  ", faces, "  ", top, and a column spare (no wrap)
        top_w = max([len("top")] + [len(t) for _, _, t in rows])
        width = max(MIN_BAR_WIDTH, columns - (lab_w + 3 + 3 + 5 + 2 + top_w) - 1)
    step = _step(size)
    lines = [title] if title else []
    lines.append(f"{head:<{lab_w}}  {('mood shares of each ' + step):<{width + 2}}  faces  top")
    for b, faces, top in rows:
        # shares, not a timeline: every bar stacks its moods in the legend's order, then no face, then off
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
        lines.append(f"{_label(b.start, size, multi_day):<{lab_w}}  |{''.join(bar)}|  {faces}  {top}".rstrip())
    key: list[tuple[str, int]] = []
    for m in moods:
        name = printable(m)
        if color:
            r, g, bl = _rgb(colors.get(m, "#ffffff"))
            key.append((f"\x1b[48;2;{r};{g};{bl}m  {RESET} {name}", 3 + len(name)))
        else:
            key.append((f"{marks[m]} {name}", 2 + len(name)))
    key.append(((f"\x1b[38;2;{NONE_RGB[0]};{NONE_RGB[1]};{NONE_RGB[2]}m{NONE_CHAR}{RESET}" if color else NONE_CHAR)
                + " no face", 9))
    key.append(("blank: not running", 18))
    what = f"each bar: the share of its {step} per mood, always in this order (not a timeline):"
    lines += ["", *_wrap([(w, len(w)) for w in what.split(" ")], columns, sep=" ")]
    lines += _wrap(key, columns)
    return "\n".join(lines) + "\n"


def load_rows(db: Path, since: float) -> tuple[list[tuple[float, str]], float]:
    """(time, mood) rows from one gap limit before `since` (the mood in effect at the start), and the limit."""
    rows, cap = read_timeline(db, since, lookback_gaps=1.0)
    return [(t, m) for t, _, m in rows], cap


def data_window(db: Path, now: float) -> tuple[float, float, list[tuple[float, str]], float] | None:
    """The default window: the log's latest day of data, from its first row in that day (or the day's
    start, if it was running then) to its end: now while the service runs (its last row is within a
    gap limit of now), else its last row. None for an empty log."""
    latest = read_rows(db, limit=1)
    if not latest:
        return None
    last = latest[-1].time
    rows, cap = load_rows(db, max(0.0, last - DEFAULT_SPAN))
    end = max(now, last) if now - last <= cap else last
    start = max(end - DEFAULT_SPAN, rows[0][0]) if rows else last
    return start, end, rows, cap


def _utc(t: float) -> str:
    return f"{datetime.fromtimestamp(t, timezone.utc):%Y-%m-%d %H:%M}"


def chart(db: Path, since: float | None, now: float, colors: Mapping[str, str], color: bool,
          width: int = BAR_WIDTH, columns: int | None = None) -> str:
    """`since` None: the log's own data (data_window); else the window from `since` to now."""
    if since is None:
        found = data_window(db, now)
        if found is None:
            return f"{printable(db)}: no rows to chart yet\n"
        start, end, rows, cap = found
        note = " (the log's latest data; --since WHEN sets the window)"
    else:
        start, end, note = since, now, ""
        if start >= end:
            return f"{printable(db)}: nothing to chart after {datetime.fromtimestamp(start, timezone.utc):%Y-%m-%dT%H:%MZ}\n"
        rows, cap = load_rows(db, start)
    size = bucket_size(end - start)
    buckets = make_buckets(rows, start, max(end, start + 1.0), size, cap)  # a lone row still gets its line
    title = f"{printable(db)}: {_utc(start)} .. {_utc(end)} UTC{note}"
    return render(buckets, size, colors, color, width, title, columns)


def terminal_columns(stream: TextIO) -> int | None:
    """The terminal's width when `stream` is one, else None (a fixed width: pipes and tests stay the same)."""
    isatty = getattr(stream, "isatty", None)
    return shutil.get_terminal_size().columns if isatty and isatty() else None


def chart_main(args: argparse.Namespace, db: Path, since: float | None, out: TextIO) -> int:
    """`log --chart`: colours from the config's [led.colors] (the LED's own), else the defaults."""
    colors = load_config(getattr(args, "config", None)).led.colors
    out.write(chart(db, since, time.time(), colors, use_color(out), columns=terminal_columns(out)))
    return 0
