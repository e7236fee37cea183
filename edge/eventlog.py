"""The local event log: SQLite (WAL) rows on mood changes plus a periodic summary, never per frame.

Writes are buffered and committed in batches; I/O trouble (disk full, read-only, locked) is
reported once and retried, so the mood light keeps running. Our own log (application id in the
header) when damaged is moved aside, never overwritten; any other file (text, another program's
SQLite database, a FIFO) is refused untouched. Readers open the file read-only and work while the
service writes.
"""
from __future__ import annotations

import json
import logging
import math
import os
import sqlite3
import stat
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence
from urllib.parse import quote

import numpy as np

from edge.affect import Affect, affect_of, affect_of_dict
from edge.config import LogConfig
from edge.errors import ConfigError, LogError
from edge.types import Box, Mood, Prediction

log = logging.getLogger(__name__)

SCHEMA_VERSION = 3  # 2: faces_detail column (every classified face, not only the largest); 3: valence, arousal
APPLICATION_ID = 0x456D6F45  # "EmoE" in the SQLite header: tells our files from foreign ones
BUFFER_CAP = 10_000  # rows kept in memory while the disk refuses writes (oldest dropped beyond)
RETENTION_EVERY = 3600.0  # seconds between retention passes (plus one at open)
MIN_KEEP_ROWS = 100  # size trimming never goes below this many (newest) rows
BUSY_TIMEOUT_S = 0.25  # the writer must not stall the frame loop for long
_CORRUPT_CODES = {11, 26}  # SQLITE_CORRUPT, SQLITE_NOTADB
_REOPEN_CODES = {8, 14}  # SQLITE_READONLY, SQLITE_CANTOPEN: a fresh connection may write again

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    time REAL NOT NULL,               -- UTC, seconds since the epoch
    kind TEXT NOT NULL,               -- 'change' | 'summary'
    mood TEXT NOT NULL,               -- the mood in effect at `time` (or 'none')
    confidence REAL NOT NULL,
    probs TEXT,                       -- JSON {label: p}; summary: mean over the interval
    faces REAL NOT NULL,              -- face count; summary: mean per frame
    box_x INTEGER, box_y INTEGER, box_w INTEGER, box_h INTEGER,  -- largest face box
    faces_detail TEXT,                -- JSON [{box, emotion, confidence}] for up to max_faces faces
    valence REAL, arousal REAL        -- circumplex placement of probs (edge/affect.py); NULL without probs
);
CREATE INDEX IF NOT EXISTS events_time ON events(time);
"""
INSERT = ("INSERT INTO events (time, kind, mood, confidence, probs, faces, box_x, box_y, box_w, box_h, faces_detail,"
          " valence, arousal) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
COLUMNS = "time, kind, mood, confidence, probs, faces, box_x, box_y, box_w, box_h, faces_detail, valence, arousal"
FaceList = Sequence[tuple[Box, Prediction]]


def _faces_json(faces: FaceList | None) -> str | None:
    """Each classified face of the frame: its box, top emotion and confidence."""
    if not faces:
        return None
    return json.dumps([{"box": [int(v) for v in box], "emotion": p.top, "confidence": round(p.confidence, 4)}
                       for box, p in faces])


def iso_utc(t: float) -> str:
    """Epoch seconds -> 'YYYY-MM-DDTHH:MM:SS.mmmZ'."""
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _upgrade_v3(conn: sqlite3.Connection) -> None:
    """Schema 2 -> 3 in place, in one transaction: two columns, no rewrite of the rows (instant even
    on a 50 MB log at service start); readers derive the values of older rows from their probs."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("ALTER TABLE events ADD COLUMN valence REAL")
        conn.execute("ALTER TABLE events ADD COLUMN arousal REAL")
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    log.info("event log: upgraded to schema %d (valence and arousal columns)", SCHEMA_VERSION)


def _is_corrupt(e: BaseException) -> bool:
    return isinstance(e, sqlite3.DatabaseError) and (getattr(e, "sqlite_errorcode", None) in _CORRUPT_CODES
                                                   or "not a database" in str(e) or "malformed" in str(e))


class _Foreign(Exception):
    """The file is our log (its header says so) but is damaged: it is moved aside, never overwritten."""


