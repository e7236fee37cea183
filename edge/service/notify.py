"""sd_notify without extra packages: a few datagrams to $NOTIFY_SOCKET so systemd knows our state.

Type=notify units use READY=1 (start-up finished), WATCHDOG=1 (still alive), STATUS= (shown by
`systemctl status`), RELOADING=1 / STOPPING=1. Outside systemd every call is a cheap no-op.
"""
from __future__ import annotations

import logging
import os
import socket
import time

log = logging.getLogger("edge.notify")  # the name its lines have always carried (edge/notify.py before)


def socket_address(value: str | None) -> str | bytes | None:
    """$NOTIFY_SOCKET as a connectable address; '@name' is a Linux abstract socket (leading NUL)."""
    if not value:
        return None
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    return None  # vsock:… and other schemes are not used on a Pi


def watchdog_usec(env: dict[str, str] | None = None, pid: int | None = None) -> int | None:
    """WATCHDOG_USEC if the watchdog is meant for this process (WATCHDOG_PID unset or ours), else None."""
    env = os.environ if env is None else env
    raw = env.get("WATCHDOG_USEC", "")
    try:
        usec = int(raw)
    except ValueError:
        return None
    if usec <= 0:
        return None
    wpid = env.get("WATCHDOG_PID")
    if wpid:
        try:
            if int(wpid) != (os.getpid() if pid is None else pid):
                return None
        except ValueError:
            return None
    return usec


class Notifier:
    """Sends sd_notify messages; a no-op without NOTIFY_SOCKET. Never raises (a lost ping is not fatal)."""

    def __init__(self, address: str | None = None, watchdog: int | None = None) -> None:
        self.address = socket_address(address)
        self.watchdog_usec = watchdog
        self._sock: socket.socket | None = None
        self._warned = False
        self._stopping = False
        if self.address is not None:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "Notifier":
        env = os.environ if env is None else env
        return cls(env.get("NOTIFY_SOCKET"), watchdog_usec(env))

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between WATCHDOG=1 pings: half the systemd timeout, as sd_watchdog_enabled(3) advises."""
        return self.watchdog_usec / 2e6 if self.watchdog_usec else None

    def send(self, *fields: str) -> bool:
        """Send KEY=VALUE lines as one datagram; False when disabled or the send failed."""
        if self._sock is None:
            return False
        try:
            self._sock.sendto("\n".join(fields).encode(), self.address)
            return True
        except OSError as e:
            if not self._warned:  # once, not per frame
                log.warning("cannot notify systemd at %s: %s", self.address, e)
                self._warned = True
            return False

    def ready(self, status: str | None = None) -> bool:
        fields = ["READY=1", f"MAINPID={os.getpid()}"]
        if status:
            fields.append(f"STATUS={status}")
        return self.send(*fields)

    def watchdog(self) -> bool:
        """No pings once STOPPING=1 went out (the stop signal's handler may run in the middle of a frame)."""
        if self._stopping:
            return False
        return self.send("WATCHDOG=1")

    def status(self, text: str) -> bool:
        return self.send(f"STATUS={text}")

    def reloading(self) -> bool:
        # Type=notify-reload (systemd 253+) wants MONOTONIC_USEC with RELOADING=1; older ones ignore it.
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.send("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def stopping(self) -> bool:
        self._stopping = True
        return self.send("STOPPING=1")

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    def __enter__(self) -> "Notifier":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
