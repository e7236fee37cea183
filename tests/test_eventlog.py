"""Event log on real SQLite files: the rows that should be there are there, and readers coexist."""
from __future__ import annotations

import logging
import sqlite3
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import edge.eventlog.recorder as ev
from edge.config import LogConfig
from edge.contract import FER_LABELS
from edge.errors import LogError
from edge.eventlog import EventLog, LogFollower, iso_utc, read_rows, summarize
from edge.eventlog.schema import APPLICATION_ID, COLUMN_NAMES, row_values
from edge.types import Mood

T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z


class Clock:
    """Wall clock driven by the test (rows carry this time)."""

    def __init__(self, base: float = T0) -> None:
        self.base = self.t = base

    def __call__(self) -> float:
        return self.t


def mood(label: str, p: float = 0.9) -> Mood:
    if label == "none":
        return Mood("none", 0.0, None, FER_LABELS, 0.0)
    probs = np.full(7, (1 - p) / 6, dtype=np.float32)
    probs[FER_LABELS.index(label)] = p
    return Mood(label, p, probs, FER_LABELS, 0.0)


def run(log: EventLog, clock: Clock, script: list[tuple[float, str, int]], fps: float = 10.0, start: float = 0.0) -> float:
    """Feed (seconds, label, faces) segments at `fps`; monotonic and wall time advance together."""
    k = 0
    for secs, label, faces in script:
        m = mood(label)
        for _ in range(round(secs * fps)):
            t = start + k / fps
            clock.t = clock.base + t
            log.record(m, faces, (10, 10, 40 + faces, 40 + faces) if faces else None, t)
            k += 1
    return start + k / fps


def test_rows_on_changes_and_summaries(tmp_path):
    db = tmp_path / "ev.db"
    clock = Clock()
    cfg = LogConfig(summary_interval=5.0, commit_interval=0.5)
    with EventLog(db, cfg, clock=clock) as log:
        run(log, clock, [(3, "happy", 1), (4, "sad", 2), (3, "none", 0)])
    rows = read_rows(db)
    changes = [r for r in rows if r.kind == "change"]
    assert [r.mood for r in changes] == ["happy", "sad", "none"]
    assert changes[0].confidence == pytest.approx(0.9)
    assert changes[0].probs["happy"] == pytest.approx(0.9, abs=1e-4)
    assert changes[1].faces == 2 and changes[1].box == (10, 10, 42, 42)
    assert changes[2].probs is None and changes[2].box is None
    assert [r.time - T0 for r in changes] == pytest.approx([0.0, 3.0, 7.0], abs=1e-6)
    summaries = [r for r in rows if r.kind == "summary"]
    assert len(summaries) == 2  # one at 5 s, the partial one written at close
    first = summaries[0]
    assert first.time - T0 == pytest.approx(5.0, abs=1e-6)
    # frames at 0.0 .. 5.0 s: 30 happy, 21 sad: the mean probability and the mean face count
    assert first.probs["happy"] == pytest.approx((30 * 0.9 + 21 * 0.1 / 6) / 51, abs=1e-3)
    assert first.faces == pytest.approx((30 * 1 + 21 * 2) / 51, abs=1e-3)
    assert first.box == (10, 10, 42, 42)  # the largest box of the interval
    assert first.mood == "sad"  # the mood in effect at that time
    assert len(rows) == 5  # never one row per frame (100 frames)
    d = rows[0].as_dict()
    assert d["time"] == "2023-11-14T22:13:20.000Z" and d["mood"] == "happy" and d["confidence"] == 0.9


