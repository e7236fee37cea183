"""A grey camera frame drawn in a terminal: Unicode half blocks, face boxes, mood, frames/s, advice.

Each character cell shows two pixels (the upper one as the foreground of "▀", the lower one as its
background), in 24-bit colour, the 256-colour grey ramp, or four ANSI greys, whichever the terminal
has; `plain` draws characters only (no escape codes) for logs, scripts and tests.
"""
from __future__ import annotations

import os
import shutil
import sys
import textwrap
from dataclasses import dataclass, field
from typing import Sequence, TextIO

import cv2
import numpy as np

from edge.text import printable
from edge.types import Box

NOT_A_TERMINAL_LINES = 60
NOT_A_TERMINAL_COLUMNS = 80
MIN_PICTURE_ROWS = 10
RAMP = " .:-=+*#%@"          # plain mode, dark to light
UPPER = "\u2580"              # ▀
BOX_RGB = (0, 230, 0)
RESET = "\x1b[0m"


@dataclass
class FaceMark:
    """One face to draw: its box in the picture's pixels and what to write beside it."""

    box: Box
    label: str = ""
    confidence: float = 0.0
    width_note: str = ""


@dataclass
class Screen:
    """Everything one drawing shows."""

    image: np.ndarray                 # grey uint8 HxW
    faces: list[FaceMark] = field(default_factory=list)
    title: str = ""
    advice: str = ""
    fps: float | None = None


def color_mode(stream: TextIO, plain: bool, env: dict | None = None) -> str:
    """'plain' (asked for, not a terminal, or NO_COLOR), 'truecolor', '256' or 'grey' (four ANSI greys)."""
    env = os.environ if env is None else env
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):
        tty = False
    if plain or not tty or "NO_COLOR" in env:  # a pipe or file gets no escape codes
        return "plain"
    colorterm = env.get("COLORTERM", "").lower()
    term = env.get("TERM", "").lower()
    if colorterm in ("truecolor", "24bit") or term.endswith("direct"):
        return "truecolor"
    if "256" in term:
        return "256"
    return "grey"


def terminal_size(stream: TextIO) -> tuple[int, int]:
    """(columns, lines) of the terminal; 80x60 when the output is not a terminal."""
    try:
        if stream.isatty():
            size = os.get_terminal_size(stream.fileno())
            return max(20, size.columns), max(MIN_PICTURE_ROWS + 4, size.lines)
    except (OSError, ValueError, AttributeError):
        pass
    cols = shutil.get_terminal_size((NOT_A_TERMINAL_COLUMNS, NOT_A_TERMINAL_LINES)).columns
    return max(20, min(cols, 200)), NOT_A_TERMINAL_LINES


def text_lines(screen: Screen) -> list[str]:
    """The lines under the picture: title with frames/s, one per face, the advice."""
    head = screen.title
    if screen.fps is not None:
        head = f"{head}  {screen.fps:.1f} frames/s" if head else f"{screen.fps:.1f} frames/s"
    lines = [head] if head else []
    for i, f in enumerate(screen.faces, 1):
        mood = f"{f.label} ({f.confidence:.2f})" if f.label else "not read yet"
        lines.append(f"face {i}: {mood}" + (f", {f.width_note}" if f.width_note else ""))
    if not screen.faces:
        lines.append("no face")
    lines.append(f"advice: {screen.advice}" if screen.advice else "advice: -")
    return [printable(ln) for ln in lines]


def fit(image_wh: tuple[int, int], columns: int, rows: int) -> tuple[int, int]:
    """Picture size in pixels (width, height) fitting `columns` x `rows` cells, two pixels a cell, aspect kept."""
    w, h = image_wh
    scale = min(columns / w, 2 * rows / h)
    pw = max(1, min(columns, int(w * scale)))
    ph = max(2, min(2 * rows, int(h * scale)))
    return pw, ph - ph % 2


def render(screen: Screen, columns: int, lines: int, mode: str) -> list[str]:
    """The screen as text lines, at most `lines` of them and `columns` cells wide."""
    texts = text_lines(screen)
    wrapped = [textwrap.wrap(ln, columns, subsequent_indent="  ") or [""] for ln in texts]
    if lines - sum(map(len, wrapped)) < MIN_PICTURE_ROWS and len(wrapped) > 2:
        wrapped = [wrapped[0], wrapped[-1]]  # many faces in a short terminal: the picture and the advice first
    below = [part for group in wrapped for part in group][-max(1, lines - 1):]
    rows = max(1, lines - len(below))
    img = screen.image
    ih, iw = img.shape[:2]
    pw, ph = fit((iw, ih), columns, rows)
    small = cv2.resize(img, (pw, ph), interpolation=cv2.INTER_AREA if pw < iw else cv2.INTER_LINEAR)
    sx, sy = pw / iw, ph / ih
    boxes = [(int(x * sx), int(y * sy), max(2, int(round(w * sx))), max(2, int(round(h * sy)))) for (x, y, w, h) in
             (f.box for f in screen.faces)]
    if mode == "plain":
        pic = _plain(small, boxes)
    else:
        pic = _blocks(small, boxes, mode)
    return pic + below


