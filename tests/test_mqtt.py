"""`emotion-edge publish` against a real Mosquitto broker on 127.0.0.1: discovery, states,
availability and last will, a broker restart, a refused login, TLS with a test CA."""
from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from edge.config import LogConfig, MqttConfig
from edge.contract import FER_LABELS
from edge.eventlog import EventLog
from edge.history import read_rows
from edge.types import Mood

from tests.mqtt_broker import Broker, Sub, make_test_ca, need_broker, wait_until

REPO = Path(__file__).resolve().parents[1]
CLIP = REPO / "tests" / "fixtures" / "clip.mp4"
DEV = "testpi"
BASE = f"emotion-edge/{DEV}"
STATE, AVAIL, OUTAGE = f"{BASE}/state", f"{BASE}/availability", f"{BASE}/outage"
ENTITIES = {"sensor/testpi/mood", "sensor/testpi/confidence", "sensor/testpi/valence", "sensor/testpi/arousal",
            "binary_sensor/testpi/face", "sensor/testpi/fps"}


def mood(label: str, p: float = 0.8) -> Mood:
    if label == "none":
        return Mood("none", 0.0, None, FER_LABELS, 0.0)
    probs = np.full(7, (1 - p) / 6, dtype=np.float32)
    probs[FER_LABELS.index(label)] = p
    return Mood(label, p, probs, FER_LABELS, 0.0)


def write_moods(db: Path, *labels: str) -> None:
    """One change row per label, committed (as the service does within 0.5 s)."""
    with EventLog(db, LogConfig()) as log:
        for i, lab in enumerate(labels):
            log.record(mood(lab), 0 if lab == "none" else 1, None, float(i))


@pytest.fixture
def broker(tmp_path):
    b = Broker(tmp_path).start()
    yield b
    b.stop()


@pytest.fixture
def subs():
    made: list[Sub] = []

    def make(port: int, **kw) -> Sub:
        s = Sub(port, **kw)
        made.append(s)
        return s
    yield make
    for s in made:
        s.close()


def config(tmp_path: Path, port: int, **mqtt: object) -> Path:
    lines = [f'host = "127.0.0.1"', f"port = {port}", f'device_id = "{DEV}"']
    for k, v in mqtt.items():
        lines.append(f"{k} = {json.dumps(v)}")
    p = tmp_path / "config.toml"
    p.write_text("[mqtt]\n" + "\n".join(lines) + "\n")
    return p


class Publisher:
    """`python -m edge.cli -v publish` as a child process (so it can be killed like the real unit)."""

    def __init__(self, cfg: Path, db: Path, status: Path | None = None) -> None:
        self.err = cfg.parent / "publish.err"
        args = [sys.executable, "-m", "edge.cli", "-v", "--config", str(cfg), "publish", "--db", str(db)]
        if status is not None:
            args += ["--status-file", str(status)]
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        env.pop("STATE_DIRECTORY", None)
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=open(self.err, "wb"), env=env)

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(15)

    def kill9(self) -> None:
        self.proc.kill()
        self.proc.wait(10)


@pytest.fixture
def publishers():
    made: list[Publisher] = []

    def make(*a, **kw) -> Publisher:
        p = Publisher(*a, **kw)
        made.append(p)
        return p
    yield make
    for p in made:
        if p.proc.poll() is None:
            p.kill9()


def state_of(sub: Sub) -> dict | None:
    last = sub.last(STATE)
    return json.loads(last) if last else None


