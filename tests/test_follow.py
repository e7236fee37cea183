"""LogFollower (edge/eventlog/follower.py) on real SQLite logs written by EventLog and real status files: the service
state it reports (stale included), status.json vanishing or garbled mid-run, a log file replaced under
it, and the one warning for rows another program wrote."""
from __future__ import annotations

import logging
import os
import sqlite3
from pathlib import Path

import numpy as np

from edge.config import LogConfig
from edge.contract import FER_LABELS
from edge.eventlog import EventLog
from edge.eventlog.follower import STALE_AFTER, LogFollower
from edge.service.statusfile import write_status
from edge.types import Mood

T0 = 1_800_000_000.0


def record(log: EventLog, label: str, t: float = 0.0) -> None:
    """One change row, committed (as the service does within 0.5 s)."""
    p = np.full(len(FER_LABELS), 0.01, np.float32)
    p[FER_LABELS.index(label)] = 0.94
    log.record(Mood(label, 0.94, p, FER_LABELS, t), 1, None, t)
    assert log.flush()


def write_moods(db: Path, *labels: str) -> None:
    """One change row per label, then the closing summary row."""
    with EventLog(db, LogConfig()) as log:
        for i, lab in enumerate(labels):
            record(log, lab, float(i))


def replace_log(new: Path, db: Path) -> None:
    """Rename another log over `db` as the service does (eventlog's take-over): its -wal/-shm go first,
    or SQLite would replay them into the new file."""
    for sfx in ("-wal", "-shm"):
        Path(str(db) + sfx).unlink(missing_ok=True)
    os.replace(new, db)


class Status:
    """status.json as the service writes it, each version with its own mtime (a coarse clock could
    give two quick writes the same one, and the follower rereads on a new mtime only)."""

    def __init__(self, path: Path) -> None:
        self.path, self.version = path, 0

    def write(self, data: dict | None = None, text: str | None = None) -> None:
        if data is not None:
            write_status(self.path, data)
        else:
            self.path.write_text(text or "")
        self.version += 1
        ns = int(T0 * 1e9) + self.version * 10**9
        os.utime(self.path, ns=(ns, ns))


def test_a_running_service_whose_status_stopped_changing_is_stale(tmp_path):
    db, status = tmp_path / "ev.db", Status(tmp_path / "status.json")
    write_moods(db, "happy")
    f = LogFollower(db, status.path)
    assert f.poll_log(False)
    for state in ("running", "starting", "reloading"):
        status.write({"state": state, "fps": 12.34, "updated": T0})
        f.poll_status()
        assert (f.state(T0)["service"], f.state(T0)["fps"]) == (state, 12.3)
        assert f.state(T0 + STALE_AFTER)["service"] == state  # at the limit: not yet
        assert f.state(T0 + STALE_AFTER + 0.1)["service"] == "stale"
    assert STALE_AFTER == 30.0  # README: the camera service is offline "within 30 s of a crash"
    status.write({"state": "stopped", "updated": T0})
    f.poll_status()
    assert f.state(T0 + 1000)["service"] == "stopped"  # a stopped service is not stale, it is stopped
    status.write({"state": "running"})  # no `updated`: nothing says how old it is
    f.poll_status()
    assert f.state(T0 + 1000)["service"] == "running"
    f.close()


def test_status_file_that_vanishes_or_is_garbled_mid_run_clears_the_service_fields(tmp_path):
    db, status = tmp_path / "ev.db", Status(tmp_path / "status.json")
    write_moods(db, "sad")
    f = LogFollower(db, status.path)
    assert f.poll_log(False)

    def service() -> tuple:
        f.poll_status()
        st = f.state(T0)
        return st["service"], st["fps"], st["mood"]

    status.write({"state": "running", "fps": 9.96, "updated": T0})
    assert service() == ("running", 10.0, "sad")
    status.path.unlink()
    assert service() == (None, None, "sad")  # gone: the mood stays, what the service said does not
    status.write(text='{"state": "runn')
    assert service() == (None, None, "sad")
    status.write(text="[1, 2]")
    assert service() == (None, None, "sad")
    status.write({"fps": 5.0})  # no state: not the service's status
    assert service() == (None, None, "sad")
    status.write({"state": "running", "fps": 5.0, "updated": T0})
    assert service() == ("running", 5.0, "sad")
    status.write({"state": "running", "updated": T0})
    assert service() == ("running", None, "sad")
    f.close()


def test_a_log_file_replaced_under_the_follower_is_followed_from_its_latest_row(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="edge.follow")
    db = tmp_path / "ev.db"
    write_moods(db, "happy", "sad")
    f = LogFollower(db)
    assert f.poll_log(False) and f.state(T0)["mood"] == "sad"
    assert not f.poll_log(False)  # nothing new
    new = tmp_path / "new.db"
    write_moods(new, "fear", "surprise", "neutral", "angry")  # more rows than the old file: ids go past its last
    replace_log(new, db)
    assert f.poll_log(False) and f.state(T0)["mood"] == "angry"
    assert [r.getMessage() for r in caplog.records if "replaced" in r.getMessage()] == [
        f"event log {db} was replaced; following the new file"]
    write_moods(db, "happy")
    assert f.poll_log(False) and f.state(T0)["mood"] == "happy"
    f.close()


