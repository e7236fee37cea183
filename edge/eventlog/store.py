"""The event log's file: opening it for writing, telling ours from anyone else's, moving a damaged
one aside, retention, and closing a connection.

Our own log (application id in the header) when damaged is moved aside, never overwritten; any other
file (text, another program's SQLite database, a FIFO) is refused untouched, except at the default
path in the service's own state folder, which is ours whatever its header says (a damaged header is
moved aside too). Created as root, the file is handed to the state folder's owner (the service).
What becomes a row, and the buffered writer, are recorder.py's.
"""
from __future__ import annotations

import contextlib
import logging
import os
import secrets
import sqlite3
import stat
import time
from pathlib import Path
from typing import Callable

from edge.service import notices
from edge.config import LogConfig, default_db_path
from edge.errors import ConfigError, LogError
from edge.eventlog.schema import APPLICATION_ID, BY_NAME, COLUMN_NAMES, INSERT, SCHEMA, SCHEMA_VERSION, V1_COLUMNS, \
    table_columns

log = logging.getLogger(__package__)  # edge.eventlog: one name for the log's lines, whichever module writes them

MIN_KEEP_ROWS = 100  # size trimming never goes below this many (newest) rows
BUSY_TIMEOUT_S = 0.25  # the writer must not stall the frame loop for long
_CORRUPT_CODES = {11, 26}  # SQLITE_CORRUPT, SQLITE_NOTADB
_REOPEN_CODES = {8, 14}  # SQLITE_READONLY, SQLITE_CANTOPEN: a fresh connection may write again


def close_quietly(conn: sqlite3.Connection | None) -> None:
    """Close a connection that may be broken already (a damaged or replaced file): nothing to report.
    The writer's and the follower's one way to let a connection go."""
    if conn is not None:
        with contextlib.suppress(sqlite3.Error):
            conn.close()


def _is_corrupt(e: BaseException) -> bool:
    return isinstance(e, sqlite3.DatabaseError) and (getattr(e, "sqlite_errorcode", None) in _CORRUPT_CODES
                                                   or "not a database" in str(e) or "malformed" in str(e))


def _is_bug(e: BaseException) -> bool:
    """sqlite3's ProgrammingError and InterfaceError (a value it cannot bind, a closed connection) come
    from a mistake in this package, not from the disk: they propagate instead of being retried."""
    return isinstance(e, (sqlite3.ProgrammingError, sqlite3.InterfaceError))


class _Damaged(Exception):
    """The file is our log (its header says so) but is damaged: it is moved aside, never overwritten."""


class NotOurLog(LogError, ConfigError):
    """log.db / --db names a file that is not an emotion-edge log: refused untouched (exit 2, like a bad config)."""


SQLITE_MAGIC = b"SQLite format 3\x00"


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


# -- the steps of opening the file, in order ------------------------------------------------------
def _not_writable(path: Path) -> bool:
    """The log or a side file of it exists and this user may not write it (always False for root)."""
    for p in (str(path), str(path) + "-wal", str(path) + "-shm"):
        if os.path.lexists(p) and not os.access(p, os.W_OK):
            return True
    return False


def _create_for_owner(path: Path) -> None:
    """As root, create the log (and hand an existing root-owned one back) as the owner of its folder.

    `sudo emotion-edge run` before the service ever logged made a root-owned log that the service
    could never write (every row dropped). SQLite gives -wal and -shm the database file's owner, so
    only the file itself needs handing over. Not root, or a folder of root's own: nothing to do.
    """
    if os.geteuid() != 0:
        return
    d = os.stat(path.parent)
    if d.st_uid == 0:
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except FileExistsError:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode) and st.st_uid == 0:
            os.fchown(fd, d.st_uid, d.st_gid)
            for sfx in ("-wal", "-shm"):  # left by an older version as root; never follow a link
                try:
                    os.chown(str(path) + sfx, d.st_uid, d.st_gid, follow_symlinks=False)
                except FileNotFoundError:
                    pass
    finally:
        os.close(fd)


def _has_tables(conn: sqlite3.Connection) -> bool:
    return conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] > 0


