"""A real AF_UNIX datagram socket standing in for systemd's notify socket (shared by service tests)."""
from __future__ import annotations

import socket
import threading
import time
from pathlib import Path


class Collector:
    """A real AF_UNIX datagram socket standing in for systemd's notify socket; records (time, message)."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.05)
        self.messages: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            self.messages.append((time.monotonic(), data.decode()))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()

    def times(self, first_line: str) -> list[float]:
        return [t for t, m in self.messages if m.split("\n")[0] == first_line]

    def wait_for(self, first_line: str, count: int = 1, timeout: float = 20.0, after: float = 0.0) -> float:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            ts = [t for t in self.times(first_line) if t >= after]
            if len(ts) >= count:
                return ts[count - 1]
            time.sleep(0.02)
        raise AssertionError(f"no {count}x {first_line!r} within {timeout}s; got {[m for _, m in self.messages][-10:]}")

    def count(self, first_line: str, after: float = 0.0) -> int:
        return sum(1 for t in self.times(first_line) if t >= after)