def test_discovery_state_latency_and_clean_stop(tmp_path, broker, subs, publishers):
    db = tmp_path / "ev.db"
    write_moods(db, "happy")
    status = tmp_path / "status.json"
    status.write_text(json.dumps({"state": "running", "updated": time.time(), "fps": 11.96}))
    pub = publishers(config(tmp_path, broker.port), db, status)
    sub = subs(broker.port)
    wait_until(lambda: sub.last(AVAIL) == "online", what="online")
    wait_until(lambda: (state_of(sub) or {}).get("mood") == "happy", what="state happy")
    configs = {t[len("homeassistant/"):-len("/config")]: json.loads(p) for t, p, _ in sub.messages
               if t.startswith("homeassistant/")}
    assert set(configs) == ENTITIES
    late = subs(broker.port)  # Home Assistant starting later still gets every config, retained
    wait_until(lambda: len([m for m in late.messages if m[0].startswith("homeassistant/")]) == len(ENTITIES),
               what="retained configs")
    assert all(m[2] for m in late.messages if m[0].startswith("homeassistant/") or m[0] in (STATE, AVAIL))
    devices = {json.dumps(c["device"], sort_keys=True) for c in configs.values()}
    assert len(devices) == 1  # one device holds every entity
    dev = configs["sensor/testpi/mood"]["device"]
    assert dev["identifiers"] == [f"emotion-edge_{DEV}"] and dev["sw_version"] and dev["model"]
    for c in configs.values():
        assert c["state_topic"] == STATE and c["availability_topic"] == AVAIL and c["unique_id"].startswith("emotion-edge_")
    assert configs["binary_sensor/testpi/face"]["payload_on"] == "ON"
    s = state_of(sub)
    assert s["fps"] == 12.0 and s["face"] == "ON" and s["service"] == "running"
    assert s["valence"] > 0.5 and s["arousal"] > 0 and set(s["probs"]) == set(FER_LABELS)
    # a mood change reaches the broker within 2 s
    t0 = time.monotonic()
    write_moods(db, "sad")
    wait_until(lambda: (state_of(sub) or {}).get("mood") == "sad", timeout=2.0, step=0.02, what="state sad within 2 s")
    latency = time.monotonic() - t0
    assert state_of(sub)["valence"] < 0
    print(f"mood change -> MQTT state: {latency:.2f} s")
    assert pub.stop() == 0
    wait_until(lambda: sub.last(AVAIL) == "offline", what="offline on a clean stop")
    assert "Traceback" not in pub.stderr()


def test_states_after_a_replayed_clip(tmp_path, broker, subs, publishers):
    db = tmp_path / "ev.db"
    write_moods(db, "none")
    pub = publishers(config(tmp_path, broker.port), db)
    sub = subs(broker.port)
    wait_until(lambda: (state_of(sub) or {}).get("mood") == "none", what="the first state")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("STATE_DIRECTORY", None)
    cfg = tmp_path / "run.toml"
    cfg.write_text("[mood]\nno_face_timeout = 60.0\n")
    run = subprocess.run([sys.executable, "-m", "edge.cli", "--config", str(cfg), "run", "--source", str(CLIP),
                          "--realtime", "--led", "none", "--db", str(db)], capture_output=True, text=True,
                         env=env, timeout=120)
    assert run.returncode == 0, run.stderr
    logged = read_rows(db)
    last = logged[-1]
    labels = json.loads((REPO / "edge" / "models").joinpath(
        next(p.name for p in (REPO / "edge" / "models").glob("*.json"))).read_text())["labels"]
    assert last.mood in labels  # the clip's face gave a mood
    wait_until(lambda: (state_of(sub) or {}).get("time") == last.as_dict()["time"], what="the log's last row")
    s = state_of(sub)
    assert s["mood"] == last.mood and s["mood"] in labels and s["face"] == "ON"
    assert s["valence"] == pytest.approx(last.valence) and s["arousal"] == pytest.approx(last.arousal)
    states = [json.loads(p)["mood"] for p in sub.on(STATE)]
    assert states[0] == "none" and last.mood in states
    assert pub.stop() == 0


def test_last_will_on_kill_9(tmp_path, broker, subs, publishers):
    db = tmp_path / "ev.db"
    write_moods(db, "happy")
    pub = publishers(config(tmp_path, broker.port), db)
    sub = subs(broker.port)
    wait_until(lambda: sub.last(AVAIL) == "online", what="online")
    pub.kill9()
    wait_until(lambda: sub.last(AVAIL) == "offline", timeout=5, what="the broker's last will")
    late = subs(broker.port)  # a new subscriber (Home Assistant restarting) sees it retained
    wait_until(lambda: late.last(AVAIL) == "offline", what="retained offline")


