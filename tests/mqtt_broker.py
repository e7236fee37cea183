"""A real Mosquitto broker on a free 127.0.0.1 port, and a paho subscriber that records everything.

Tests skip with the reason when mosquitto (Debian package `mosquitto`) or paho-mqtt 2.x is missing;
.ci/run installs mosquitto.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable

import pytest

MOSQUITTO = shutil.which("mosquitto") or next(
    (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.access(p, os.X_OK)), None)


def need_broker() -> None:
    if MOSQUITTO is None:
        pytest.skip("mosquitto is not installed (apt-get install mosquitto; .ci/run does)")
    try:
        import paho.mqtt
    except ImportError:
        pytest.skip("paho-mqtt is not installed (pip install -e .[mqtt])")
    if int(paho.mqtt.__version__.split(".")[0]) < 2:
        pytest.skip(f"paho-mqtt {paho.mqtt.__version__} is not 2.x")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(pred: Callable[[], Any], timeout: float = 10.0, step: float = 0.05, what: str = "condition") -> Any:
    end = time.monotonic() + timeout
    while True:
        got = pred()
        if got:
            return got
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(step)


class Broker:
    """mosquitto -c CONF in the foreground of a child process; restartable on the same port."""

    def __init__(self, workdir: Path, extra: str = "", anonymous: bool = True) -> None:
        need_broker()
        self.dir = workdir
        self.port = free_port()
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n{extra}"
            f"allow_anonymous {'true' if anonymous else 'false'}\n"
            "persistence false\nuser root\nlog_dest stderr\nlog_type error\nlog_type warning\n")
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Broker":
        self.log = open(self.dir / "mosquitto.log", "ab")
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=self.log, stderr=subprocess.STDOUT)
        wait_until(self._listening, 10, what=f"mosquitto on port {self.port}")
        return self

    def _listening(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"mosquitto exited: {(self.dir / 'mosquitto.log').read_text(errors='replace')}")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if getattr(self, "log", None):
            self.log.close()


class Sub:
    """Subscribes to '#' (retained messages included) and keeps every message in order."""

    def __init__(self, port: int, *, tls_ca: Path | None = None, user: tuple[str, str] | None = None) -> None:
        import paho.mqtt.client as mqtt

        self.messages: list[tuple[str, str, bool]] = []
        self._lock = threading.Lock()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-sub-{time.monotonic_ns()}")
        if tls_ca:
            self.c.tls_set(ca_certs=str(tls_ca))
        if user:
            self.c.username_pw_set(*user)
        self.c.on_connect = lambda c, *_: c.subscribe("#", qos=1)
        self.c.on_message = self._on_message
        self.c.reconnect_delay_set(1, 1)
        self.c.connect("127.0.0.1", port, 30)
        self.c.loop_start()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        with self._lock:
            self.messages.append((msg.topic, msg.payload.decode(), bool(msg.retain)))

    def on(self, topic: str) -> list[str]:
        with self._lock:
            return [p for t, p, _ in self.messages if t == topic]

    def last(self, topic: str) -> str | None:
        got = self.on(topic)
        return got[-1] if got else None

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def make_test_ca(d: Path) -> tuple[Path, Path, Path]:
    """openssl: a CA and a server certificate for 127.0.0.1/localhost signed by it -> (ca, cert, key)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    ca_key, ca, key, csr, cert = (d / n for n in ("ca.key", "ca.pem", "server.key", "server.csr", "server.pem"))
    ext = d / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n")

    def ssl(*a: str) -> None:
        subprocess.run(["openssl", *a], check=True, capture_output=True, timeout=60)

    ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca),
        "-days", "2", "-subj", "/CN=emotion-edge test CA")
    ssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", "/CN=127.0.0.1")
    ssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
        "-out", str(cert), "-days", "2", "-extfile", str(ext))
    return ca, cert, key


class RawBroker:
    """A scripted 'broker' on a 127.0.0.1 socket for what Mosquitto never does: answer one CONNECT with
    `connack` (MQTT 3.1.1 bytes), then send `then` (a generator of byte chunks) until the client hangs up.
    `sent` counts the bytes of `then` the client took before closing."""

    def __init__(self, connack: bytes, then: Callable[[], Any] | None = None) -> None:
        self.srv = socket.socket()
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(4)
        self.port = self.srv.getsockname()[1]
        self.connack, self.then = connack, then
        self.sent = 0
        self.closed = threading.Event()
        self.connects = 0
        self._t = threading.Thread(target=self._serve, daemon=True)
        self._t.start()

    def _serve(self) -> None:
        try:
            conn, _ = self.srv.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(10)
            try:
                conn.recv(4096)  # the CONNECT
                self.connects += 1
                conn.sendall(self.connack)
                for chunk in (self.then() if self.then else ()):
                    conn.sendall(chunk)
                    self.sent += len(chunk)
                conn.recv(1)  # wait for the client to hang up
            except OSError:
                pass
        self.closed.set()

    def close(self) -> None:
        self.srv.close()
