"""Issue 29 F: write_atomic in a folder others may write (the group-writable requests folder) never
changes a file through a name a member swapped: modes are set on the open descriptor. And read_json,
the calibration's and learned resting face's reader: each failure one line in the caller's words."""
from __future__ import annotations

import os
import stat
import threading
import time
from pathlib import Path

import pytest

from edge.safeio import read_json, write_atomic


def _swapper(folder: Path, victim: Path, stop: threading.Event, swaps: list[int]) -> None:
    """A group member: replace every temporary file that appears with a symlink to the victim."""
    while not stop.is_set():
        try:
            names = os.listdir(folder)
        except OSError:
            continue
        for name in names:
            if name.endswith(".tmp"):
                p = folder / name
                try:
                    os.unlink(p)
                    os.symlink(victim, p)
                    swaps[0] += 1
                except OSError:
                    pass


def test_a_temporary_name_swapped_for_a_symlink_never_gets_its_target_chmodded(tmp_path):
    folder = tmp_path / "requests"
    folder.mkdir(mode=0o2770)
    victim = tmp_path / "emotion-edge.db"
    victim.write_bytes(b"the log")
    victim.chmod(0o600)
    stop, swaps = threading.Event(), [0]
    t = threading.Thread(target=_swapper, args=(folder, victim, stop, swaps), daemon=True)
    t.start()
    data = b"x" * (1 << 20)  # a longer write: a wider window between create and chmod
    modes = set()
    deadline = time.monotonic() + 20
    try:
        while swaps[0] < 400 and time.monotonic() < deadline:
            try:
                write_atomic(folder / "calibrate.result", data, 0o660, exact=True)
            except OSError:  # the member took the temporary file away: that write is lost, nothing else
                pass
            modes.add(stat.S_IMODE(os.stat(victim).st_mode))
            if len(modes) > 1:
                break
    finally:
        stop.set()
        t.join(5)
    assert swaps[0] > 0  # the race was really run
    assert modes == {0o600}
    assert victim.read_bytes() == b"the log"


def test_exact_mode_ignores_the_umask_and_plain_mode_keeps_it(tmp_path):
    old = os.umask(0o077)
    try:
        write_atomic(tmp_path / "a", b"1", 0o660, exact=True)
        write_atomic(tmp_path / "b", b"2", 0o644)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == 0o660
    assert stat.S_IMODE((tmp_path / "b").stat().st_mode) == 0o600
    assert (tmp_path / "a").read_bytes() == b"1" and sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]


def test_a_symlink_at_the_final_name_is_replaced_not_followed(tmp_path):
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep")
    (tmp_path / "out").symlink_to(victim)
    write_atomic(tmp_path / "out", b"new", 0o644, exact=True)
    assert victim.read_bytes() == b"keep" and not (tmp_path / "out").is_symlink()
    assert (tmp_path / "out").read_bytes() == b"new"


def test_read_json_names_each_failure_in_one_line_through_the_callers_error(tmp_path):
    texts = dict(not_regular="not regular", unreadable="cannot read", not_json="not JSON")
    good = tmp_path / "good.json"
    good.write_text('{"a": [1, 2]}')
    assert read_json(good, 64, ValueError, missing="gone", **texts) == {"a": [1, 2]}
    big = tmp_path / "big.json"
    big.write_text("[" + "0," * 40 + "0]")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    cases = {tmp_path / "none.json": "gone", big: "not regular", fifo: "not regular", tmp_path: "not regular",
             blocker / "x.json": "cannot read (Not a directory)"}
    for name, data in (("utf8", b"\xff{}"), ("syntax", b"{nope"), ("deep", b"[" * 100000 + b"]" * 100000),
                       ("long_number", b"1" * 5000)):
        (tmp_path / name).write_bytes(data)
        cases[tmp_path / name] = "not JSON"
    for path, want in cases.items():
        with pytest.raises(LookupError) as e:  # the caller's class, whatever it is
            read_json(path, 64 if path == big else 1 << 20, LookupError, missing="gone", **texts)
        assert str(e.value) == f"{path}: {want}", path
    with pytest.raises(FileNotFoundError):  # missing=None: absence is the caller's to handle
        read_json(tmp_path / "none.json", 64, LookupError, missing=None, **texts)