class NotOurLog(LogError, ConfigError):
    """log.db / --db names a file that is not an emotion-edge log: refused untouched (exit 2, like a bad config)."""


SQLITE_MAGIC = b"SQLite format 3\x00"
V1_COLUMNS = {"id", "time", "kind", "mood", "confidence", "probs", "faces", "box_x", "box_y", "box_w", "box_h"}


def identify(path: Path) -> str | None:
    """None when `path` is missing, empty or carries our application id; else why it is someone else's.

    Only the header is read: a text file, another program's SQLite file, a FIFO or a device is
    never opened by SQLite (which would write a journal beside it) let alone moved.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    if st.st_size == 0:
        return None
    with open(path, "rb") as f:
        head = f.read(100)
    if not head.startswith(SQLITE_MAGIC):
        return "not an SQLite database"
    if len(head) < 72 or int.from_bytes(head[68:72], "big") != APPLICATION_ID:
        app_id = int.from_bytes(head[68:72], "big") if len(head) >= 72 else 0
        return f"an SQLite database of another program (application_id {app_id:#x})"
    return None


def _probs_json(labels: tuple[str, ...], probs: np.ndarray | None) -> str | None:
    if probs is None:
        return None
    return json.dumps({lab: round(float(p), 4) for lab, p in zip(labels, probs)})


class EventLog:
    """Buffered writer; `record()` is called every frame and never raises."""

    def __init__(self, path: str | Path, cfg: LogConfig, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.cfg = cfg
        self._clock = clock  # UTC wall time for rows; injectable so tests can age data
        self._conn: sqlite3.Connection | None = None
        self._buf: deque[tuple] = deque(maxlen=BUFFER_CAP)
        self.dropped = 0  # rows lost because the buffer overflowed while writes failed
        self.written = 0  # rows committed by this instance
        self._failing = False
        self._closed = False
        # running state for change detection and the summary interval
        self._label: str | None = None
        self._labels: tuple[str, ...] = ()
        self._psum = np.zeros(0, dtype=np.float64)
        self._nprobs = 0
        self._faces = 0
        self._frames = 0
        self._box: Box | None = None
        self._last_mood: Mood | None = None
        self._detail: FaceList | None = None
        self._summary_t0: float | None = None
        self._commit_t0: float | None = None
        self._retention_t0: float | None = None
        self._checked: tuple[int, int] | None = None  # (dev, inode) of the file that passed quick_check
        self._refused: str | None = None
        self._try_open(first=True)
        if self._refused:
            raise NotOurLog(f"{self.path}: {self._refused}; not an emotion-edge event log, left untouched "
                            "(set log.db or --db to a new file)")

    # -- context manager ------------------------------------------------------------------
    def __enter__(self) -> "EventLog":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def failing(self) -> bool:
        return self._failing

    @property
    def pending(self) -> int:
        return len(self._buf)

    # -- hot path -------------------------------------------------------------------------
    def record(self, mood: Mood, n_faces: int, box: Box | None, now: float, faces: FaceList | None = None) -> None:
        """Account one loop iteration; `now` is monotonic seconds (rows carry UTC wall time).

        `faces`: the latest (box, prediction) of each classified face; kept by reference and only
        serialised when a row is written, so passing it every frame costs nothing.
        """
        if self._closed:
            return
        try:
            self._account(mood, n_faces, box)
            if faces is not None:
                self._detail = faces
            if mood.label != self._label:
                self._label = mood.label
                self._append("change", mood.label, mood.confidence, _probs_json(mood.labels, mood.probs), n_faces, box,
                             _faces_json(self._detail) if n_faces else None, affect_of(mood.labels, mood.probs))
            if self._summary_t0 is None:
                self._summary_t0 = self._commit_t0 = now
                if self._retention_t0 is None:
                    self._retention_t0 = now
            elif now - self._summary_t0 >= self.cfg.summary_interval:
                self._summary_t0 = now
                self._append_summary()
            if now - self._commit_t0 >= self.cfg.commit_interval:  # type: ignore[operator]
                self._commit_t0 = now
                self.flush()
                if now - self._retention_t0 >= RETENTION_EVERY:  # type: ignore[operator]
                    self._retention_t0 = now
                    self._retention()
        except Exception as e:  # never take the mood light down over a log row
            self._report(e)

    def _account(self, mood: Mood, n_faces: int, box: Box | None) -> None:
        self._last_mood = mood
        self._frames += 1
        self._faces += n_faces
        if box is not None and (self._box is None or box[2] * box[3] > self._box[2] * self._box[3]):
            self._box = box
        if mood.probs is not None:
            if mood.labels != self._labels:
                self._labels = mood.labels
                self._psum = np.zeros(len(mood.labels), dtype=np.float64)
                self._nprobs = 0
            np.add(self._psum, mood.probs, out=self._psum)
            self._nprobs += 1

    def _append(self, kind: str, mood: str, conf: float, probs: str | None, faces: float, box: Box | None,
                detail: str | None = None, va: Affect | None = None) -> None:
        if len(self._buf) == self._buf.maxlen:
            self.dropped += 1
        bx = box if box is not None else (None, None, None, None)
        v, a = (va.valence, va.arousal) if va is not None else (None, None)
        self._buf.append((self._clock(), kind, mood, float(conf), probs, faces, *bx, detail, v, a))

    def _append_summary(self) -> None:
        m = self._last_mood
        if m is None or self._frames == 0:
            return
        mean = self._psum / self._nprobs if self._nprobs else None
        self._append("summary", m.label, m.confidence, _probs_json(self._labels, mean),
                     round(self._faces / self._frames, 3), self._box, _faces_json(self._detail) if self._faces else None,
                     affect_of(self._labels, mean))
        self._psum[:] = 0
        self._nprobs = self._faces = self._frames = 0
        self._box = None

    # -- writing --------------------------------------------------------------------------
    def flush(self) -> bool:
        """Commit the buffered rows in one transaction; False (rows kept) if the disk refuses."""
        if not self._buf:
            return True
        if self._conn is None and not self._try_open():
            return False
        conn = self._conn
        assert conn is not None
        rows = list(self._buf)
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(INSERT, rows)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except (sqlite3.Error, OSError) as e:
            self._report(e)
            code = (getattr(e, "sqlite_errorcode", 0) or 0) & 0xFF
            if _is_corrupt(e) or code in _REOPEN_CODES:
                self._drop_conn()  # reopen next time: moves a damaged file aside, regains write access
            return False
        for _ in range(len(rows)):
            self._buf.popleft()
        self.written += len(rows)
        if self._failing:
            self._failing = False
            log.warning("event log %s: writing again (%d rows dropped while it failed)", self.path, self.dropped)
        return True

    def _report(self, e: BaseException) -> None:
        """One error line per failure episode, with the path; the next success says so."""
        if not self._failing:
            self._failing = True
            log.error("event log %s: cannot write (%s: %s); keeping up to %d rows in memory and retrying",
                      self.path, type(e).__name__, e, BUFFER_CAP)

    # -- opening --------------------------------------------------------------------------
    def _try_open(self, first: bool = False) -> bool:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._refused = identify(self.path)
            if self._refused:
                raise OSError(f"{self._refused}; left untouched")
            try:
                self._conn = self._connect()
            except _Foreign as e:
                self._move_aside(str(e))
                self._conn = self._connect()
            except sqlite3.DatabaseError as e:
                if not _is_corrupt(e):
                    raise
                self._move_aside(str(e))
                self._conn = self._connect()
            self._retention()
            return True
        except (sqlite3.Error, OSError, _Foreign) as e:
            self._drop_conn()
            if not (first and self._refused):  # at start a refusal is raised (one line), not logged too
                self._report(e)
            return False

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
        try:
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]  # reads the header: NOTADB here
            n_tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
            if n_tables and app_id != APPLICATION_ID:  # changed since identify(): still not ours to move
                self._refused = f"an SQLite database of another program (application_id {app_id:#x})"
                raise OSError(f"{self._refused}; left untouched")
            if n_tables and not self._our_tables(conn):
                self._refused = "carries our application id but not our tables"
                raise OSError(f"{self._refused}; left untouched")
            st = os.stat(self.path)
            if n_tables and (st.st_dev, st.st_ino) != self._checked:  # check each file once per run
                check = conn.execute("PRAGMA quick_check").fetchone()[0]
                if check != "ok":
                    raise _Foreign(f"failed its integrity check ({check})")
            else:
                conn.execute("PRAGMA auto_vacuum=INCREMENTAL")  # only takes effect on a new file
                conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
            conn.execute("PRAGMA journal_mode=WAL").fetchone()
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA journal_size_limit=4194304")
            conn.executescript(SCHEMA)
            cols = {r[1] for r in conn.execute("PRAGMA table_info(events)")}
            if "faces_detail" not in cols:  # a version-1 log: add the column, keep the rows
                conn.execute("ALTER TABLE events ADD COLUMN faces_detail TEXT")
                conn.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            if "valence" not in cols:  # a version-2 log: add the columns (older rows: derived from probs on read)
                _upgrade_v3(conn)
            conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            conn.execute("INSERT OR REPLACE INTO meta VALUES ('summary_interval', ?)", (str(self.cfg.summary_interval),))
            self._checked = (st.st_dev, st.st_ino)
            return conn
        except BaseException:
            conn.close()
            raise

    @staticmethod
    def _our_tables(conn: sqlite3.Connection) -> bool:
        """meta and events with at least the version-1 columns: only then may a column be added."""
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not {"meta", "events"} <= names:
            return False
        return V1_COLUMNS <= {r[1] for r in conn.execute("PRAGMA table_info(events)")}

    def _move_aside(self, reason: str) -> Path:
        """Rename our damaged log to NAME.corrupt-YYYYmmddTHHMMSS (UTC), never overwriting."""
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        dest = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        n = 1
        while dest.exists():
            n += 1
            dest = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{n}")
        os.rename(self.path, dest)
        for sfx in ("-wal", "-shm"):
            side = Path(str(self.path) + sfx)
            if side.exists():
                os.rename(side, str(dest) + sfx)
        log.warning("event log %s: %s; moved it aside to %s and started a fresh log", self.path, reason, dest.name)
        return dest

    def _drop_conn(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except sqlite3.Error:
                pass
            self._conn = None

    # -- retention ------------------------------------------------------------------------
    def _retention(self) -> None:
        """Delete rows older than keep_days, then the oldest while the data is over max_mb."""
        conn = self._conn
        if conn is None:
            return
        try:
            conn.execute("DELETE FROM events WHERE time < ?", (self._clock() - self.cfg.keep_days * 86400,))
            limit = self.cfg.max_mb * 1e6
            while self._used_bytes(conn) > limit:
                n = conn.execute("SELECT count(*) FROM events").fetchone()[0]
                k = min(n - MIN_KEEP_ROWS, max(1, n // 10))
                if k <= 0:
                    break
                conn.execute("DELETE FROM events WHERE id IN (SELECT id FROM events ORDER BY time, id LIMIT ?)", (k,))
            conn.executescript("PRAGMA incremental_vacuum;")  # execute() would free only one page
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except (sqlite3.Error, OSError) as e:
            self._report(e)

    @staticmethod
    def _used_bytes(conn: sqlite3.Connection) -> int:
        pages = conn.execute("PRAGMA page_count").fetchone()[0] - conn.execute("PRAGMA freelist_count").fetchone()[0]
        return pages * conn.execute("PRAGMA page_size").fetchone()[0]

    # -- shutdown -------------------------------------------------------------------------
    def close(self) -> None:
        """Write the partial summary and the buffer; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._frames:
                self._append_summary()
            if not self.flush() and self._buf:
                log.error("event log %s: %d rows could not be written at exit", self.path, len(self._buf))
        finally:
            self._drop_conn()