def test_each_summary_counts_its_own_interval_and_keeps_its_largest_box(tmp_path):
    """The second summary must not carry the first one's sums; the box is the largest of the interval, not the latest."""
    db = tmp_path / "ev.db"
    clock = Clock()
    with EventLog(db, LogConfig(summary_interval=2.0, commit_interval=0.5), clock=clock) as log:
        for k in range(40):  # 10 fps: happy for 2 s, then sad for 2 s
            t = k / 10
            clock.t = T0 + t
            box = (5, 5, 90, 90) if k in (3, 25) else (10, 10, 40, 40)  # one big face early in each interval
            log.record(mood("happy" if t < 2 else "sad"), 1, box, t)
    first, second = [r for r in read_rows(db) if r.kind == "summary"]
    assert first.box == second.box == (5, 5, 90, 90)
    assert first.probs["happy"] == pytest.approx((20 * 0.9 + 0.1 / 6) / 21, abs=1e-3)  # frames 0.0 .. 2.0 s
    assert second.probs["sad"] == pytest.approx(0.9, abs=1e-3) and sum(second.probs.values()) == pytest.approx(1.0, abs=1e-3)


def test_commits_are_batched(tmp_path):
    db = tmp_path / "ev.db"
    clock = Clock()
    with EventLog(db, LogConfig(commit_interval=1.0), clock=clock) as log:
        labels = ["happy", "sad"] * 5
        for i, lab in enumerate(labels):  # 10 changes within 0.45 s
            log.record(mood(lab), 1, None, i * 0.05)
        assert read_rows(db) == []  # nothing committed yet
        assert log.pending == 10
        log.record(mood("sad"), 1, None, 1.0)
        assert len(read_rows(db)) == 10 and log.pending == 0 and log.written == 10


def test_wal_mode_and_schema(tmp_path):
    db = tmp_path / "ev.db"
    with EventLog(db, LogConfig()) as log:
        log.record(mood("happy"), 1, None, 0.0)
        log.flush()
        conn = sqlite3.connect(db)
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == "3"
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        assert {"events", "meta", "events_time"} <= names
        cols = [(r[1], r[2], r[3]) for r in conn.execute("PRAGMA table_info(events)")]
        conn.close()
    assert cols == [("id", "INTEGER", 0), ("time", "REAL", 1), ("kind", "TEXT", 1), ("mood", "TEXT", 1),
                    ("confidence", "REAL", 1), ("probs", "TEXT", 0), ("faces", "REAL", 1), ("box_x", "INTEGER", 0),
                    ("box_y", "INTEGER", 0), ("box_w", "INTEGER", 0), ("box_h", "INTEGER", 0),
                    ("faces_detail", "TEXT", 0), ("valence", "REAL", 0), ("arousal", "REAL", 0)]  # the file format


def test_a_row_is_built_from_every_column_by_name():
    values = {n: i for i, n in enumerate(reversed(COLUMN_NAMES))}
    assert row_values(**values) == tuple(values[n] for n in COLUMN_NAMES)  # in the table's order
    with pytest.raises(TypeError, match="exactly the columns"):
        row_values(**values, mood_typo="sad")
    del values["arousal"]
    with pytest.raises(TypeError, match="exactly the columns"):
        row_values(**values)


def test_readers_take_columns_by_name_not_position(tmp_path):
    """A log whose columns are in another order (same names) reads the same: nothing is taken by index."""
    db = tmp_path / "ev.db"
    conn = sqlite3.connect(db)
    conn.executescript(f"""
        PRAGMA application_id={APPLICATION_ID};
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE events (arousal REAL, valence REAL, faces_detail TEXT, box_h INTEGER, box_w INTEGER,
            box_y INTEGER, box_x INTEGER, faces REAL NOT NULL, probs TEXT, confidence REAL NOT NULL,
            mood TEXT NOT NULL, kind TEXT NOT NULL, time REAL NOT NULL, id INTEGER PRIMARY KEY);
        INSERT INTO events (time, kind, mood, confidence, probs, faces, box_x, box_y, box_w, box_h, valence, arousal)
            VALUES ({T0}, 'change', 'sad', 0.75, '{{"sad": 0.75}}', 2, 1, 2, 3, 4, -0.5, -0.25);
    """)
    conn.close()
    (row,) = read_rows(db)
    assert (row.time, row.kind, row.mood, row.confidence, row.probs, row.faces, row.box, row.valence, row.arousal) \
        == (T0, "change", "sad", 0.75, {"sad": 0.75}, 2, (1, 2, 3, 4), -0.5, -0.25)
    f = LogFollower(db)
    assert f.poll_log(False)
    st = f.state(T0)
    f.close()
    assert (st["mood"], st["confidence"], st["faces"], st["valence"], st["arousal"]) == ("sad", 0.75, 2, -0.5, -0.25)


