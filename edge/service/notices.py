"""Things the owner should know about this run that are not errors: a damaged log moved aside, a
deployed model not used, log rows dropped. Keyed one-line notes, each also logged once where it
happens; the service copies them into status.json, so `emotion-edge status` shows them."""
from __future__ import annotations

import threading
import time
from typing import Any

_lock = threading.Lock()
_notes: dict[str, dict[str, Any]] = {}


def note(key: str, message: str) -> None:
    """Set (or replace) the note `key`: one line, with the time it was made."""
    with _lock:
        _notes[key] = {"time": time.time(), "message": message}


def clear(key: str) -> None:
    with _lock:
        _notes.pop(key, None)


def current() -> dict[str, dict[str, Any]]:
    """A copy of the notes now in effect, for status.json."""
    with _lock:
        return {k: dict(v) for k, v in _notes.items()}


def reset() -> None:
    """Forget every note (a new run in the same process: tests, `run` after a reload)."""
    with _lock:
        _notes.clear()
