"""`emotion-edge log` as another user (pi) than the service's (emotion-edge), whether the service
runs (its -wal/-shm are there) or has stopped (they are gone and the reader may not create them)."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from edge.config import LogConfig
from edge.eventlog import EventLog, read_rows, summarize

from .conftest import as_nobody
from .test_eventlog import Clock, run


def read_as_other_user(db: Path) -> tuple[int, str]:
    """(rows, error) read by a user that owns neither the log nor its folder.

    As root: a forked child that drops to nobody. Otherwise: the folder is made read-only, which
    is what a non-owner sees (it may not create the -shm file beside the log).
    """
    if os.geteuid() != 0:
        db.parent.chmod(0o555)
        try:
            return _read(db)
        finally:
            db.parent.chmod(0o755)
    n, _, err = as_nobody(lambda: "%d\n%s" % _read(db)).partition("\n")
    return int(n or -1), err


def _read(db: Path) -> tuple[int, str]:
    try:
        rows = read_rows(db)
        summarize(db)
        return len(rows), ""
    except Exception as e:  # noqa: BLE001 - reported to the parent
        return -1, f"{type(e).__name__}: {e}"


@pytest.fixture
def shared_dir():
    """A folder every user can enter (pytest's tmp_path is 0700 for its owner only), 0755 like StateDirectory."""
    d = Path(tempfile.mkdtemp(prefix="emotion-edge-log-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_another_user_reads_the_log_while_the_service_runs_and_after_it_stopped(shared_dir):
    db = shared_dir / "emotion-edge.db"
    clock = Clock()
    log = EventLog(db, LogConfig(summary_interval=2.0, commit_interval=0.1), clock=clock)
    run(log, clock, [(3, "happy", 1), (3, "sad", 1)])
    assert log.flush()
    assert Path(f"{db}-wal").exists()  # running: WAL mode, side files present
    n_running, err = read_as_other_user(db)
    assert n_running > 0, err
    log.close()
    assert not Path(f"{db}-wal").exists() and not Path(f"{db}-shm").exists()  # stopped: side files gone
    n_stopped, err = read_as_other_user(db)
    assert err == "" and n_stopped >= n_running, err
    assert not Path(f"{db}-shm").exists()  # the reader left nothing behind