def test_read_rows_since_and_limit(tmp_path):
    db = tmp_path / "ev.db"
    clock = Clock()
    with EventLog(db, LogConfig(summary_interval=3600), clock=clock) as log:
        run(log, clock, [(1, lab, 1) for lab in ["happy", "sad", "angry", "fear", "neutral"]], fps=5)
    rows = read_rows(db)
    assert [r.mood for r in rows][:5] == ["happy", "sad", "angry", "fear", "neutral"]
    assert [r.mood for r in read_rows(db, limit=2)] == ["neutral", "neutral"]  # last change + closing summary
    assert [r.mood for r in read_rows(db, since=T0 + 2.5)][:2] == ["fear", "neutral"]
    assert read_rows(db, since=T0 + 1000) == []


def test_summarize_time_share_and_hours(tmp_path):
    db = tmp_path / "ev.db"
    clock = Clock()
    with EventLog(db, LogConfig(summary_interval=60, commit_interval=1), clock=clock) as log:
        end = run(log, clock, [(90, "happy", 1), (30, "sad", 1)], fps=2)
    s = summarize(db, now=T0 + end)
    assert s.moods["happy"].changes == 1 and s.moods["sad"].changes == 1
    assert s.moods["happy"].seconds == pytest.approx(90, abs=1)
    assert s.moods["sad"].seconds == pytest.approx(30, abs=1)
    assert s.moods["happy"].share == pytest.approx(0.75, abs=0.01)
    assert list(s.hours) == [iso_utc(T0)[:13]]
    assert s.as_dict()["moods"]["sad"]["changes"] == 1
    # a gap longer than 2 summary intervals (service stopped) is not credited to the last mood
    s2 = summarize(db, now=T0 + end + 10_000)
    assert s2.moods["sad"].seconds == pytest.approx(30, abs=1)
    assert summarize(db, now=T0 + end + 100).moods["sad"].seconds == pytest.approx(130, abs=1)  # still running