# ---------------------------------------------------------------------------------------------
# Readers (read-only; safe while the service writes)

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


def open_readonly(path: str | Path) -> sqlite3.Connection:
    """A read-only connection, or LogError naming the file when it is missing or not our log."""
    p = Path(path)
    if not p.is_file():
        raise LogError(f"no event log at {p} (has the service run yet? pass --db PATH)")
    uri = f"file:{quote(str(p.resolve()))}?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=5.0)
        try:
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        except sqlite3.OperationalError as e:
            # The service has stopped: its -wal/-shm are gone and a non-owner may not create the
            # -shm beside the log. With no writer, reading the file as immutable is safe.
            if "readonly" not in str(e) and "unable to open" not in str(e):
                raise
            conn.close()
            conn = sqlite3.connect(uri + "&immutable=1", uri=True, timeout=5.0)
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        if app_id != APPLICATION_ID:
            conn.close()
            raise LogError(f"{p} is not an emotion-edge log")
        return conn
    except sqlite3.Error as e:
        raise LogError(f"cannot read event log {p}: {e}") from None


MAX_TIME = 253402300799.0  # 9999-12-31T23:59:59Z: the latest time iso_utc() can print


def _num(v: Any, lo: float = -math.inf, hi: float = math.inf) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and lo <= v <= hi