def test_broker_down_at_start_and_restarted_mid_run(tmp_path, subs, publishers):
    need_broker()
    broker = Broker(tmp_path)
    db = tmp_path / "ev.db"
    write_moods(db, "happy")
    pub = publishers(config(tmp_path, broker.port), db)
    try:
        time.sleep(3.5)  # several tries with backoff while no broker listens
        broker.start()
        sub = subs(broker.port)
        wait_until(lambda: (state_of(sub) or {}).get("mood") == "happy", timeout=15, what="connected late")
        broker.stop()
        wait_until(lambda: pub.stderr().count("retrying with backoff") == 2, what="the outage noticed")
        write_moods(db, "sad", "angry", "surprise")  # while the broker is away
        time.sleep(4)
        broker.start()
        sub2 = subs(broker.port)  # the old broker's retained messages are gone (no persistence)
        wait_until(lambda: (state_of(sub2) or {}).get("mood") == "surprise", timeout=20, what="state after restart")
        wait_until(lambda: sub2.last(AVAIL) == "online" and sub2.last(OUTAGE), what="online and the outage summary")
        assert len([t for t, _, _ in sub2.messages if t.startswith("homeassistant/")]) == len(ENTITIES)
        outage = json.loads(sub2.last(OUTAGE))
        assert outage["changes"] == {"sad": 1, "angry": 1, "surprise": 1} and outage["rows"] == 4  # + the closing summary
        assert [json.loads(p)["mood"] for p in sub2.on(STATE)] == ["surprise"]  # summarised, not replayed
        assert pub.stop() == 0
        err = pub.stderr()
        assert err.count("retrying with backoff") == 2, err  # one line per outage, not per try
        assert err.count("connected again after") == 2, err
    finally:
        broker.stop()


def test_no_queue_growth_while_disconnected(tmp_path):
    """In process: with no broker, rows are counted, nothing is handed to paho, memory stays flat."""
    need_broker()
    from edge.mqtt import Bridge

    db = tmp_path / "ev.db"
    write_moods(db, "happy")
    from tests.mqtt_broker import free_port
    bridge = Bridge(MqttConfig(host="127.0.0.1", port=free_port(), device_id=DEV), db, None, poll=0.05)
    stop = threading.Event()
    t = threading.Thread(target=bridge.run, args=(stop,))
    t.start()
    try:
        wait_until(lambda: bridge.follower.state(0) is not None, what="the first row read")
        labels = ["sad", "angry"] * 250
        write_moods(db, *labels)
        # wait for the change rows themselves: on a loaded machine the log also writes summary rows
        # meanwhile (by wall clock), so 500 rows can be counted before the last changes are read
        wait_until(lambda: sum(bridge.follower.backlog.changes.values()) >= 500, what="change rows counted")
        assert bridge.sent == 0 and len(bridge.client._out_messages) == 0
        assert bridge.follower.backlog.changes == {"sad": 250, "angry": 250}
    finally:
        stop.set()
        t.join(10)


def test_wrong_password_is_one_line_and_exit_2(tmp_path, subs, publishers):
    need_broker()
    pw = tmp_path / "broker.passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(pw), "pi", "right"], check=True, capture_output=True)
    broker = Broker(tmp_path, extra=f"password_file {pw}\n", anonymous=False).start()
    try:
        db = tmp_path / "ev.db"
        write_moods(db, "happy")
        secret = tmp_path / "mqtt.password"
        secret.write_text("wrong\n")
        pub = publishers(config(tmp_path, broker.port, username="pi", password_file=str(secret)), db)
        assert pub.proc.wait(20) == 2
        lines = pub.stderr().strip().splitlines()
        assert len(lines) == 1 and "refused the login as 'pi'" in lines[0] and "password_file" in lines[0], lines
        secret.write_text("right\n")  # the same set-up with the right password works
        pub = publishers(config(tmp_path, broker.port, username="pi", password_file=str(secret)), db)
        sub = subs(broker.port, user=("pi", "right"))
        wait_until(lambda: (state_of(sub) or {}).get("mood") == "happy", what="state with the right password")
        assert pub.stop() == 0
    finally:
        broker.stop()


