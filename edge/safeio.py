"""Reading files a user or another program named: regular files only, size-capped, never blocking.

`open()` on a FIFO waits for a writer for ever, and `read()` on /dev/zero never ends; a config,
status file, model metadata or photo is always a small regular file, so anything else is refused
before a byte is read, and a file larger than its cap is refused instead of filling the memory.
"""
from __future__ import annotations

import json
import os
import secrets
import stat
from pathlib import Path
from typing import Any, Callable

CONFIG_MAX_BYTES = 1 << 20  # 1 MiB: a full config with comments is about 5 KB
STATUS_MAX_BYTES = 1 << 20  # the service writes about 2 KB
METADATA_MAX_BYTES = 1 << 20  # NAME.json beside a model is about 1 KB
IMAGE_MAX_BYTES = 64 << 20  # a photo file; the decoded size is limited separately (edge.imagecheck)


class UnsafeFileError(OSError):
    """The path is not a regular file (folder, FIFO, device, socket) or is larger than allowed."""


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def read_bytes(path: str | Path, max_bytes: int, owner: int | None = None) -> bytes:
    """The whole file; UnsafeFileError for a non-regular or too-large file, other OSErrors as raised.

    Opened with O_NONBLOCK so a FIFO cannot block the open; its type is checked on the open
    descriptor (no race with a rename), and at most max_bytes + 1 bytes are ever read. `owner`: the
    file must belong to that uid and is not followed through a link (an answer only the service may
    write, in a folder others may write to).
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags | (os.O_NOFOLLOW if owner is not None else 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafeFileError(f"{_kind(st.st_mode)}, not a regular file")
        if owner is not None and st.st_uid != owner:
            raise UnsafeFileError(f"owned by uid {st.st_uid}, not {owner}")
        if st.st_size > max_bytes:
            raise UnsafeFileError(f"{st.st_size} bytes, larger than the {_human(max_bytes)} allowed")
        chunks: list[bytes] = []
        left = max_bytes + 1  # a file that grows while we read is still capped
        while left > 0:
            b = os.read(fd, min(left, 1 << 20))
            if not b:
                break
            chunks.append(b)
            left -= len(b)
        data = b"".join(chunks)
        if len(data) > max_bytes:
            raise UnsafeFileError(f"larger than the {_human(max_bytes)} allowed")
        return data
    finally:
        os.close(fd)


def read_text(path: str | Path, max_bytes: int) -> str:
    """read_bytes() decoded as UTF-8 (UnicodeDecodeError as raised)."""
    return read_bytes(path, max_bytes).decode("utf-8")


def read_json(path: str | Path, max_bytes: int, error: Callable[[str], Exception], *, missing: str | None,
              not_regular: str, unreadable: str, not_json: str) -> Any:
    """The decoded JSON of a small file someone named, each way it can fail one line, `error(f"{path}: {text}")`:
    `missing` (None: FileNotFoundError as raised, for files that need not exist yet), `not_regular` (a
    folder, FIFO, device or file over max_bytes), `unreadable` with the OS's reason, `not_json` (not
    UTF-8, not JSON, nested too deep, a number too long to convert)."""
    try:
        raw = read_bytes(path, max_bytes)
    except FileNotFoundError:
        if missing is None:
            raise
        raise error(f"{path}: {missing}") from None
    except (UnsafeFileError, IsADirectoryError):
        raise error(f"{path}: {not_regular}") from None
    except OSError as e:
        raise error(f"{path}: {unreadable} ({e.strerror or e})") from None
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):  # ValueError: JSONDecodeError and a too long number
        raise error(f"{path}: {not_json}") from None


def _human(n: int) -> str:
    return f"{n >> 20} MiB" if n >= 1 << 20 and n % (1 << 20) == 0 else f"{n} bytes"


def write_output(path: str | Path, data: bytes, mode: int = 0o644) -> None:
    """Write `data` to a temporary file beside `path`, then rename it over `path`.

    The rename replaces the name, never follows it: a symlink planted in an output folder is not
    written through. Anything already at `path` that is not a regular file of ours (symlink,
    folder, FIFO, device, another user's file) is refused with UnsafeFileError and left as it is.
    """
    path = Path(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    if st is not None:
        if stat.S_ISLNK(st.st_mode):
            raise UnsafeFileError("a symbolic link is in the way; not replacing it")
        if not stat.S_ISREG(st.st_mode):
            raise UnsafeFileError(f"{_kind(st.st_mode)} is in the way; not replacing it")
        if st.st_uid != os.geteuid():
            raise UnsafeFileError("a file of another user is in the way; not replacing it")
    write_atomic(path, data, mode)


def write_atomic(path: str | Path, data: bytes, mode: int = 0o644, exact: bool = False) -> None:
    """Temporary file beside `path` (O_EXCL, `mode` less the umask; `exact`: `mode` itself), then
    rename over it: a reader never sees half a file and the name is replaced, never followed. The
    one atomic writer (photo outputs, status.json, calibration and its request files).

    The folder may be writable by others (the requests folder is group-writable): everything after
    the create goes through the open descriptor (fchmod, never chmod by name: a member who swapped
    the temporary name for a symlink got any file of the service's chmodded) and names are resolved
    in the folder opened once (dir_fd), so a name swapped meanwhile is at worst renamed, never followed.
    """
    path = Path(path)
    cloexec = getattr(os, "O_CLOEXEC", 0)
    dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | cloexec)
    try:
        for _ in range(100):
            tmp = f".{path.name}.{secrets.token_hex(4)}.tmp"
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | cloexec, mode, dir_fd=dfd)
                break
            except FileExistsError:
                continue
        else:
            raise UnsafeFileError("cannot create a temporary file beside it")
        try:
            with os.fdopen(fd, "wb") as f:
                if exact:
                    os.fchmod(f.fileno(), mode)
                f.write(data)
            os.replace(tmp, path.name, src_dir_fd=dfd, dst_dir_fd=dfd)
        except BaseException:
            try:
                os.unlink(tmp, dir_fd=dfd)  # unlink never follows a link
            except OSError:
                pass
            raise
    finally:
        os.close(dfd)
