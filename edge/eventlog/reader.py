"""Reading the event log: its rows and a per-mood summary, for `emotion-edge log`, the chart and the
MQTT follower. Read-only, and safe while the service writes (recorder.py is the writer).
"""
from __future__ import annotations

import json
import math
import sqlite3
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

from edge.affect import affect_of_dict
from edge.errors import LogError
from edge.eventlog.schema import APPLICATION_ID, select_list, table_columns

MAX_TIME = 253402300799.0  # 9999-12-31T23:59:59Z: the latest time iso_utc() can print


def iso_utc(t: float) -> str:
    """Epoch seconds -> 'YYYY-MM-DDTHH:MM:SS.mmmZ'."""
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass(frozen=True)
class LogRow:
    time: float  # epoch seconds, UTC
    kind: str
    mood: str
    confidence: float
    probs: dict[str, float] | None
    faces: float
    box: tuple[int, int, int, int] | None
    faces_detail: list[dict[str, Any]] | None = None
    valence: float | None = None  # schema 3; None on rows without probabilities
    arousal: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"time": iso_utc(self.time), "kind": self.kind, "mood": self.mood,
                "confidence": round(self.confidence, 4), "faces": self.faces,
                "box": list(self.box) if self.box else None, "probs": self.probs,
                "faces_detail": self.faces_detail, "valence": self.valence, "arousal": self.arousal}


# -- opening --------------------------------------------------------------------------------------
@dataclass
class ReadOnlyLog:
    """An open read-only log; `immutable`: opened without the service's -wal/-shm (see open_readonly)."""

    conn: sqlite3.Connection
    immutable: bool


def _falls_back_to_immutable(path: Path, e: sqlite3.OperationalError) -> bool:
    """The -shm beside the log could not be opened or created (another user, a read-only mount), or
    there is no -wal at all: the service has stopped, nothing writes the file, immutable is safe."""
    return "readonly" in str(e) or "unable to open" in str(e) or not Path(f"{path}-wal").exists()


def _connect(uri: str) -> tuple[sqlite3.Connection, int]:
    """A connection and the application id from the file's header (reading it is the first real I/O)."""
    conn = sqlite3.connect(uri, uri=True, timeout=5.0)
    try:
        return conn, conn.execute("PRAGMA application_id").fetchone()[0]
    except BaseException:
        conn.close()
        raise


def open_readonly(path: str | Path) -> ReadOnlyLog:
    """A read-only connection whose rows read by name, or LogError naming the file when it is
    missing or not our log. While the service runs its -wal/-shm let a read-only reader in; once
    it has stopped they are gone, and a reader that may not create them opens the file immutable."""
    p = Path(path)
    if not p.is_file():
        raise LogError(f"no event log at {p} (has the service run yet? pass --db PATH)")
    uri = f"file:{quote(str(p.resolve()))}?mode=ro"
    try:
        try:
            conn, app_id = _connect(uri)
            immutable = False
        except sqlite3.OperationalError as e:
            if not _falls_back_to_immutable(p, e):
                raise
            conn, app_id = _connect(uri + "&immutable=1")
            immutable = True
    except sqlite3.Error as e:
        raise LogError(f"cannot read event log {p}: {e}") from None
    if app_id != APPLICATION_ID:
        conn.close()
        raise LogError(f"{p} is not an emotion-edge log")
    conn.row_factory = sqlite3.Row
    return ReadOnlyLog(conn, immutable)


# -- rows -----------------------------------------------------------------------------------------
def _num(v: Any, lo: float = -math.inf, hi: float = math.inf) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and lo <= v <= hi


def parse_row(r: sqlite3.Row) -> LogRow:
    """A row as written by EventLog; ValueError for values another writer put there (wrong types, NaN...)."""
    box = (r["box_x"], r["box_y"], r["box_w"], r["box_h"]) if r["box_x"] is not None else None
    probs = json.loads(r["probs"]) if r["probs"] else None
    detail = json.loads(r["faces_detail"]) if r["faces_detail"] else None
    v, a = r["valence"], r["arousal"]
    if not (_num(r["time"], 0.0, MAX_TIME) and isinstance(r["kind"], str) and isinstance(r["mood"], str)
            and _num(r["confidence"]) and _num(r["faces"])
            and (box is None or all(isinstance(x, int) for x in box))
            and (probs is None or (isinstance(probs, dict) and all(_num(x) for x in probs.values())))
            and (detail is None or isinstance(detail, list))
            and (v is None or _num(v, -1.0, 1.0)) and (a is None or _num(a, -1.0, 1.0))):
        raise ValueError("values of the wrong type")
    if v is None and probs:  # a row written before schema 3
        va = affect_of_dict(probs)
        v, a = (va.valence, va.arousal) if va is not None else (None, None)
    return LogRow(r["time"], r["kind"], r["mood"], r["confidence"], probs, r["faces"], box, detail, v, a)