def _row(r: tuple) -> LogRow:
    """A row as written by EventLog; ValueError for values another writer put there (wrong types, NaN...)."""
    box = (r[6], r[7], r[8], r[9]) if r[6] is not None else None
    probs = json.loads(r[4]) if r[4] else None
    detail = json.loads(r[10]) if len(r) > 10 and r[10] else None
    v, a = (r[11], r[12]) if len(r) > 12 else (None, None)
    if not (_num(r[0], 0.0, MAX_TIME) and isinstance(r[1], str) and isinstance(r[2], str) and _num(r[3]) and _num(r[5])
            and (box is None or all(isinstance(x, int) for x in box))
            and (probs is None or (isinstance(probs, dict) and all(_num(x) for x in probs.values())))
            and (detail is None or isinstance(detail, list))
            and (v is None or _num(v, -1.0, 1.0)) and (a is None or _num(a, -1.0, 1.0))):
        raise ValueError("values of the wrong type")
    if v is None and probs:  # a row written before schema 3
        va = affect_of_dict(probs)
        v, a = (va.valence, va.arousal) if va is not None else (None, None)
    return LogRow(r[0], r[1], r[2], r[3], probs, r[5], box, detail, v, a)


def select_columns(conn: sqlite3.Connection) -> str:
    """COLUMNS, with NULL for columns an older log (read-only: not upgraded yet) does not have."""
    have = {r[1] for r in conn.execute("PRAGMA table_info(events)")}
    return ", ".join(c if c in have else "NULL" for c in COLUMNS.split(", "))


