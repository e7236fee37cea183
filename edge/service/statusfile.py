"""The service's status.json: written atomically every few seconds, read by `emotion-edge status`.

A small file instead of an IPC socket: readable over ssh by anyone, survives the service, and
its `updated` time shows a stalled service even when systemd still calls it active.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Callable

from edge.config import Config, db_path, state_dir
from edge.safeio import STATUS_MAX_BYTES, read_text, write_atomic

STATUS_NAME = "status.json"
SYSTEM_STATE_DIR = Path("/var/lib/emotion-edge")


def status_path(cfg: Config | None = None, explicit: str | Path | None = None) -> Path:
    """Where the service writes: an explicit path, $STATE_DIRECTORY, else beside the event log."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("STATE_DIRECTORY")
    if env:
        return Path(env.split(":")[0]) / STATUS_NAME
    if cfg is not None:
        return db_path(cfg).parent / STATUS_NAME
    return state_dir() / STATUS_NAME


def candidate_paths(cfg: Config | None = None) -> list[Path]:
    """Where a reader looks, most specific first (a user over ssh has no $STATE_DIRECTORY)."""
    out: list[Path] = []
    if cfg is not None and cfg.log.db:
        out.append(Path(cfg.log.db).parent / STATUS_NAME)
    env = os.environ.get("STATE_DIRECTORY")
    if env:
        out.append(Path(env.split(":")[0]) / STATUS_NAME)
    out.append(SYSTEM_STATE_DIR / STATUS_NAME)
    out.append(state_dir() / STATUS_NAME)
    seen: set[Path] = set()
    return [p for p in out if not (p in seen or seen.add(p))]


def write_status(path: Path, data: dict[str, Any]) -> None:
    """Write JSON atomically (temp file + rename) so a reader never sees half a file; mode 0644."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, (json.dumps(data, indent=1, sort_keys=True) + "\n").encode("utf-8"), 0o644, exact=True)


def read_status(path: Path) -> dict[str, Any] | None:
    """The parsed file, or None when it does not exist; a corrupt file reads as an error entry.

    Corrupt includes: not a regular file (FIFO, device), over STATUS_MAX_BYTES, not UTF-8, not
    JSON, nested too deeply, or a known field of the wrong type (the readers format them).
    """
    try:
        text = read_text(path, STATUS_MAX_BYTES)
    except FileNotFoundError:
        return None
    except OSError as e:
        return {"last_error": f"cannot read {path}: {e.strerror or e}"}
    except UnicodeDecodeError:
        return {"last_error": f"{path} is not UTF-8 text"}
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        return {"last_error": f"{path} is not valid JSON ({e})"}
    except (ValueError, RecursionError):
        return {"last_error": f"{path} is not valid JSON (nested too deeply or a number too large)"}
    if not isinstance(data, dict):
        return {"last_error": f"{path} does not hold a JSON object"}
    problem = _type_problem(data)
    return data if problem is None else {"last_error": f"{path}: {problem}"}


def _is_number(v: Any) -> bool:
    try:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    except OverflowError:  # an int too large for a float
        return False


_FIELDS: dict[str, Callable[[Any], bool]] = {
    "state": lambda v: isinstance(v, str), "mood": lambda v: isinstance(v, str),
    "source": lambda v: v is None or isinstance(v, str), "led": lambda v: v is None or isinstance(v, str),
    "stop_reason": lambda v: v is None or isinstance(v, str), "config": lambda v: v is None or isinstance(v, str),
    "updated": lambda v: v is None or _is_number(v), "started": lambda v: v is None or _is_number(v),
    "confidence": _is_number, "face_ratio": _is_number, "fps": _is_number,
    "frames": lambda v: _is_number(v) and isinstance(v, int), "pid": lambda v: v is None or isinstance(v, int),
    "model": lambda v: v is None or (isinstance(v, dict) and all(
        isinstance(v.get(k, ""), str) for k in ("path", "sha256"))),
    "last_error": lambda v: v is None or isinstance(v, str) or (isinstance(v, dict) and isinstance(
        v.get("message", ""), str) and (v.get("time") is None or _is_number(v.get("time")))),
    "stats": lambda v: v is None or isinstance(v, dict),
}


def _type_problem(data: dict[str, Any]) -> str | None:
    """The first known field whose type is not what the service writes (None: all fine)."""
    for key, ok in _FIELDS.items():
        if key in data and not ok(data[key]):
            return f"field {key!r} has an unexpected value ({type(data[key]).__name__}); not a status file written by emotion-edge"
    return None