def _our_tables(conn: sqlite3.Connection) -> bool:
    """meta and events with at least the version-1 columns: only then may a column be added."""
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    return {"meta", "events"} <= names and V1_COLUMNS <= table_columns(conn)


def _refusal(conn: sqlite3.Connection) -> str | None:
    """Why this SQLite file is not ours to write or move (it may have changed since identify()), else None."""
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]  # reads the header: NOTADB here
    if not _has_tables(conn):
        return None
    if app_id != APPLICATION_ID:
        return f"an SQLite database of another program (application_id {app_id:#x})"
    if not _our_tables(conn):
        return "carries our application id but not our tables"
    return None


def _check_integrity(conn: sqlite3.Connection) -> None:
    check = conn.execute("PRAGMA quick_check").fetchone()[0]
    if check != "ok":
        raise _Damaged(f"failed its integrity check ({check})")


def _stamp_new_file(conn: sqlite3.Connection) -> None:
    """Settings that only a new file takes: incremental vacuum (for size retention) and our id."""
    conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
    conn.execute(f"PRAGMA application_id={APPLICATION_ID}")


def _set_pragmas(conn: sqlite3.Connection) -> None:
    """WAL, so readers work while we write; NORMAL sync loses at most the last commit on power loss."""
    conn.execute("PRAGMA journal_mode=WAL").fetchone()
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA journal_size_limit=4194304")


def _create_or_upgrade(conn: sqlite3.Connection) -> None:
    """The tables of a new file; an older log gains the columns it lacks and keeps its rows."""
    conn.executescript(SCHEMA)
    have = table_columns(conn)
    missing = [n for n in COLUMN_NAMES if n not in have]
    if missing:
        _add_columns(conn, missing)
    conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))