def read_rows(path: str | Path, since: float | None = None, limit: int | None = None) -> list[LogRow]:
    """Rows in time order: all since `since` (epoch seconds), or only the latest `limit`."""
    conn = open_readonly(path)
    try:
        q = f"SELECT {select_columns(conn)} FROM events WHERE time >= ? ORDER BY time DESC, id DESC"
        args: list[Any] = [since if since is not None else float("-inf")]
        if limit is not None:
            q += " LIMIT ?"
            args.append(int(limit))
        rows = [_row(r) for r in conn.execute(q, args)]
    except sqlite3.Error as e:
        raise LogError(f"cannot read event log {path}: {e}") from None
    except (ValueError, TypeError, RecursionError):  # JSON errors are ValueErrors too
        raise LogError(f"event log {path} holds a row emotion-edge did not write (bad JSON or values of the wrong type)") from None
    finally:
        conn.close()
    rows.reverse()
    return rows


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


def summarize(path: str | Path, since: float | None = None, now: float | None = None) -> Summary:
    """Each row's mood holds until the next row (or now); a gap over 2 summary intervals means the
    service was stopped and counts for nothing (a running service writes a summary every interval)."""
    conn = open_readonly(path)
    try:
        got = conn.execute("SELECT value FROM meta WHERE key='summary_interval'").fetchone()
        cap = 2 * float(got[0]) if got else 120.0
        rows = conn.execute("SELECT time, kind, mood FROM events WHERE time >= ? ORDER BY time, id",
                            (since if since is not None else float("-inf"),)).fetchall()
        if not (math.isfinite(cap) and all(_num(t, 0.0, MAX_TIME) and isinstance(m, str) for t, _, m in rows)):
            raise ValueError("values of the wrong type")
    except sqlite3.Error as e:
        raise LogError(f"cannot read event log {path}: {e}") from None
    except (ValueError, TypeError):
        raise LogError(f"event log {path} holds values emotion-edge did not write (wrong types)") from None
    finally:
        conn.close()
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
