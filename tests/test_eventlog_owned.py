"""Issue 29 A and I: the service's own default log (log.db empty, in its state folder) never stops the
light: a damaged header is moved aside and a fresh log started; a file the user named is still refused
untouched. A log created as root is handed to the state folder's owner; `status` hears of dropped rows."""
from __future__ import annotations

import logging
import os
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from edge.service import notices
from edge.config import LogConfig, default_db_path
from edge.contract import FER_LABELS
from edge.eventlog import EventLog, NotOurLog, read_rows
from edge.types import Mood


def _mood(label: str) -> Mood:
    probs = np.full(7, 0.05, dtype=np.float32)
    probs[FER_LABELS.index(label)] = 0.7
    return Mood(label, 0.7, probs, FER_LABELS, 0.0)


@pytest.fixture
def state(tmp_path, monkeypatch) -> Path:
    """The service's state folder (systemd's STATE_DIRECTORY) and a clean set of notes."""
    d = tmp_path / "state"
    d.mkdir()
    monkeypatch.setenv("STATE_DIRECTORY", str(d))
    notices.reset()
    yield d
    notices.reset()


def _log_with_rows(db: Path, n: int = 28) -> None:
    with EventLog(db, LogConfig(summary_interval=3600)) as log:
        for i in range(n):
            log.record(_mood(("happy", "sad")[i % 2]), 1, None, i * 0.01)


def _zero_first_page(db: Path) -> None:
    with open(db, "r+b") as f:
        f.write(b"\0" * 4096)


def _garbage_start(db: Path) -> None:
    with open(db, "r+b") as f:
        f.write(b"#!garbage#!")


def _flip_application_id(db: Path) -> None:
    with open(db, "r+b") as f:
        f.seek(68)
        b = f.read(4)
        f.seek(68)
        f.write(bytes(x ^ 0xFF for x in b))


def _cut_under_72(db: Path) -> None:
    os.truncate(db, 60)
    for sfx in ("-wal", "-shm"):
        Path(str(db) + sfx).unlink(missing_ok=True)


DAMAGE = {"zeroed first page": _zero_first_page, "garbage first bytes": _garbage_start,
          "application id flipped": _flip_application_id, "cut under 72 bytes": _cut_under_72}


@pytest.mark.parametrize("damage", DAMAGE)
def test_damaged_header_of_the_default_log_is_moved_aside_and_a_fresh_log_started(state, damage, caplog):
    db = default_db_path()
    assert db.parent == state
    _log_with_rows(db)
    DAMAGE[damage](db)
    damaged = db.read_bytes()
    with caplog.at_level(logging.WARNING, logger="edge.eventlog"):
        with EventLog(db, LogConfig()) as log:  # log.db empty: the service's own log
            log.record(_mood("happy"), 1, None, 0.0)
    assert [r.mood for r in read_rows(db)] == ["happy", "happy"]  # a fresh log, written
    aside = sorted(state.glob("emotion-edge.db.corrupt-*[0-9]"))
    assert len(aside) == 1 and aside[0].read_bytes() == damaged  # kept as it was, never overwritten
    lines = [r.getMessage() for r in caplog.records if "moved it aside" in r.getMessage()]
    assert len(lines) == 1 and "header is damaged" in lines[0] and "\n" not in lines[0]
    assert "moved aside to emotion-edge.db.corrupt-" in notices.current()["log_moved"]["message"]  # for `status`


def test_rows_of_a_log_with_a_flipped_id_stay_readable_in_the_file_moved_aside(state):
    db = default_db_path()
    _log_with_rows(db, 28)
    n = len(read_rows(db))
    _flip_application_id(db)
    EventLog(db, LogConfig()).close()
    aside = next(state.glob("emotion-edge.db.corrupt-*[0-9]"))
    c = sqlite3.connect(f"file:{aside}?mode=ro", uri=True)
    assert c.execute("SELECT count(*) FROM events").fetchone()[0] == n
    c.close()


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_log_the_user_named_is_still_refused_untouched(state, damage):
    """log.db / --db naming the very same file: the user's choice, so not ours to move."""
    db = default_db_path()
    _log_with_rows(db)
    DAMAGE[damage](db)
    before = db.read_bytes()
    with pytest.raises(NotOurLog, match="left untouched"):
        EventLog(db, LogConfig(db=str(db)))
    assert db.read_bytes() == before and not list(state.glob("*.corrupt-*"))