def _add_columns(conn: sqlite3.Connection, names: list[str]) -> None:
    """Schema 1 or 2 -> current in place, in one transaction: new columns, no rewrite of the rows
    (instant even on a 50 MB log at service start); readers derive valence/arousal of older rows."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        for n in names:
            conn.execute(f"ALTER TABLE events ADD COLUMN {n} {BY_NAME[n].decl}")
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    listed = ", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else names[0]
    log.info("event log: upgraded to schema %d (%s column%s)", SCHEMA_VERSION, listed, "s" if len(names) > 1 else "")


class LogStore:
    """The log file and its connection: opened (and reopened after trouble), rows inserted in one
    transaction, retention. Disk trouble is passed to `_report` and `_note_failing`, which the writer
    (recorder.EventLog) defines: it knows the rows waiting and lost."""

    def __init__(self, path: str | Path, cfg: LogConfig, clock: Callable[[], float] = time.time,
                 owned: bool | None = None) -> None:
        self.path = Path(path)
        self.cfg = cfg
        # owned: the default log in the state folder is ours whatever its header says (a damaged header
        # is moved aside); a file the user named (log.db, --db) that is not our log is refused untouched
        self.owned = (not cfg.db and self.path == default_db_path()) if owned is None else owned
        self._clock = clock  # UTC wall time for rows and retention; injectable so tests can age data
        self._conn: sqlite3.Connection | None = None
        self._checked: tuple[int, int] | None = None  # (dev, inode) of the file that passed quick_check
        self._refused: str | None = None
        self._try_open(first=True)
        if self._refused:
            raise NotOurLog(f"{self.path}: {self._refused}; not an emotion-edge event log, left untouched "
                            "(set log.db or --db to a new file)")

    # -- failures: the writer's to report, as it knows the rows they cost -------------------------
    def _report(self, e: BaseException) -> None:
        """Disk trouble opening, writing or trimming the file (one error line per episode)."""
        raise NotImplementedError

    def _note_failing(self) -> None:
        """For `status`: the file cannot be written, and what that costs."""
        raise NotImplementedError

    # -- writing --------------------------------------------------------------------------
    def _insert(self, rows: list[tuple]) -> bool:
        """Insert `rows` in one transaction; False (reported, nothing written) if the disk refuses."""
        if self._conn is None and not self._try_open():
            return False
        conn = self._conn
        assert conn is not None
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
            if _is_bug(e):
                raise
            self._report(e)
            self._note_failing()
            code = (getattr(e, "sqlite_errorcode", 0) or 0) & 0xFF
            if _is_corrupt(e) or code in _REOPEN_CODES:
                self._drop_conn()  # reopen next time: moves a damaged file aside, regains write access
            return False
        return True

    # -- opening --------------------------------------------------------------------------
    def _try_open(self, first: bool = False) -> bool:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._refused = identify(self.path)
            if self._refused and self.owned and self._refused != "not a regular file":
                self._move_aside(f"its header is damaged ({self._refused})")
                self._refused = None
            if self._refused:
                raise OSError(f"{self._refused}; left untouched")
            _create_for_owner(self.path)
            if self.owned and _not_writable(self.path):
                self._take_over()
            self._conn = self._connect_or_move_aside()
            self._retention()
            return True
        except (sqlite3.Error, OSError, _Damaged) as e:
            self._drop_conn()
            if _is_bug(e):
                raise
            if not (first and self._refused):  # at start a refusal is raised (one line), not logged too
                self._report(e)
                self._note_failing()
            return False

    def _connect_or_move_aside(self) -> sqlite3.Connection:
        """Connect; our log found damaged is renamed aside and a fresh one created in its place."""
        try:
            return self._connect()
        except _Damaged as e:
            reason = str(e)
        except sqlite3.DatabaseError as e:
            if not _is_corrupt(e):
                raise
            reason = str(e)
        self._move_aside(reason)
        return self._connect()

    def _connect(self) -> sqlite3.Connection:
        """Open; refuse a file that is not ours; check an existing file once per run (_Damaged) or
        stamp a new one; pragmas; create or upgrade the tables."""
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
        try:
            refusal = _refusal(conn)
            if refusal and self.owned:
                raise _Damaged(f"its header is damaged ({refusal})")
            if refusal:
                self._refused = refusal
                raise OSError(f"{refusal}; left untouched")
            st = os.stat(self.path)
            if not _has_tables(conn):
                _stamp_new_file(conn)
            elif (st.st_dev, st.st_ino) != self._checked:  # check each file once per run
                _check_integrity(conn)
            _set_pragmas(conn)
            _create_or_upgrade(conn)
            conn.execute("INSERT OR REPLACE INTO meta VALUES ('summary_interval', ?)", (str(self.cfg.summary_interval),))
            self._checked = (st.st_dev, st.st_ino)
            return conn
        except BaseException:
            conn.close()
            raise

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
        notices.note("log_moved", f"event log {self.path}: {reason}; moved aside to {dest.name}, a fresh log started")
        return dest

    def _take_over(self) -> None:
        """Our own log that we may not write (root made it: `sudo emotion-edge run` before the service ever
        logged), in our own folder: copy its rows into a file of ours and rename that over it; moved aside
        if even that fails. Without this every row was dropped, start after start."""
        tmp = self.path.with_name(f".{self.path.name}.{secrets.token_hex(4)}.tmp")
        try:
            src = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S)  # read-only: the file is not ours to write
            try:
                dst = sqlite3.connect(tmp)
                try:
                    src.backup(dst)
                finally:
                    dst.close()
            finally:
                src.close()
            for sfx in ("-wal", "-shm"):  # already in the copy; left beside it they would be replayed into it
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(str(self.path) + sfx)
            os.replace(tmp, self.path)
        except (sqlite3.Error, OSError) as e:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            if _is_bug(e):
                raise
            self._move_aside(f"not writable by this user and cannot be copied ({type(e).__name__}: {e})")
            return
        log.warning("event log %s: was not writable by this user (made by root?); its rows now live in a file of ours",
                    self.path)
        notices.note("log_moved", f"event log {self.path}: was not writable by the service (made by root?); "
                                  "its rows were copied into a file of the service's")

    def _drop_conn(self) -> None:
        close_quietly(self._conn)
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
            if _is_bug(e):
                raise
            self._report(e)

    @staticmethod
    def _used_bytes(conn: sqlite3.Connection) -> int:
        pages = conn.execute("PRAGMA page_count").fetchone()[0] - conn.execute("PRAGMA freelist_count").fetchone()[0]
        return pages * conn.execute("PRAGMA page_size").fetchone()[0]