def test_tls_with_a_test_ca(tmp_path, subs, publishers):
    need_broker()
    ca, cert, key = make_test_ca(tmp_path)
    broker = Broker(tmp_path, extra=f"cafile {ca}\ncertfile {cert}\nkeyfile {key}\n").start()
    try:
        db = tmp_path / "ev.db"
        write_moods(db, "fear")
        pub = publishers(config(tmp_path, broker.port, tls=True, ca_file=str(ca)), db)
        sub = subs(broker.port, tls_ca=ca)
        wait_until(lambda: (state_of(sub) or {}).get("mood") == "fear", what="state over TLS")
        assert pub.stop() == 0
        other = tmp_path / "other"
        other.mkdir()
        wrong_ca, _, _ = make_test_ca(other)  # a CA that did not sign the broker's certificate
        pub = publishers(config(tmp_path, broker.port, tls=True, ca_file=str(wrong_ca)), db)
        assert pub.proc.wait(20) == 2
        lines = pub.stderr().strip().splitlines()
        assert len(lines) == 1 and "TLS certificate not trusted" in lines[0], lines
    finally:
        broker.stop()


@pytest.mark.parametrize("mqtt,words", [
    ({}, "mqtt.host is empty"),
    ({"host": "127.0.0.1", "password_file": "/nonexistent/pw"}, "mqtt.password_file: cannot read /nonexistent/pw"),
    ({"host": "127.0.0.1", "device_id": "a b"}, "mqtt.device_id"),
    ({"host": "127.0.0.1", "topic_prefix": "a/#"}, "mqtt.topic_prefix"),
    ({"host": "127.0.0.1", "tls": True, "ca_file": "/nonexistent/ca.pem"}, "mqtt.ca_file"),
])
def test_bad_config_is_one_line_and_exit_2(tmp_path, mqtt, words):
    need_broker()
    cfg = tmp_path / "c.toml"
    cfg.write_text("[mqtt]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in mqtt.items()))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    p = subprocess.run([sys.executable, "-m", "edge.cli", "--config", str(cfg), "publish", "--db", str(tmp_path / "x.db")],
                       capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and words in p.stderr, p.stderr


def test_sanitised_hostname_and_discovery_payloads():
    need_broker()
    from edge.mqtt import discovery_messages, sanitize_id, topics_for

    assert sanitize_id("Kitchen Pi.local") == "kitchen_pi_local" and sanitize_id("--") == "emotion-edge"
    t = topics_for(MqttConfig(host="x", device_id=DEV, topic_prefix="/home/moods/", discovery_prefix="ha"))
    assert t.state == "home/moods/testpi/state"
    msgs = dict(discovery_messages(t))
    assert set(msgs) == {f"ha/{e}/config" for e in
                         ("sensor/testpi/mood", "sensor/testpi/confidence", "sensor/testpi/valence",
                          "sensor/testpi/arousal", "binary_sensor/testpi/face", "sensor/testpi/fps")}
    assert len({m["unique_id"] for m in msgs.values()}) == 6


def python_on_readonly_mount(src: Path, dst: Path, args: str) -> subprocess.CompletedProcess:
    """`python ARGS` in a private mount namespace where SRC is bound read-only at DST (as a follower on
    another machine's mount sees the log); skips where this host cannot make such a mount."""
    script = (f"mount --bind -o ro {src} {dst} && ! touch {dst}/probe 2>/dev/null && {sys.executable} {args}")
    p = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "PYTHONPATH": str(REPO)})
    if "mount" in p.stderr and p.returncode != 0 and "sad" not in p.stdout:
        pytest.skip(f"no read-only bind mount here: {p.stderr.strip()[:200]}")
    return p


def test_follower_reads_a_stopped_services_log_on_a_read_only_mount(tmp_path):
    """The bridge unit sees /var/lib/emotion-edge read-only; with the service stopped there is no
    -wal/-shm, which SQLite cannot create there: the follower opens the file as immutable."""
    import shutil as sh

    if os.geteuid() != 0 or sh.which("unshare") is None:
        pytest.skip("needs root and unshare(1) for a read-only bind mount")
    state = tmp_path / "state"
    state.mkdir()
    write_moods(state / "ev.db", "sad")
    assert sorted(p.name for p in state.iterdir()) == ["ev.db"]  # a clean stop removed -wal/-shm
    code = ("from pathlib import Path; from edge.follow import LogFollower; import sys; "
            "f = LogFollower(Path(sys.argv[1])); f.poll_log(False); print((f.state(0) or {}).get('mood'))")
    p = python_on_readonly_mount(state, state, f"-c \"{code}\" {state / 'ev.db'}")
    assert p.returncode == 0 and p.stdout.strip() == "sad", p.stdout + p.stderr