def test_summarize_splits_time_and_changes_by_hour(tmp_path):
    """Each row's time goes to the hour it starts in; changes are counted per hour too (`log --summary`)."""
    db = tmp_path / "ev.db"
    hour = (T0 // 3600 + 1) * 3600  # the next full hour after T0
    clock = Clock(hour - 60)
    with EventLog(db, LogConfig(summary_interval=60, commit_interval=1), clock=clock) as log:
        end = run(log, clock, [(90, "happy", 1), (30, "sad", 1)], fps=2)
    s = summarize(db, now=clock.base + end)
    before, after = iso_utc(hour - 60)[:13], iso_utc(hour)[:13]
    assert s.hour_changes == {before: 1, after: 1}
    assert s.hours[before] == pytest.approx({"happy": 60.0}, abs=1)
    assert s.hours[after] == pytest.approx({"happy": 30.0, "sad": 30.0}, abs=1)
    assert s.seconds == pytest.approx(120, abs=1) and s.moods["sad"].share == pytest.approx(0.25, abs=0.01)


def test_retention_by_age_keeps_recent(tmp_path):
    db = tmp_path / "ev.db"
    clock = Clock(T0 - 10 * 86400)
    cfg = LogConfig(keep_days=5)
    with EventLog(db, cfg, clock=clock) as log:
        run(log, clock, [(1, "happy", 1), (1, "sad", 1)])
    assert len(read_rows(db)) == 3
    clock.base = clock.t = T0
    with EventLog(db, cfg, clock=clock) as log:  # retention runs at open
        log.record(mood("angry"), 1, None, 0.0)
    moods = [r.mood for r in read_rows(db)]
    assert moods == ["angry", "angry"]  # the change row and the closing summary


def test_retention_by_size_trims_oldest_never_newest(tmp_path):
    db = tmp_path / "ev.db"
    clock = Clock()
    cfg = LogConfig(max_mb=0.1, commit_interval=60, summary_interval=3600)
    with EventLog(db, cfg, clock=clock) as log:
        labels = ["happy", "sad"]
        for i in range(3000):  # ~3000 change rows, ~0.5 MB
            clock.t = T0 + i
            log.record(mood(labels[i % 2]), 1, (1, 2, 3, 4), float(i))
        log.flush()
        per_row = EventLog._used_bytes(log._conn) / 3000
        log._retention()
        used = EventLog._used_bytes(log._conn)
        n = sqlite3.connect(db).execute("SELECT count(*) FROM events").fetchone()[0]
    rows = read_rows(db)
    assert 100 <= len(rows) < 3000
    assert used <= 0.1e6 and len(rows) > 0.5 * 0.1e6 / per_row, (used, len(rows))  # trimmed to fit, not far below
    assert rows[-2].time == T0 + 2999  # the newest change survived
    assert rows[0].time == T0 + 3000 - n  # a contiguous newest block
    assert db.stat().st_size < 0.25e6


def test_size_trimming_keeps_the_newest_hundred_rows_however_small_the_limit(tmp_path):
    db = tmp_path / "ev.db"
    clock = Clock()
    with EventLog(db, LogConfig(max_mb=0.001, commit_interval=60, summary_interval=3600), clock=clock) as log:
        for i in range(400):
            clock.t = T0 + i
            log.record(mood(["happy", "sad"][i % 2]), 1, (1, 2, 3, 4), float(i))
        log.flush()
        log._retention()
        assert sqlite3.connect(db).execute("SELECT count(*), min(time) FROM events").fetchone() == (100, T0 + 300)


def test_reader_thread_during_writes_sees_committed_rows(tmp_path):
    db = tmp_path / "ev.db"
    seen: list[int] = []
    errors: list[BaseException] = []
    stop = threading.Event()
    with EventLog(db, LogConfig(commit_interval=0.05)) as log:
        log.record(mood("happy"), 1, None, 0.0)
        log.flush()

        def reader() -> None:
            while not stop.is_set():
                try:
                    seen.append(len(read_rows(db)))
                except BaseException as e:  # noqa: BLE001 - any error fails the test
                    errors.append(e)

        th = threading.Thread(target=reader)
        th.start()
        labels = ["happy", "sad"]
        for batch in range(10):
            reads_before = len(seen)
            for i in range(batch * 100 + 1, batch * 100 + 101):
                log.record(mood(labels[i % 2]), 1, None, i * 0.001)
            log.flush()
            # Let the reader overlap every batch, however slow the machine (emulated arm64 is).
            deadline = time.monotonic() + 10.0
            while len(seen) <= reads_before and time.monotonic() < deadline:
                time.sleep(0.001)
        stop.set()
        th.join()
    assert not errors
    assert len(seen) >= 10 and seen == sorted(seen)  # read during every batch; only ever grows
    assert len(read_rows(db)) == 1001 + 1  # every change + the closing summary


def test_close_twice_and_record_after_close(tmp_path):
    db = tmp_path / "ev.db"
    log = EventLog(db, LogConfig())
    log.record(mood("happy"), 1, None, 0.0)
    log.close()
    log.close()
    log.record(mood("sad"), 1, None, 5.0)
    assert [(r.kind, r.mood) for r in read_rows(db)] == [("change", "happy"), ("summary", "happy")]


def test_readers_reject_missing_and_foreign_files(tmp_path):
    with pytest.raises(LogError, match="no event log at"):
        read_rows(tmp_path / "missing.db")
    junk = tmp_path / "junk.db"
    junk.write_text("hello\n" * 100)
    with pytest.raises(LogError, match="junk.db"):
        read_rows(junk)
    other = tmp_path / "other.db"
    c = sqlite3.connect(other)
    c.execute("CREATE TABLE t (x)")
    c.commit()
    c.close()
    with pytest.raises(LogError, match="not an emotion-edge log"):
        summarize(other)


def _disk_failure_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR and "cannot write" in r.getMessage()]


