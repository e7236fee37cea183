"""ResilientSource lifecycle cases the fault tests leave out: close() while a reopen is under way,
and the reader giving up for good (what the loop then sees)."""
from __future__ import annotations

import threading
import time

import pytest

from edge.errors import SourceStalled
from edge.resilient import ResilientSource

from .test_resilient import FAST, FaultyCamera


def test_close_during_a_reopen_closes_the_device_that_opens_late():
    opening, release = threading.Event(), threading.Event()
    late: list[FaultyCamera] = []

    def slow_open():
        opening.set()
        release.wait(5)  # the driver takes its time; meanwhile the service stops
        cam = FaultyCamera()
        late.append(cam)
        return cam

    first = FaultyCamera("raise", after=2)
    src = ResilientSource(slow_open, first=first, **FAST)
    assert opening.wait(5), "the reader never tried to reopen"
    t0 = time.monotonic()
    src.close()
    assert time.monotonic() - t0 < 2.0, "close must not wait for the slow open"
    release.set()
    src._thread.join(5)
    assert not src.alive
    assert len(late) == 1 and late[0].closed == 1, "the device opened after close() must be closed, not leaked"
    assert first.closed == 1


def test_after_giving_up_reads_end_and_the_reader_stops():
    attempts = []

    def never():
        attempts.append(time.monotonic())
        raise OSError(19, "No such device")

    src = ResilientSource(never, first=FaultyCamera("oserror", after=1), poll=0.05, stall_after=0.1,
                          backoff=(0.02,), give_up_after=0.4)
    end = time.monotonic() + 5
    while src.alive and time.monotonic() < end:
        try:
            src.read()
        except Exception:
            pass
    assert src.gave_up and not src.alive
    n = len(attempts)
    time.sleep(0.2)
    assert len(attempts) == n, "no more reopen attempts after giving up"
    with pytest.raises(SourceStalled):  # the loop sees stalls, sends no watchdog pings: systemd restarts us
        src.read()
    src.close()
    assert src.read() is None
