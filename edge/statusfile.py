"""The service's status.json: written atomically every few seconds, read by `emotion-edge status`.

A small file instead of an IPC socket: readable over ssh by anyone, survives the service, and
its `updated` time shows a stalled service even when systemd still calls it active.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from edge.config import Config, db_path, state_dir

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
    fd, tmp = tempfile.mkstemp(prefix=".status-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1, sort_keys=True)
            f.write("\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def read_status(path: Path) -> dict[str, Any] | None:
    """The parsed file, or None when it does not exist; a corrupt file reads as an error entry."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as e:
        return {"last_error": f"cannot read {path}: {e}"}
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        return {"last_error": f"{path} is not valid JSON ({e})"}
    return data if isinstance(data, dict) else {"last_error": f"{path} does not hold a JSON object"}