def test_a_bug_in_record_raises_and_is_not_reported_as_a_disk_failure(tmp_path, caplog, monkeypatch):
    """Only disk trouble (sqlite3 / OSError) is reported and retried; a programming error propagates."""
    log = EventLog(tmp_path / "ev.db", LogConfig())
    bad = Mood("happy", 0.5, np.ones(3, np.float32), FER_LABELS, 0.0)  # probs of the wrong length
    with caplog.at_level(logging.ERROR), pytest.raises(ValueError, match="broadcast"):
        log.record(bad, 1, None, 0.0)

    def broken(*_a: object) -> str:
        raise TypeError("a bug in a row helper")

    monkeypatch.setattr(ev, "_probs_json", broken)
    with caplog.at_level(logging.ERROR), pytest.raises(TypeError, match="a bug in a row helper"):
        log.record(mood("sad"), 1, None, 0.1)
    assert not log.failing and _disk_failure_lines(caplog) == []
    monkeypatch.undo()
    log.close()


def test_a_value_sqlite_cannot_bind_raises_from_flush_not_kept_and_retried(tmp_path, caplog, monkeypatch):
    """sqlite3's ProgrammingError/InterfaceError are bugs too, not a disk that refuses writes."""
    log = EventLog(tmp_path / "ev.db", LogConfig(commit_interval=3600))
    monkeypatch.setattr(ev, "_faces_json", lambda faces: object())  # not a type SQLite can store
    log.record(mood("happy"), 1, None, 0.0)
    with caplog.at_level(logging.ERROR), pytest.raises((sqlite3.ProgrammingError, sqlite3.InterfaceError)):
        log.flush()
    assert not log.failing and _disk_failure_lines(caplog) == []
    monkeypatch.undo()
    log._buf.clear()
    log.close()


def test_every_classified_face_is_logged_with_the_change(tmp_path):
    from edge.types import Prediction

    db = tmp_path / "ev.db"
    happy = np.eye(len(FER_LABELS), dtype=np.float32)[FER_LABELS.index("happy")]
    sad = np.eye(len(FER_LABELS), dtype=np.float32)[FER_LABELS.index("sad")]
    faces = [((10, 10, 80, 80), Prediction(happy, FER_LABELS)), ((200, 30, 40, 40), Prediction(sad, FER_LABELS))]
    with EventLog(db, LogConfig()) as log:
        log.record(mood("happy"), 2, faces[0][0], 0.0, faces)
        log.record(mood("happy"), 2, faces[0][0], 0.1, None)  # no new classification: no new row
        log.flush()
    (row,) = [r for r in read_rows(db) if r.kind == "change"]
    assert row.faces_detail == [{"box": [10, 10, 80, 80], "emotion": "happy", "confidence": 1.0},
                                {"box": [200, 30, 40, 40], "emotion": "sad", "confidence": 1.0}]
    assert row.as_dict()["faces_detail"][1]["emotion"] == "sad"


def test_a_version_1_log_gains_the_newer_columns_and_keeps_its_rows(tmp_path):
    db = tmp_path / "ev.db"
    with EventLog(db, LogConfig()) as log:
        log.record(mood("sad"), 1, None, 0.0)
        log.flush()
    conn = sqlite3.connect(db)  # make it look like a version-1 file
    for col in ("faces_detail", "valence", "arousal"):
        conn.execute(f"ALTER TABLE events DROP COLUMN {col}")
    conn.execute("UPDATE meta SET value='1' WHERE key='schema_version'")
    conn.commit()
    conn.close()
    with EventLog(db, LogConfig()) as log:
        log.record(mood("happy"), 1, None, 0.0)
        log.flush()
    assert [r.mood for r in read_rows(db) if r.kind == "change"] == ["sad", "happy"]
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == "3"
    assert [r[1] for r in conn.execute("PRAGMA table_info(events)")][-3:] == ["faces_detail", "valence", "arousal"]
    conn.close()
