"""Follows the service's event log and status file read-only: the latest mood, never the history.

The MQTT bridge polls this twice a second. Each poll is one indexed SELECT of the rows added since
the last one (the log commits every 0.5 s), so a mood change reaches the broker within about a
second. Rows that arrive while the broker is away are only counted (moods seen, changes); when it
is back, the latest state is published, not the rows one by one.
"""
from __future__ import annotations

import logging
import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.errors import LogError
from edge.eventlog.reader import LogRow, iso_utc, open_readonly, parse_row
from edge.eventlog.schema import COLUMN_NAMES, select_list, table_columns
from edge.eventlog.store import close_quietly
from edge.service.statusfile import read_status

log = logging.getLogger("edge.follow")  # the name the bridge's lines have always carried (edge/follow.py before)

COLUMNS = ("id", *COLUMN_NAMES)  # every column: rows are checked by reader.parse_row
QUERY = "SELECT {cols} FROM events WHERE id > ? ORDER BY id"
LATEST = "SELECT {cols} FROM events WHERE kind = ? ORDER BY id DESC LIMIT 1"
STALE_AFTER = 30.0  # seconds without a status update: the camera service is not running


@dataclass
class Backlog:
    """What the log showed while nothing could be published: a summary, not the rows."""

    rows: int = 0
    changes: dict[str, int] = field(default_factory=dict)
    first: float | None = None
    last: float | None = None

    def add(self, t: float, kind: str, mood: str) -> None:
        self.rows += 1
        if kind == "change":
            self.changes[mood] = self.changes.get(mood, 0) + 1
        self.first = t if self.first is None else self.first
        self.last = t

    def as_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "changes": dict(self.changes),
                "from": iso_utc(self.first) if self.first is not None else None,
                "to": iso_utc(self.last) if self.last is not None else None}


