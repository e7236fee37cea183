"""What the long-running commands say while they work: timed steps, and `next:` lines that warn before
they would replace a file."""
from __future__ import annotations

import time
from pathlib import Path

from edge.text import printable


class Clock:
    """'[  12.3s] converting ...': every step says what it does and how long the command has run."""

    def __init__(self, log) -> None:
        self.log, self.t0 = log, time.monotonic()

    def __call__(self, msg: str) -> None:
        self.log(f"[{time.monotonic() - self.t0:6.1f}s] {printable(msg)}")  # paths may hold escape sequences


def replaces(path: str | Path) -> str:
    """'' or, for a `next:` command whose output already exists, the note that running it replaces that file."""
    p = Path(path)
    if not p.exists():
        return ""
    return f"; {p} exists and this replaces it: choose another --out to keep it"
