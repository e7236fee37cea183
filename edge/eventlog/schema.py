"""The event log's file format: one list of the events table's columns, from which the CREATE,
INSERT and SELECT statements are built, so the writer and the readers cannot disagree on an order.
The `faces` column is a count (a summary's mean per frame); `faces_detail` lists the faces themselves.
"""
from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

SCHEMA_VERSION = 3  # 2: faces_detail column (every classified face, not only the largest); 3: valence, arousal
APPLICATION_ID = 0x456D6F45  # "EmoE" in the SQLite header: tells our files from foreign ones


@dataclass(frozen=True)
class Column:
    name: str
    decl: str  # type and constraint, as in CREATE TABLE and ALTER TABLE ... ADD COLUMN
    note: str = ""  # kept as a comment in the CREATE statement (sqlite_master shows it)
    since: int = 1  # the schema version that added it (older logs gain it by ALTER TABLE at open)


COLUMNS: tuple[Column, ...] = (  # after `id INTEGER PRIMARY KEY`; new columns go at the end (ADD COLUMN)
    Column("time", "REAL NOT NULL", "UTC, seconds since the epoch"),
    Column("kind", "TEXT NOT NULL", "'change' | 'summary'"),
    Column("mood", "TEXT NOT NULL", "the mood in effect at `time` (or 'none')"),
    Column("confidence", "REAL NOT NULL"),
    Column("probs", "TEXT", "JSON {label: p}; summary: mean over the interval"),
    Column("faces", "REAL NOT NULL", "face count; summary: mean per frame"),
    Column("box_x", "INTEGER", "largest face box"),
    Column("box_y", "INTEGER"),
    Column("box_w", "INTEGER"),
    Column("box_h", "INTEGER"),
    Column("faces_detail", "TEXT", "JSON [{box, emotion, confidence}] for up to max_faces faces", since=2),
    Column("valence", "REAL", "circumplex placement of probs (edge/affect.py); NULL without probs", since=3),
    Column("arousal", "REAL", since=3),
)
COLUMN_NAMES: tuple[str, ...] = tuple(c.name for c in COLUMNS)
BY_NAME: dict[str, Column] = {c.name: c for c in COLUMNS}
V1_COLUMNS = frozenset({"id", *(c.name for c in COLUMNS if c.since == 1)})  # the oldest log we upgrade


def _column_lines() -> str:
    last = len(COLUMNS) - 1
    return "\n".join(f"    {c.name} {c.decl}{'' if i == last else ','}" + (f"  -- {c.note}" if c.note else "")
                     for i, c in enumerate(COLUMNS))


SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
{_column_lines()}
);
CREATE INDEX IF NOT EXISTS events_time ON events(time);
"""
INSERT = f"INSERT INTO events ({', '.join(COLUMN_NAMES)}) VALUES ({', '.join('?' * len(COLUMN_NAMES))})"


def table_columns(conn: sqlite3.Connection) -> set[str]:
    """The columns the file's events table has (an older log lacks the newer ones)."""
    return {r[1] for r in conn.execute("PRAGMA table_info(events)")}


def select_list(have: set[str], names: tuple[str, ...] = COLUMN_NAMES) -> str:
    """`names` for a SELECT, each missing one as `NULL AS name`, so rows read by name work on older logs."""
    unknown = set(names) - set(COLUMN_NAMES) - {"id"}
    if unknown:
        raise ValueError(f"not event log columns: {sorted(unknown)}")
    return ", ".join(n if n in have else f"NULL AS {n}" for n in names)


def row_values(**values: Any) -> tuple[Any, ...]:
    """One row's INSERT parameters in COLUMNS order, from values given by name (a tuple: the writer
    may buffer thousands while the disk refuses). TypeError unless exactly the columns are given."""
    if values.keys() != BY_NAME.keys():
        raise TypeError(f"an event row needs exactly the columns {COLUMN_NAMES}; got {tuple(values)}")
    return tuple(values[n] for n in COLUMN_NAMES)