def test_another_file_elsewhere_is_refused_untouched(state, tmp_path):
    db = tmp_path / "elsewhere.db"
    db.write_text("my notes\n")
    with pytest.raises(NotOurLog):
        EventLog(db, LogConfig())
    assert db.read_text() == "my notes\n"


def test_a_folder_at_the_default_path_is_not_moved(state):
    db = default_db_path()
    db.mkdir()
    with pytest.raises(NotOurLog, match="not a regular file"):
        EventLog(db, LogConfig())
    assert db.is_dir()


# -- I: created as root ---------------------------------------------------------------------------

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root (CI runs as root)")


@needs_root
def test_a_log_created_as_root_belongs_to_the_state_folders_owner(state):
    os.chown(state, 4321, 4322)
    db = default_db_path()
    with EventLog(db, LogConfig()) as log:
        log.record(_mood("happy"), 1, None, 0.0)
        log.flush()
        owners = {p.name: (p.stat().st_uid, p.stat().st_gid) for p in state.iterdir()}
    assert owners["emotion-edge.db"] == (4321, 4322)
    assert owners["emotion-edge.db-wal"] == (4321, 4322)  # SQLite follows the database file's owner


@needs_root
def test_a_root_owned_log_is_handed_back_when_root_opens_it_again(state):
    db = default_db_path()
    _log_with_rows(db)  # the state folder still root's: an older version's root-owned log
    assert db.stat().st_uid == 0
    os.chown(state, 4321, 4322)
    n = len(read_rows(db))
    EventLog(db, LogConfig()).close()
    assert (db.stat().st_uid, db.stat().st_gid) == (4321, 4322)
    assert len(read_rows(db)) == n  # the rows kept


@needs_root
def test_a_folder_of_roots_own_is_left_alone(tmp_path):
    db = tmp_path / "ev.db"
    EventLog(db, LogConfig()).close()
    assert db.stat().st_uid == 0


def test_status_hears_when_rows_cannot_be_written(state, tmp_path):
    blocker = tmp_path / "file-not-dir"
    blocker.write_text("x")
    with EventLog(blocker / "ev.db", LogConfig(commit_interval=0.05)) as log:
        for i in range(5):
            log.record(_mood(("happy", "sad")[i % 2]), 1, None, i * 0.1)
        note = notices.current()["log"]["message"]
    assert "cannot write" in note and "rows waiting" in note and "dropped" in note


def _as_user(uid: int, fn) -> int:
    """Run fn() in a forked child as `uid` (the service's user); its exit status (0: fn returned)."""
    pid = os.fork()
    if pid == 0:  # child
        code = 1
        try:
            os.setgid(uid)
            os.setuid(uid)
            fn()
            code = 0
        except BaseException:
            import traceback

            traceback.print_exc()
        finally:
            os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


@pytest.fixture
def open_state(monkeypatch):
    """A state folder another user can reach (pytest's tmp_path lies under a folder only root may enter)."""
    import shutil
    import tempfile

    d = Path(tempfile.mkdtemp(prefix="emotion-edge-state-"))
    d.chmod(0o755)
    monkeypatch.setenv("STATE_DIRECTORY", str(d))
    notices.reset()
    yield d
    notices.reset()
    shutil.rmtree(d)


@needs_root
def test_the_service_takes_over_a_log_root_made_and_keeps_its_rows(open_state):
    """I: `sudo emotion-edge run` before the service ever logged left a root-owned log (an older version, or
    the folder still root's then): the service dropped every row, start after start."""
    state = open_state
    db = default_db_path()
    _log_with_rows(db)  # as root, while the state folder is root's: a root-owned log
    n = len(read_rows(db))
    assert db.stat().st_uid == 0
    os.chown(state, 4321, 4321)

    def service() -> None:
        with EventLog(db, LogConfig()) as log:
            log.record(_mood("surprise"), 1, None, 0.0)
            assert log.flush() and not log.failing

    assert _as_user(4321, service) == 0
    assert db.stat().st_uid == 4321
    rows = read_rows(db)
    assert len(rows) == n + 2 and rows[-1].mood == "surprise"  # the old rows kept, the new ones written
    assert not list(state.glob("*.corrupt-*")) and not list(state.glob(".*.tmp"))
