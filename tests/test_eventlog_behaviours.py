"""EventLog behaviours the other log tests leave out, on real SQLite files: buffer overflow while the
disk refuses, hourly retention driven by record(), corruption found mid-run, the exit-time error."""
from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import numpy as np

import edge.eventlog.recorder as ev
from edge.config import LogConfig
from edge.contract import FER_LABELS
from edge.eventlog import EventLog, read_rows
from edge.eventlog.schema import COLUMN_NAMES
from edge.types import Mood


def mood(label: str) -> Mood:
    p = np.full(len(FER_LABELS), 0.01, np.float32)
    p[FER_LABELS.index(label)] = 0.94
    return Mood(label, 0.94, p, FER_LABELS, 0.0)


ALT = ("happy", "sad")


def test_buffer_overflow_drops_the_oldest_rows_and_counts_them(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(ev, "BUFFER_CAP", 20)
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")  # the log's folder is a file: every open fails
    with caplog.at_level(logging.ERROR):
        log = EventLog(blocker / "log.db", LogConfig(commit_interval=0.05))
        for i in range(50):  # 50 mood changes, a row each, told apart by their box
            log.record(mood(ALT[i % 2]), 1, (i, 0, 10, 10), i * 0.1)
    assert log.pending == 20 and log.dropped == 30
    kept = [dict(zip(COLUMN_NAMES, row)) for row in log._buf]
    assert [r["box_x"] for r in kept] == list(range(30, 50)), "the newest rows are kept, in order"
    assert len([r for r in caplog.records if "cannot write" in r.getMessage()]) == 1
    log._closed = True  # nothing to write at exit: the folder never appears


def test_record_runs_retention_every_hour(tmp_path):
    wall = [1_000_000.0]
    db = tmp_path / "log.db"
    log = EventLog(db, LogConfig(keep_days=1.0, commit_interval=0.1), clock=lambda: wall[0])
    log.record(mood("happy"), 1, None, 0.0)
    log.record(mood("sad"), 1, None, 0.2)  # committed
    assert len(read_rows(db)) == 2
    wall[0] += 2 * 86400  # two days later both rows are past keep_days ...
    log.record(mood("happy"), 1, None, 1.0)
    assert len(read_rows(db)) == 3, "... but retention waits for its hourly pass"
    log.record(mood("sad"), 1, None, ev.RETENTION_EVERY + 1.0)
    rows = read_rows(db)
    assert rows and all(r.time == wall[0] for r in rows), "rows older than keep_days are gone"
    assert "happy" in [r.mood for r in rows if r.kind == "change"], "the rows of today stay"
    log.close()


def test_corruption_found_mid_run_moves_the_log_aside_with_its_side_files(tmp_path, caplog):
    db = tmp_path / "log.db"
    log = EventLog(db, LogConfig(commit_interval=0.05))
    for i in range(10):
        log.record(mood(ALT[i % 2]), 1, (i, 0, 10, 10), i * 0.1)
    assert log.written >= 5
    reader = sqlite3.connect(db)  # a reader (`emotion-edge log`) keeps the -wal/-shm in place
    reader.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    page = reader.execute("PRAGMA page_size").fetchone()[0]
    with open(db, "r+b") as f:  # every page but the first (schema and our application id) damaged
        f.seek(page)
        f.write(b"\xa5" * (db.stat().st_size - page))
    with caplog.at_level(logging.WARNING):
        for i in range(10, 20):  # the running writer meets the damage, reopens, moves the file aside
            log.record(mood(ALT[i % 2]), 1, (i, 0, 10, 10), i * 0.1)
    reader.close()
    aside = [p for p in tmp_path.glob("log.db.corrupt-*") if not p.name.endswith(("-wal", "-shm"))]
    assert len(aside) == 1, sorted(p.name for p in tmp_path.iterdir())
    assert Path(f"{aside[0]}-wal").exists() and Path(f"{aside[0]}-shm").exists(), "its side files moved with it"
    assert any("moved it aside" in r.getMessage() for r in caplog.records)
    assert not log.failing, "running on"
    log.record(mood("happy"), 1, (99, 0, 10, 10), 5.0)
    log.close()
    fresh = [r.box[0] for r in read_rows(db) if r.kind == "change"]
    assert fresh and fresh[-1] == 99 and all(x >= 10 for x in fresh), f"a fresh log, written on: {fresh}"


def test_rows_that_cannot_be_written_at_exit_are_one_line_without_a_traceback(tmp_path, caplog):
    db = tmp_path / "log.db"
    log = EventLog(db, LogConfig(commit_interval=3600))
    log.record(mood("happy"), 1, None, 0.0)
    log.record(mood("sad"), 1, None, 0.1)
    log._drop_conn()
    db.unlink()
    (tmp_path / "log.db").mkdir()  # the path is now a folder: the exit-time write must fail
    with caplog.at_level(logging.WARNING):
        log.close()  # does not raise
    (line,) = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert "3 rows could not be written at exit (OSError: not a regular file" in line.getMessage()
    assert line.exc_info is None and "Traceback" not in caplog.text