def _box_mask(shape: tuple[int, int], boxes: Sequence[Box]) -> np.ndarray:
    mask = np.zeros(shape, bool)
    h, w = shape
    for x, y, bw, bh in boxes:
        x0, y0 = max(0, min(w - 1, x)), max(0, min(h - 1, y))
        x1, y1 = max(0, min(w - 1, x + bw - 1)), max(0, min(h - 1, y + bh - 1))
        mask[y0, x0:x1 + 1] = mask[y1, x0:x1 + 1] = True
        mask[y0:y1 + 1, x0] = mask[y0:y1 + 1, x1] = True
    return mask


def _plain(small: np.ndarray, boxes: Sequence[Box]) -> list[str]:
    """Characters only: each cell the mean of its two pixels on a ramp (stretched to the picture's own
    range); boxes drawn with + - |."""
    cells = (small[0::2].astype(np.float32) + small[1::2]) / 2
    lo, hi = np.percentile(cells, (2, 98))  # ten characters only: spread them over the grey levels present
    idx = np.clip((cells - lo) * len(RAMP) / max(hi - lo, 1.0), 0, len(RAMP) - 1).astype(int)
    grid = [[RAMP[v] for v in row] for row in idx]
    h, w = cells.shape
    for x, y, bw, bh in boxes:
        x0, x1 = max(0, min(w - 1, x)), max(0, min(w - 1, x + bw - 1))
        y0, y1 = max(0, min(h - 1, y // 2)), max(0, min(h - 1, (y + bh - 1) // 2))
        for c in range(x0, x1 + 1):
            grid[y0][c] = grid[y1][c] = "-"
        for r in range(y0, y1 + 1):
            grid[r][x0] = grid[r][x1] = "|"
        for r, c in ((y0, x0), (y0, x1), (y1, x0), (y1, x1)):
            grid[r][c] = "+"
    return ["".join(row).rstrip() for row in grid]


def _color(v: int, mode: str, fg: bool) -> str:
    if mode == "truecolor":
        return f"{38 if fg else 48};2;{v};{v};{v}"
    if mode == "256":
        code = 16 if v < 4 else 231 if v > 246 else 232 + min(23, (v - 4) * 24 // 243)
        return f"{38 if fg else 48};5;{code}"
    # four ANSI greys: black, bright black, white, bright white
    level = min(3, v // 64)
    return str((30, 90, 37, 97)[level] + (0 if fg else 10))


def _box_color(mode: str, fg: bool) -> str:
    if mode == "truecolor":
        r, g, b = BOX_RGB
        return f"{38 if fg else 48};2;{r};{g};{b}"
    if mode == "256":
        return f"{38 if fg else 48};5;46"
    return "92" if fg else "102"


def _blocks(small: np.ndarray, boxes: Sequence[Box], mode: str) -> list[str]:
    """Half blocks: '▀' in the upper pixel's colour on the lower pixel's; an escape only where a colour changes."""
    mask = _box_mask(small.shape, boxes)
    top, bot = small[0::2], small[1::2]
    mtop, mbot = mask[0::2], mask[1::2]
    out = []
    for r in range(top.shape[0]):
        parts: list[str] = []
        last = ("", "")
        for c in range(top.shape[1]):
            fg = _box_color(mode, True) if mtop[r, c] else _color(int(top[r, c]), mode, True)
            bg = _box_color(mode, False) if mbot[r, c] else _color(int(bot[r, c]), mode, False)
            if (fg, bg) != last:
                parts.append(f"\x1b[{fg};{bg}m")
                last = (fg, bg)
            parts.append(UPPER)
        parts.append(RESET)
        out.append("".join(parts))
    return out


def draw(screen: Screen, stream: TextIO = sys.stdout, *, plain: bool = False,
         size: tuple[int, int] | None = None) -> list[str]:
    """Render for `stream` (its size and colours) and return the lines (the caller writes them)."""
    columns, lines = size or terminal_size(stream)
    return render(screen, columns, lines, color_mode(stream, plain))
