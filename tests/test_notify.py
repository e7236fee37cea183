"""sd_notify over a real AF_UNIX datagram socket, WATCHDOG_USEC parsing, journald log prefixes."""
from __future__ import annotations

import io
import logging
import os
import socket
import time

import pytest

from edge.service import logsetup
from edge.service.logsetup import JournalFormatter, priority, setup_logging, under_journald
from edge.service.notify import Notifier, socket_address, watchdog_usec


@pytest.fixture
def notify_socket(tmp_path):
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(2.0)
    yield path, sock
    sock.close()


def recv(sock: socket.socket) -> str:
    return sock.recv(4096).decode()


def test_ready_watchdog_status_reach_the_socket(notify_socket):
    path, sock = notify_socket
    with Notifier(path, watchdog=4_000_000) as n:
        assert n.enabled
        assert n.watchdog_interval == pytest.approx(2.0)
        assert n.ready(status="up")
        msg = recv(sock).split("\n")
        assert msg[0] == "READY=1" and f"MAINPID={os.getpid()}" in msg and "STATUS=up" in msg
        assert n.watchdog() and recv(sock) == "WATCHDOG=1"
        assert n.status("12.1 fps, mood happy (0.82)") and recv(sock) == "STATUS=12.1 fps, mood happy (0.82)"
        assert n.stopping() and recv(sock) == "STOPPING=1"
        assert n.reloading()
        lines = recv(sock).split("\n")
        assert lines[0] == "RELOADING=1" and lines[1].startswith("MONOTONIC_USEC=") and int(lines[1].split("=")[1]) > 0
    n.close()  # safe twice
    assert not n.enabled and not n.watchdog()


def test_abstract_socket_address(tmp_path):
    name = f"emotion-edge-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(b"\0" + name.encode())
    sock.settimeout(2.0)
    try:
        with Notifier.from_env({"NOTIFY_SOCKET": "@" + name}) as n:
            assert n.ready()
            assert recv(sock).startswith("READY=1")
    finally:
        sock.close()
    assert socket_address("@x") == b"\0x"
    assert socket_address("/run/systemd/notify") == "/run/systemd/notify"
    assert socket_address("") is None and socket_address("vsock:2:1234") is None


def test_no_socket_is_a_no_op():
    n = Notifier.from_env({})
    assert not n.enabled
    assert n.watchdog_interval is None
    assert n.ready() is False and n.watchdog() is False and n.status("x") is False
    n.close()


def test_send_failure_is_reported_once_not_raised(tmp_path, caplog):
    gone = str(tmp_path / "gone.sock")  # nobody listens: sendto fails with ENOENT
    with Notifier(gone) as n, caplog.at_level(logging.WARNING):
        assert n.watchdog() is False
        assert n.watchdog() is False
    assert sum("cannot notify systemd" in r.message for r in caplog.records) == 1


@pytest.mark.parametrize("env,expected", [
    ({"WATCHDOG_USEC": "30000000"}, 30_000_000),
    ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 30_000_000),
    ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),   # meant for another process
    ({"WATCHDOG_USEC": "0"}, None),
    ({"WATCHDOG_USEC": "soon"}, None),
    ({"WATCHDOG_USEC": "5", "WATCHDOG_PID": "x"}, None),
    ({}, None),
])
def test_watchdog_usec(env, expected):
    assert watchdog_usec(env) == expected


# ------------------------------------------------------------------ logging
def test_priority_mapping():
    assert [priority(lv) for lv in (logging.CRITICAL, logging.ERROR, logging.WARNING, logging.INFO, logging.DEBUG)] == [2, 3, 4, 6, 7]
    assert priority(logging.INFO + 5) == 6 and priority(1) == 7


def test_journal_prefix_on_every_line():
    rec = logging.LogRecord("x", logging.ERROR, __file__, 1, "camera lost\nsecond line", None, None)
    assert JournalFormatter("%(message)s").format(rec) == "<3>camera lost\n<3>second line"


def test_a_newline_in_an_argument_cannot_forge_a_journal_line():
    evil = "x.tflite\n<0>emotion-edge: all good"
    rec = logging.LogRecord("x", logging.WARNING, __file__, 1, "model %s refused after %.1f s (%d tries)", (evil, 2.25, 3), None)
    assert JournalFormatter("%(message)s").format(rec) == "<4>model x.tflite\\x0a<0>emotion-edge: all good refused after 2.2 s (3 tries)"
    assert rec.args == (evil, 2.25, 3)  # the record itself is left as it was
    plain = logsetup.OneLineArgsFormatter("%(levelname)s %(message)s").format(
        logging.LogRecord("x", logging.ERROR, __file__, 1, "cannot read %(path)s", ({"path": "a\rb\x1b[2J"},), None))
    assert plain == "ERROR cannot read a\\x0db\\x1b[2J"


def test_under_journald_matches_the_stream_inode(tmp_path):
    f = open(tmp_path / "log", "w")
    try:
        st = os.fstat(f.fileno())
        assert under_journald(f, {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
        assert not under_journald(f, {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino + 1}"})
        assert not under_journald(f, {})
        assert not under_journald(io.StringIO(), {"JOURNAL_STREAM": "1:2"})
        assert not under_journald(f, {"JOURNAL_STREAM": "garbage"})
    finally:
        f.close()


def test_setup_logging_plain_and_journal():
    root = logging.getLogger()
    saved = root.level
    try:
        out = io.StringIO()
        setup_logging("INFO", stream=out, journal=True)
        logging.getLogger("emotion-edge").warning("model %s refused", "x.tflite")
        logging.getLogger("emotion-edge").debug("hidden")
        assert out.getvalue() == "<4>model x.tflite refused\n"
        out2 = io.StringIO()
        h = setup_logging("INFO", stream=out2, journal=False)  # replaces the first handler, no duplicates
        logging.getLogger("emotion-edge").info("ready")
        assert out.getvalue() == "<4>model x.tflite refused\n"
        assert out2.getvalue().rstrip().endswith("INFO emotion-edge: ready")
        assert sum(x.get_name() == "emotion-edge" for x in root.handlers) == 1
    finally:
        root.removeHandler(h)
        root.setLevel(saved)


def test_no_watchdog_ping_after_stopping(tmp_path):
    from .notify_socket import Collector

    c = Collector(tmp_path / "n.sock")
    try:
        with Notifier(c.path, watchdog=1_000_000) as n:
            assert n.watchdog() is True
            n.stopping()
            assert n.watchdog() is False
        time.sleep(0.1)
        assert [m for _, m in c.messages] == ["WATCHDOG=1", "STOPPING=1"]
    finally:
        c.close()