FOLLOW_ACROSS_RESTART = """
import sys
from pathlib import Path
import numpy as np
from edge.config import LogConfig
from edge.contract import FER_LABELS
from edge.eventlog import EventLog
from edge.follow import LogFollower
from edge.types import Mood

state, view = Path(sys.argv[1]), Path(sys.argv[2])
f = LogFollower(view / "ev.db")
f.poll_log(False)
print(f.state(0)["mood"], "immutable" if f._immutable else "wal")
log = EventLog(state / "ev.db", LogConfig())  # the service starts again (its -wal/-shm appear)
p = np.full(7, 0.01, np.float32); p[FER_LABELS.index("happy")] = 0.94
log.record(Mood("happy", 0.94, p, FER_LABELS, 0.0), 1, None, 0.0)
assert log.flush()
f.poll_log(False)
print(f.state(0)["mood"], "immutable" if f._immutable else "wal")
log.close()
"""


def test_follower_on_a_read_only_mount_sees_the_service_start_again(tmp_path):
    """Opened immutable while the service was stopped, the follower reopens each poll, so the rows of
    a service that starts again reach it (an immutable connection kept open would never show them)."""
    import shutil as sh

    if os.geteuid() != 0 or sh.which("unshare") is None:
        pytest.skip("needs root and unshare(1) for a read-only bind mount")
    state, view = tmp_path / "state", tmp_path / "view"
    state.mkdir()
    view.mkdir()
    write_moods(state / "ev.db", "sad")
    p = python_on_readonly_mount(state, view, f"-c '{FOLLOW_ACROSS_RESTART}' {state} {view}")
    assert p.returncode == 0 and p.stdout.split("\n")[:2] == ["sad immutable", "happy wal"], p.stdout + p.stderr


def test_follower_skips_rows_another_program_wrote_and_keeps_following(tmp_path, caplog):
    """A row the service did not write (text time, bad JSON, text confidence) is skipped with one warning:
    the bridge keeps the last good state and follows the rows that come after."""
    import sqlite3

    from edge.follow import LogFollower

    db = tmp_path / "ev.db"
    log = EventLog(db, LogConfig())
    p = np.full(7, 0.01, np.float32)
    p[FER_LABELS.index("sad")] = 0.94
    log.record(Mood("sad", 0.94, p, FER_LABELS, 0.0), 1, None, 0.0)
    assert log.flush()
    f = LogFollower(db)
    assert f.poll_log(True) and f.state(0)["mood"] == "sad"
    c = sqlite3.connect(db)
    for bad in ({"time": "yesterday"}, {"probs": "{not json"}, {"confidence": "high"}):
        vals = {"time": time.time(), "kind": "change", "mood": "happy", "confidence": 0.9, "probs": None, "faces": 1.0, **bad}
        c.execute(f"INSERT INTO events ({', '.join(vals)}) VALUES ({', '.join('?' * len(vals))})", list(vals.values()))
    c.commit()
    c.close()
    caplog.set_level(logging.WARNING)
    assert not f.poll_log(True)  # nothing usable came: the state stays the last good one
    assert f.state(0)["mood"] == "sad" and f.foreign_rows == 3
    assert len([r for r in caplog.records if "did not write" in r.getMessage()]) == 1
    p2 = np.full(7, 0.01, np.float32)
    p2[FER_LABELS.index("angry")] = 0.94
    log.record(Mood("angry", 0.94, p2, FER_LABELS, 1.0), 1, None, 1.0)
    assert log.flush()
    assert f.poll_log(True) and f.state(0)["mood"] == "angry"
    assert f.backlog.changes == {"sad": 1, "angry": 1}  # the foreign rows are not counted
    log.close()
    f.close()