def test_rows_another_program_wrote_get_one_warning_naming_the_first(tmp_path, caplog):
    db = tmp_path / "ev.db"
    write_moods(db, "sad")
    f = LogFollower(db)
    assert f.poll_log(False)
    c = sqlite3.connect(db)
    for bad in ("yesterday", "today", "tomorrow"):
        c.execute("INSERT INTO events (time, kind, mood, confidence, faces) VALUES (?, 'change', 'happy', 0.9, 1.0)", (bad,))
    c.commit()
    c.close()
    caplog.set_level(logging.WARNING, logger="edge.follow")
    assert not f.poll_log(False) and f.foreign_rows == 3
    first = min(r[0] for r in sqlite3.connect(db).execute("SELECT id FROM events WHERE typeof(time) = 'text'"))
    assert [r.getMessage() for r in caplog.records] == [
        f"{db}: skipping rows emotion-edge did not write (wrong types), from id {first} on"]
    f.close()


def test_camera_live_from_the_status_file_else_from_the_logs_last_row(tmp_path):
    db, status = tmp_path / "ev.db", Status(tmp_path / "status.json")
    write_moods(db, "happy")
    f = LogFollower(db, status.path)
    assert not f.camera_live(T0, 5.0)  # nothing read yet
    assert f.poll_log(False)
    t = f.last_row_time
    f.poll_status()  # no status file: the log decides
    assert f.camera_live(t + 5.0, 5.0) and not f.camera_live(t + 5.1, 5.0)
    status.write({"state": "running", "updated": T0})
    f.poll_status()  # the status file decides from now on, whatever the log says
    assert f.camera_live(T0 + STALE_AFTER, 5.0) and not f.camera_live(T0 + STALE_AFTER + 0.1, 5.0)
    status.write({"state": "running"})  # no time: cannot say it is live
    f.poll_status()
    assert not f.camera_live(T0, 5.0)
    status.write({"state": "stopped", "updated": T0})
    f.poll_status()
    assert not f.camera_live(T0, 5.0)
    f.close()


def test_the_models_labels_come_from_the_status_file_within_bounds(tmp_path):
    db, status = tmp_path / "ev.db", Status(tmp_path / "status.json")
    write_moods(db, "happy")
    f = LogFollower(db, status.path)

    def labels(value) -> list | None:
        status.write({"state": "running", "updated": T0, "model": {"path": "m.tflite", "labels": value}})
        f.poll_status()
        return f.labels

    assert labels(["a"]) == ["a"]
    assert labels(["x" * 64] * 64) == ["x" * 64] * 64
    for bad in ([], ["x"] * 65, ["x" * 65], [""], ["a", 1], "angry"):
        assert labels(bad) is None, bad
    f.close()


def test_rows_found_at_start_or_in_a_new_file_are_the_state_and_only_later_rows_the_backlog(tmp_path):
    """The follower starts from the latest rows, not the history; rows that come after are counted (the
    broker away); a log rewritten in place or replaced starts over the same way."""
    db = tmp_path / "ev.db"
    log = EventLog(db, LogConfig())
    record(log, "happy")  # a log of one row
    f = LogFollower(db)
    assert f.poll_log(True) and f.state(T0)["mood"] == "happy" and f.backlog.rows == 0
    for lab in ("sad", "angry", "sad"):
        record(log, lab)
    assert f.poll_log(True) and f.state(T0)["mood"] == "sad"
    assert f.backlog.changes == {"sad": 2, "angry": 1} and f.backlog.rows == 3
    log.close()
    c = sqlite3.connect(db)
    c.execute("DELETE FROM events")  # the same file rewritten: its ids start over below the last one read
    c.commit()
    c.close()
    write_moods(db, "fear")
    assert sqlite3.connect(db).execute("SELECT max(id) FROM events").fetchone()[0] == 2
    assert f.poll_log(True) and f.state(T0)["mood"] == "fear"
    new = tmp_path / "new.db"
    write_moods(new, "surprise", "neutral", "happy", "sad", "angry", "fear", "neutral", "happy")
    replace_log(new, db)
    assert f.poll_log(True) and f.state(T0)["mood"] == "happy"
    assert f.backlog.changes == {"sad": 2, "angry": 1}  # neither file's history was counted
    f.close()


def test_the_state_rounds_the_confidence_and_says_whether_a_face_is_there(tmp_path):
    """From a change row; and from a summary row when retention removed the change rows (the mood's
    name then, not its values)."""
    p = np.full(len(FER_LABELS), 0.01, np.float32)
    p[FER_LABELS.index("sad")] = 0.94
    for name, moods in (("sad", [("sad", 0.123456)]), ("none", [("sad", 0.123456), ("none", 0.0)])):
        db = tmp_path / f"{name}.db"
        with EventLog(db, LogConfig()) as log:
            for i, (lab, conf) in enumerate(moods):
                log.record(Mood(lab, conf, None if lab == "none" else p, FER_LABELS, float(i)), int(lab != "none"),
                           None, float(i))
        f = LogFollower(db)
        assert f.poll_log(False)
        st = f.state(T0)
        want = (name, 0.1235 if name == "sad" else 0.0, "ON" if name == "sad" else "OFF")
        assert (st["mood"], st["confidence"], st["face"]) == want
        f.close()
        c = sqlite3.connect(db)
        c.execute("DELETE FROM events WHERE kind = 'change'")
        c.commit()
        (conf,) = c.execute("SELECT confidence FROM events WHERE kind = 'summary'").fetchone()
        c.close()
        f = LogFollower(db)
        assert f.poll_log(False)
        st = f.state(T0)
        assert (st["mood"], st["confidence"], st["face"], st["probs"]) == (name, round(conf, 4), want[2], None)
        assert name == "none" or round(conf, 4) != round(conf, 5)  # the rounding shows
        f.close()