class LogFollower:
    """Incremental read-only reader of the log plus the status file; `poll()` returns the state."""

    def __init__(self, db: Path, status: Path | None = None) -> None:
        self.db = Path(db)
        self.status = status
        self._conn: sqlite3.Connection | None = None
        self._ino: tuple[int, int] | None = None
        self._immutable = False
        self._cols = ""  # the SELECT list for this file (NULL AS valence, ... on a log before schema 3)
        self._last_id = 0
        self._row: dict[str, Any] | None = None  # the current mood (latest change row), as a state fragment
        self._interval: dict[str, Any] | None = None  # the latest summary row: means over its interval
        self.last_row_time: float | None = None  # wall time of the newest row read
        self._status: dict[str, Any] = {}
        self._status_mtime: int | None = None
        self.backlog = Backlog()
        self.waiting_said = False
        self.foreign_rows = 0  # rows skipped because another program wrote them

    # -- the log ----------------------------------------------------------------------------
    def _open(self) -> bool:
        try:
            st = os.stat(self.db)
        except OSError:
            if not self.waiting_said:
                log.warning("no event log at %s yet; waiting for the service to write one", self.db)
                self.waiting_said = True
            return False
        ino = (st.st_dev, st.st_ino)
        if self._conn is not None and ino == self._ino and not self._immutable:
            return True
        self.close()
        try:
            # While the service runs, its -wal/-shm files let a read-only reader in. With the service
            # stopped, a reader that may not create them (the bridge unit's read-only /var/lib) gets
            # the file as immutable: nothing writes it then, and it is reopened every poll so the
            # service starting again is noticed.
            opened = open_readonly(self.db)
            self._conn, self._immutable = opened.conn, opened.immutable
            self._cols = select_list(table_columns(self._conn), COLUMNS)
        except (LogError, sqlite3.Error) as e:
            self.close()
            if not self.waiting_said:
                log.warning("cannot read %s yet (%s); retrying", self.db, e)
                self.waiting_said = True
            return False
        if ino != self._ino:
            if self._ino is not None:
                log.info("event log %s was replaced; following the new file", self.db)
            self._ino, self._last_id = ino, 0
        self.waiting_said = False
        return True

    def close(self) -> None:
        close_quietly(self._conn)
        self._conn = None

    def _latest(self) -> list[sqlite3.Row]:
        """At start (or on a new file): the latest change row and the latest summary row, not the history."""
        assert self._conn is not None
        rows = [r for kind in ("change", "summary")
                for r in self._conn.execute(LATEST.format(cols=self._cols), (kind,)).fetchall()]
        return sorted(rows, key=lambda r: r["id"])

    def _fetch(self) -> list[sqlite3.Row]:
        assert self._conn is not None
        if self._last_id == 0:
            return self._latest()
        rows = self._conn.execute(QUERY.format(cols=self._cols), (self._last_id,)).fetchall()
        if not rows:
            top = self._conn.execute("SELECT max(id) AS top FROM events").fetchone()["top"]
            if top is not None and top < self._last_id:  # rewritten in place: start over
                self._last_id = 0
                return self._latest()
        return rows

    def poll_log(self, count_backlog: bool) -> bool:
        """Read new rows; True when the latest row changed. `count_backlog`: summarise them too."""
        if not self._open():
            return False
        try:
            rows = self._fetch()
        except sqlite3.Error as e:
            log.warning("reading %s failed (%s); reopening", self.db, e)
            self.close()
            return False
        if not rows:
            return False
        start = self._last_id == 0  # the latest rows of the log as found, not rows that came meanwhile
        self._last_id = rows[-1]["id"]
        good = [row for row in map(self._parse, rows) if row is not None]
        if count_backlog and not start:
            for g in good:
                self.backlog.add(g.time, g.kind, g.mood)
        if not good:
            return False
        for g in good:
            self._apply(g)
        return True

    def _apply(self, g: LogRow) -> None:
        """One meaning per field: a change row is the current mood; a summary row's probabilities,
        valence, arousal and face ratio are means over its interval, kept apart as `interval`."""
        self.last_row_time = g.time
        if g.kind == "summary":
            self._interval = {"valence": g.valence, "arousal": g.arousal, "probs": g.probs,
                              "face_ratio": g.faces, "time": iso_utc(g.time)}
            if self._row is not None:
                return
            # no change row known (retention removed it): the label is the current one, its values are not
            self._row = {"mood": g.mood, "confidence": round(float(g.confidence), 4), "probs": None,
                         "valence": None, "arousal": None, "face": "OFF" if g.mood == "none" else "ON",
                         "faces": None, "time": iso_utc(g.time)}
            return
        self._row = {"mood": g.mood, "confidence": round(float(g.confidence), 4), "probs": g.probs,
                     "valence": g.valence, "arousal": g.arousal, "face": "OFF" if g.mood == "none" else "ON",
                     "faces": g.faces, "time": iso_utc(g.time)}

    def _parse(self, r: sqlite3.Row) -> LogRow | None:
        """A row as the service wrote it, or None (one warning in all) for values another program put there."""
        try:
            return parse_row(r)
        except (ValueError, TypeError, RecursionError):  # bad JSON is a ValueError too
            self.foreign_rows += 1
            if self.foreign_rows == 1:
                log.warning("%s: skipping rows emotion-edge did not write (wrong types), from id %s on", self.db, r["id"])
            return None

    # -- the status file ----------------------------------------------------------------------
    def poll_status(self) -> None:
        """Reread status.json when its mtime changed (the service rewrites it every few seconds)."""
        if self.status is None:
            return
        try:
            mtime = os.stat(self.status).st_mtime_ns
        except OSError:
            mtime = None
        if mtime == self._status_mtime:
            return
        self._status_mtime = mtime
        data = read_status(self.status) if mtime is not None else None
        new: dict[str, Any] = {}
        model = (data or {}).get("model")
        labels = model.get("labels") if isinstance(model, dict) else None
        if isinstance(labels, list) and 0 < len(labels) <= 64 and all(
                isinstance(x, str) and 0 < len(x) <= 64 for x in labels):
            new["labels"] = list(labels)
        if data and "state" in data:
            if data.get("fps") is not None:
                new["fps"] = round(float(data["fps"]), 1)
            new["service"] = data.get("state")
            if data.get("updated") is not None:
                new["updated"] = float(data["updated"])
        self._status = new

    def state(self, now: float) -> dict[str, Any] | None:
        """The state payload: the latest row plus frames/s and the service state; None before any row."""
        if self._row is None:
            return None
        out = dict(self._row)
        out["interval"] = self._interval
        st = self._status
        out["fps"] = st.get("fps")
        service = st.get("service")
        if service in ("running", "starting", "reloading") and st.get("updated") is not None \
                and now - st["updated"] > STALE_AFTER:
            service = "stale"
        out["service"] = service
        return out

    @property
    def labels(self) -> list[str] | None:
        """The running model's labels from status.json (None when unknown)."""
        return self._status.get("labels")

    def camera_live(self, now: float, log_stale_after: float) -> bool:
        """Whether the camera service is producing moods now: from status.json when there is one
        (running and updated within STALE_AFTER), else from the log (a row within log_stale_after)."""
        st = self._status
        if st.get("service") is not None:
            updated = st.get("updated")
            return st["service"] in ("running", "starting", "reloading") and updated is not None \
                and now - updated <= STALE_AFTER
        return self.last_row_time is not None and now - self.last_row_time <= log_stale_after