def read_rows(path: str | Path, since: float | None = None, limit: int | None = None) -> list[LogRow]:
    """Rows in time order: all since `since` (epoch seconds), or only the latest `limit`."""
    conn = open_readonly(path).conn
    try:
        q = f"SELECT {select_list(table_columns(conn))} FROM events WHERE time >= ? ORDER BY time DESC, id DESC"
        args: list[Any] = [since if since is not None else float("-inf")]
        if limit is not None:
            q += " LIMIT ?"
            args.append(int(limit))
        rows = [parse_row(r) for r in conn.execute(q, args)]
    except sqlite3.Error as e:
        raise LogError(f"cannot read event log {path}: {e}") from None
    except (ValueError, TypeError, RecursionError):  # JSON errors are ValueErrors too
        raise LogError(f"event log {path} holds a row emotion-edge did not write (bad JSON or values of the wrong type)") from None
    finally:
        conn.close()
    rows.reverse()
    return rows


# -- summary --------------------------------------------------------------------------------------
@dataclass
class MoodTotal:
    changes: int = 0
    seconds: float = 0.0
    share: float = 0.0


@dataclass
class Summary:
    """Per-mood counts and time share, and per-hour (UTC) seconds per mood."""

    since: float | None
    rows: int
    seconds: float
    moods: dict[str, MoodTotal] = field(default_factory=dict)
    hours: dict[str, dict[str, float]] = field(default_factory=dict)  # 'YYYY-MM-DDTHH' -> mood -> s
    hour_changes: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"since": iso_utc(self.since) if self.since is not None else None, "rows": self.rows,
                "seconds": round(self.seconds, 1),
                "moods": {k: {"changes": v.changes, "seconds": round(v.seconds, 1), "share": round(v.share, 4)}
                          for k, v in self.moods.items()},
                "hours": {h: {k: round(s, 1) for k, s in m.items()} for h, m in self.hours.items()},
                "hour_changes": self.hour_changes}


def read_timeline(path: str | Path, since: float | None = None,
                  lookback_gaps: float = 0.0) -> tuple[list[tuple[float, str, str]], float]:
    """(time, kind, mood) rows in time order from `since` (minus `lookback_gaps` gap limits, to know
    the mood in effect at `since`), and the gap limit: twice the writer's summary interval, as a
    running service writes a summary every interval, so a longer gap means it was stopped. Values
    another program put there are refused in one LogError, never passed on."""
    conn = open_readonly(path).conn
    try:
        got = conn.execute("SELECT value FROM meta WHERE key='summary_interval'").fetchone()
        cap = 2 * float(got["value"]) if got else 120.0
        if not (math.isfinite(cap) and cap > 0):
            raise ValueError("summary_interval out of range")
        start = float("-inf") if since is None else since - lookback_gaps * cap
        found = conn.execute("SELECT time, kind, mood FROM events WHERE time >= ? ORDER BY time, id", (start,)).fetchall()
        rows = [(r["time"], r["kind"], r["mood"]) for r in found]
        if not all(_num(t, 0.0, MAX_TIME) and isinstance(k, str) and isinstance(m, str) for t, k, m in rows):
            raise ValueError("values of the wrong type")
    except sqlite3.Error as e:
        raise LogError(f"cannot read event log {path}: {e}") from None
    except (ValueError, TypeError):
        raise LogError(f"event log {path} holds values emotion-edge did not write (wrong types)") from None
    finally:
        conn.close()
    return [(float(t), k, m) for t, k, m in rows], cap


def summarize(path: str | Path, since: float | None = None, now: float | None = None) -> Summary:
    """Each row's mood holds until the next row (or now); a gap over 2 summary intervals means the
    service was stopped and counts for nothing (a running service writes a summary every interval)."""
    rows, cap = read_timeline(path, since)
    now = time.time() if now is None else now
    s = Summary(since=since, rows=len(rows), seconds=0.0)
    for i, (t, kind, mood) in enumerate(rows):
        end = rows[i + 1][0] if i + 1 < len(rows) else max(t, now)
        dur = end - t if end - t <= cap else 0.0  # a longer gap: the service was not running
        hour = iso_utc(t)[:13]
        tot = s.moods.setdefault(mood, MoodTotal())
        if kind == "change":
            tot.changes += 1
            s.hour_changes[hour] = s.hour_changes.get(hour, 0) + 1
        tot.seconds += dur
        s.seconds += dur
        h = s.hours.setdefault(hour, {})
        h[mood] = h.get(mood, 0.0) + dur
    for tot in s.moods.values():
        tot.share = tot.seconds / s.seconds if s.seconds else 0.0
    return s
