"""The request files through which `emotion-edge calibrate` asks the running service for a calibration.

A request is a small JSON file in the service's state directory (`requests/calibrate.request`), the
answer another (`requests/calibrate.result`), so the camera is never opened twice and no socket is
needed.
"""
from __future__ import annotations

import json
import os
import secrets
import stat
import time
from pathlib import Path
from typing import Any, Callable

from edge.safeio import read_bytes, write_atomic

REQUESTS_DIR = "requests"
REQUEST_NAME = "calibrate.request"
RESULT_NAME = "calibrate.result"
MAX_REQUEST_BYTES = 4096


def requests_dir(state_dir: Path) -> Path:
    return Path(state_dir) / REQUESTS_DIR


def ensure_requests_dir(state_dir: Path) -> Path:
    """The service's drop box: group-writable and setgid, so members of its group may ask."""
    d = requests_dir(state_dir)
    d.mkdir(parents=True, exist_ok=True)
    try:
        os.chmod(d, 0o2770)
    except OSError:
        try:  # the unit's RestrictSUIDSGID=yes refuses the setgid bit: install.sh makes the folder with it
            if not os.stat(d).st_mode & stat.S_ISGID:
                os.chmod(d, 0o770)
        except OSError:
            pass  # not ours (a test, or a read-only state dir): requests still work for the owner
    return d


def write_json_atomic(path: Path, data: dict[str, Any], mode: int = 0o660) -> None:
    write_atomic(path, (json.dumps(data) + "\n").encode("utf-8"), mode, exact=True)


def read_json_small(path: Path, owner: int | None = None) -> dict[str, Any] | None:
    """A small JSON object from a regular file, or None if absent, not regular, too big, not JSON or
    (with `owner`) not that uid's."""
    try:
        data = json.loads(read_bytes(path, MAX_REQUEST_BYTES, owner).decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def new_request(state_dir: Path, action: str, seconds: float, as_label: str = "") -> str:
    """Drop a request for the service (`as_label`: teach that expression, not the resting face); returns
    its id. PermissionError when not allowed."""
    rid = secrets.token_hex(6)
    d = requests_dir(state_dir)
    if not d.is_dir():
        raise FileNotFoundError(f"{d} does not exist (is the service running?)")
    req = {"id": rid, "action": action, "seconds": float(seconds), "time": time.time(), "uid": os.getuid()}
    if as_label:
        req["as"] = as_label
    target = d / REQUEST_NAME
    if os.path.isdir(target):  # write_atomic's rename would fail with "Is a directory"
        raise IsADirectoryError(f"{target} is a folder, not a request; remove it (sudo rm -r {target}) and try again")
    write_json_atomic(target, req, 0o644)  # the service reads it whatever group the folder gives it
    return rid


def wait_result(state_dir: Path, rid: str, timeout: float, on_state: Callable[[str], None] | None = None,
                poll: float = 0.2) -> dict[str, Any] | None:
    """The service's final result for request `rid`, or None on time-out. Only an answer written by the
    service counts: a file owned by the state folder's owner (another member of the group may write
    into the requests folder, but not as the service)."""
    path = requests_dir(state_dir) / RESULT_NAME
    service_uid = os.stat(state_dir).st_uid
    end = time.monotonic() + timeout
    seen = ""
    while time.monotonic() < end:
        r = read_json_small(path, owner=service_uid)
        if r and r.get("id") == rid:
            st = str(r.get("state", ""))
            if st != seen and on_state is not None:
                on_state(st)
            seen = st
            if st in ("done", "failed", "reset"):
                return r
        time.sleep(poll)
    return None
