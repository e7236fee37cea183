"""`emotion-edge publish` against a real Mosquitto broker on 127.0.0.1: discovery, states,
availability and last will, a broker restart, a refused login, TLS with a test CA."""
from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from edge.config import LogConfig, MqttConfig
from edge.contract import FER_LABELS
from edge.eventlog import EventLog, read_rows
from edge.types import Mood

from tests.mqtt_broker import Broker, RawBroker, Sub, free_port, make_test_ca, need_broker, wait_until

REPO = Path(__file__).resolve().parents[1]
CLIP = REPO / "tests" / "fixtures" / "clip.mp4"
DEV = "testpi"
BASE = f"emotion-edge/{DEV}"
STATE, AVAIL, OUTAGE = f"{BASE}/state", f"{BASE}/availability", f"{BASE}/outage"
CAMERA = f"{BASE}/service"
ENTITIES = {"sensor/testpi/mood", "sensor/testpi/confidence", "sensor/testpi/valence", "sensor/testpi/arousal",
            "binary_sensor/testpi/face", "sensor/testpi/fps", "sensor/testpi/service"}


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

    def __init__(self, cfg: Path, db: Path, status: Path | None = None, verbose: bool = True,
                 name: str = "publish") -> None:
        self.err = cfg.parent / f"{name}.err"
        args = [sys.executable, "-m", "edge.cli", *(["-v"] if verbose else []), "--config", str(cfg),
                "publish", "--db", str(db)]
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
    pub = publishers(config(tmp_path, broker.port), db, status, verbose=False)
    sub = subs(broker.port)
    wait_until(lambda: sub.last(AVAIL) == "online", what="online")
    wait_until(lambda: (state_of(sub) or {}).get("mood") == "happy", what="state happy")
    # one line when connected, even without -v: broker, device id, topics
    wait_until(lambda: "connected as emotion-edge-testpi" in pub.stderr(), what="the connected line")
    line = pub.stderr().strip().splitlines()[-1]
    assert f"127.0.0.1:{broker.port}" in line and "device id testpi" in line and STATE in line and CAMERA in line, line
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
    for key, c in configs.items():
        assert c["state_topic"] == STATE and c["unique_id"].startswith("emotion-edge_")
        # Home Assistant 2026.2: default_entity_id (domain.object_id) replaces object_id; an origin block
        component, _, name = key.split("/")
        assert "object_id" not in c and c["default_entity_id"] == f"{component}.emotion_edge_testpi_{name}"
        assert c["origin"]["name"] == "emotion-edge" and c["origin"]["sw_version"]
        if name == "service":  # the camera service's own state needs only the bridge
            assert c["availability_topic"] == AVAIL and "availability" not in c
            assert (c["payload_available"], c["payload_not_available"]) == ("online", "offline")
        else:  # the mood needs the bridge and the camera service both, and expires without updates
            assert c["availability"] == [{"topic": AVAIL}, {"topic": CAMERA}] and c["availability_mode"] == "all"
            assert "availability_topic" not in c and c["expire_after"] == 180
    assert configs["binary_sensor/testpi/face"]["payload_on"] == "ON"
    mood_cfg = configs["sensor/testpi/mood"]
    assert mood_cfg["device_class"] == "enum" and mood_cfg["options"] == [*FER_LABELS, "none"]
    assert "state_class" not in mood_cfg and "unit_of_measurement" not in mood_cfg  # not allowed with options
    assert sub.last(CAMERA) == "online"
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
    assert f"stopped; 2 states published to {STATE}, offline left on {AVAIL}" in pub.stderr().splitlines()[-1]


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
    last = [r for r in logged if r.kind == "change"][-1]  # the current mood: the last change
    summary = [r for r in logged if r.kind == "summary"][-1]  # the closing summary: means over its interval
    labels = json.loads((REPO / "edge" / "models").joinpath(
        next(p.name for p in (REPO / "edge" / "models").glob("*.json"))).read_text())["labels"]
    assert last.mood in labels  # the clip's face gave a mood
    wait_until(lambda: ((state_of(sub) or {}).get("interval") or {}).get("time") == summary.as_dict()["time"],
               what="the log's last rows")
    s = state_of(sub)
    assert s["time"] == last.as_dict()["time"]
    assert s["mood"] == last.mood and s["mood"] in labels and s["face"] == "ON"
    assert s["valence"] == pytest.approx(last.valence) and s["arousal"] == pytest.approx(last.arousal)
    assert s["interval"]["valence"] == pytest.approx(summary.valence) and s["interval"]["face_ratio"] == summary.faces
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
        downs = [int(x) for x in re.findall(r"connected again after (\d+) s", err)]
        assert len(downs) == 2 and all(1 <= x <= 60 for x in downs), downs  # the outages' lengths
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
        secret.chmod(0o600)
        pub = publishers(config(tmp_path, broker.port, username="pi", password_file=str(secret)), db)
        assert pub.proc.wait(20) == 2
        lines = pub.stderr().strip().splitlines()
        assert len(lines) == 1 and "refused the login as 'pi'" in lines[0] and "password_file" in lines[0], lines
        assert "Not authorized" in lines[0]  # mosquitto answers a wrong password with 5 / 135
        secret.write_text("right\n")  # the same set-up with the right password works
        secret.chmod(0o644)  # ... and says that every user can read the password
        pub = publishers(config(tmp_path, broker.port, username="pi", password_file=str(secret)), db)
        sub = subs(broker.port, user=("pi", "right"))
        wait_until(lambda: (state_of(sub) or {}).get("mood") == "happy", what="state with the right password")
        assert pub.stop() == 0
        assert f"{secret} is readable by every user (mode 644)" in pub.stderr()
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
    # issue 29 E: an empty or over-long DNS label killed paho's network thread (UnicodeError) for good
    ({"host": "homeassistant..local"}, "config key mqtt.host"),
    ({"host": "a" * 64 + ".local"}, "config key mqtt.host"),
    # issue 29 M: a trailing newline passed a `$` match; control characters in a topic
    ({"host": "127.0.0.1", "device_id": "kitchen\n"}, "config key mqtt.device_id"),
    ({"host": "127.0.0.1", "topic_prefix": "home\u0001moods"}, "config key mqtt.topic_prefix"),
    ({"host": "127.0.0.1", "discovery_prefix": "ha\u007f"}, "config key mqtt.discovery_prefix"),
    # issue 29 D: /dev/zero was read for ever (5 GB in 10 s); the capped reader refuses it at once
    ({"host": "127.0.0.1", "username": "pi", "password_file": "/dev/zero"}, "a character device, not a regular file"),
    ({"host": "127.0.0.1", "tls": True, "ca_file": "/dev/zero"}, "mqtt.ca_file: cannot read /dev/zero"),
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
    assert set(msgs) == {f"ha/{e}/config" for e in ENTITIES}
    assert len({m["unique_id"] for m in msgs.values()}) == len(ENTITIES)
    assert all("hw_version" not in m["device"] and "serial_number" not in m["device"] for m in msgs.values())
    msgs = dict(discovery_messages(t, hw="Raspberry Pi 4 Model B Rev 1.5", serial="0123abcd"))
    dev = msgs["ha/sensor/testpi/mood/config"]["device"]
    assert dev["hw_version"] == "Raspberry Pi 4 Model B Rev 1.5" and dev["serial_number"] == "0123abcd"


def test_pi_model_from_the_device_tree(tmp_path):
    """hw_version: the Pi model from the device tree (NUL-terminated there); None off a Pi."""
    from edge.mqtt import pi_model

    model = tmp_path / "model"
    model.write_bytes(b"Raspberry Pi 5 Model B Rev 1.0\x00")
    assert pi_model((tmp_path / "absent", model)) == "Raspberry Pi 5 Model B Rev 1.0"
    assert pi_model((tmp_path / "absent",)) is None
    assert pi_model((Path("/dev/zero"), model)) == "Raspberry Pi 5 Model B Rev 1.0"  # never read unbounded


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
    code = ("from pathlib import Path; from edge.eventlog import LogFollower; import sys; "
            "f = LogFollower(Path(sys.argv[1])); f.poll_log(False); print((f.state(0) or {}).get('mood'))")
    p = python_on_readonly_mount(state, state, f"-c \"{code}\" {state / 'ev.db'}")
    assert p.returncode == 0 and p.stdout.strip() == "sad", p.stdout + p.stderr


FOLLOW_ACROSS_RESTART = """
import sys
from pathlib import Path
import numpy as np
from edge.config import LogConfig
from edge.contract import FER_LABELS
from edge.eventlog import EventLog, LogFollower
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

    from edge.eventlog import LogFollower

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
    # the foreign rows are not counted, nor the row found at start (the state then, not a change seen meanwhile)
    assert f.backlog.changes == {"angry": 1}
    log.close()
    f.close()


def publish_cli(tmp_path: Path, cfg: Path, *extra: str, timeout: float = 30, env_extra: dict | None = None,
                verbose: bool = False) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), **(env_extra or {})}
    env.pop("STATE_DIRECTORY", None)
    return subprocess.run([sys.executable, "-m", "edge.cli", *(["-v"] if verbose else []), "--config", str(cfg),
                           "publish", "--db", str(tmp_path / "ev.db"), *extra],
                          capture_output=True, text=True, env=env, timeout=timeout)


def test_unreadable_password_and_ca_files_are_one_line_not_a_hang(tmp_path):
    """Issue 29 D and minor: a FIFO as password_file or ca_file hung for ever; a 545 MB CA file was read whole."""
    need_broker()
    fifo = tmp_path / "pw.fifo"
    os.mkfifo(fifo)
    big = tmp_path / "huge-ca.pem"
    with open(big, "wb") as f:
        f.truncate(545 << 20)  # sparse: no disk used
    pw = tmp_path / "pw"
    pw.write_text("secret\n")
    pw.chmod(0o600)
    cases = [({"username": "pi", "password_file": str(fifo)}, "a FIFO (named pipe), not a regular file"),
             ({"tls": True, "ca_file": str(fifo)}, "a FIFO (named pipe), not a regular file"),
             ({"tls": True, "ca_file": str(big)}, "larger than the 4 MiB allowed"),
             ({"password_file": str(pw)}, "mqtt.password_file is set but mqtt.username is empty")]
    for mqtt, words in cases:
        t0 = time.monotonic()
        p = publish_cli(tmp_path, config(tmp_path, free_port(), **mqtt), timeout=20)
        assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and words in p.stderr, (mqtt, p.stderr)
        assert time.monotonic() - t0 < 10


def test_tls_against_a_plain_port_is_one_line_and_exit_2(tmp_path, broker):
    """Issue 29 N: `tls = true` against a plain listener was 'unreachable (ConnectionResetError)' for ever."""
    write_moods(tmp_path / "ev.db", "happy")
    p = publish_cli(tmp_path, config(tmp_path, broker.port, tls=True), timeout=30)
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2 and len(lines) == 1, p.stderr
    assert "TLS handshake failed" in lines[0] and "is the port a TLS listener?" in lines[0], lines


def test_bad_user_name_or_password_code_134_is_one_line_and_exit_2(tmp_path):
    """A broker answering CONNACK 4 (paho 2 reports 134, 'Bad user name or password'): a login problem, exit 2.
    Mosquitto answers 5 (135, 'Not authorized') instead, which the wrong-password test covers."""
    need_broker()
    raw = RawBroker(bytes([0x20, 0x02, 0x00, 0x04]))
    write_moods(tmp_path / "ev.db", "happy")
    pw = tmp_path / "pw"
    pw.write_text("wrong")
    pw.chmod(0o600)
    try:
        p = publish_cli(tmp_path, config(tmp_path, raw.port, username="pi", password_file=str(pw)), timeout=30)
    finally:
        raw.close()
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2 and len(lines) == 1, p.stderr
    assert "refused the login as 'pi'" in lines[0] and "Bad user name or password" in lines[0], lines


def test_a_huge_incoming_message_is_refused_before_it_is_read(tmp_path, publishers):
    """Issue 29 O: a broker could push a 200 MB message (650 MB RSS). A packet over the cap drops the
    connection as soon as its length is known: the client reads a few KB of it, not 64 MB."""
    need_broker()
    write_moods(tmp_path / "ev.db", "happy")

    def flood():
        remaining, n = 200_000_000, bytearray()
        while True:  # MQTT's variable-length 'remaining length'
            byte, remaining = remaining % 128, remaining // 128
            n.append(byte | (0x80 if remaining else 0))
            if not remaining:
                break
        yield bytes([0x30]) + bytes(n) + b"\x00\x01x"
        for _ in range(1024):  # 64 MB, if the client keeps reading
            yield b"\0" * 65536
    raw = RawBroker(bytes([0x20, 0x02, 0x00, 0x00]), flood)
    try:
        pub = publishers(config(tmp_path, raw.port), tmp_path / "ev.db")
        assert raw.closed.wait(20), "the client kept reading"
        # what the two loopback socket buffers hold (a few MB), not the 64 MB a reading client takes
        assert raw.sent < 16 << 20, f"the client took {raw.sent} bytes of a 200 MB message"
        wait_until(lambda: "over the 256 KiB accepted" in pub.stderr(), what="the line naming the packet")
        assert "200000000 bytes" in pub.stderr()
        time.sleep(1.5)  # reconnected into the listener's backlog: a broker that never answers
        t0 = time.monotonic()
        assert pub.stop() == 0  # not held up resending to it (paho's loop_stop waited up to keepalive)
        assert time.monotonic() - t0 < 5
    finally:
        raw.close()


def test_paho_1_is_refused_in_one_line(tmp_path):
    """Debian's python3-paho-mqtt 1.6 has another API: one line and exit 2, not an AttributeError."""
    stub = tmp_path / "stub" / "paho" / "mqtt"
    stub.mkdir(parents=True)
    (stub.parent / "__init__.py").write_text("")
    (stub / "__init__.py").write_text('__version__ = "1.6.1"\n')
    (stub / "client.py").write_text("MQTTv311 = 4\n")
    env = {"PYTHONPATH": f"{tmp_path / 'stub'}{os.pathsep}{REPO}"}
    p = publish_cli(tmp_path, config(tmp_path, free_port()), env_extra=env)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert "paho-mqtt 1.6.1 is too old" in p.stderr


def test_username_without_password_logs_in_as_that_user(tmp_path, subs, publishers):
    """Issue 32: `username` without a password_file must still log in as that user (not anonymously): the
    broker's ACL lets only 'pi' publish under emotion-edge/, so anonymous states would never arrive."""
    need_broker()
    acl = tmp_path / "acl"
    acl.write_text("user pi\ntopic readwrite #\n")
    broker = Broker(tmp_path, extra=f"acl_file {acl}\n").start()
    try:
        write_moods(tmp_path / "ev.db", "sad")
        sub = subs(broker.port, user=("pi", "x"))
        pub = publishers(config(tmp_path, broker.port, username="pi"), tmp_path / "ev.db")
        wait_until(lambda: (state_of(sub) or {}).get("mood") == "sad", what="state published as 'pi'")
        assert "logging in as 'pi' without a password" in pub.stderr()
        assert pub.stop() == 0
    finally:
        broker.stop()


def test_camera_service_stopped_or_dead_makes_the_mood_unavailable(tmp_path, broker, subs, publishers):
    """Issue 30.1: with the camera service stopped (or dead: status.json no longer updated) the mood
    entities go unavailable through their second availability topic, within a poll or STALE_AFTER."""
    from edge.eventlog.follower import STALE_AFTER

    db, status = tmp_path / "ev.db", tmp_path / "status.json"
    write_moods(db, "happy")

    def say(state: str, age: float = 0.0) -> None:
        tmp = status.with_suffix(".tmp")
        tmp.write_text(json.dumps({"state": state, "updated": time.time() - age, "fps": 10.0}))
        tmp.replace(status)
    say("running")
    pub = publishers(config(tmp_path, broker.port), db, status)
    sub = subs(broker.port)
    wait_until(lambda: sub.last(CAMERA) == "online" and (state_of(sub) or {}).get("mood") == "happy", what="online")
    t0 = time.monotonic()
    say("stopped")  # a clean stop (or a clip that ended)
    wait_until(lambda: sub.last(CAMERA) == "offline", timeout=3, what="camera offline after a stop")
    print(f"camera stop -> offline: {time.monotonic() - t0:.2f} s")
    # the state follows the availability message (sent first, in its own packet): wait for it too
    wait_until(lambda: (state_of(sub) or {}).get("service") == "stopped", timeout=3, what="state says stopped")
    assert sub.last(AVAIL) == "online"
    say("running")
    wait_until(lambda: sub.last(CAMERA) == "online", timeout=3, what="camera online again")
    say("running", age=STALE_AFTER + 1)  # killed: the last status it wrote grows old
    wait_until(lambda: sub.last(CAMERA) == "offline", timeout=3, what="camera offline when status is stale")
    wait_until(lambda: (state_of(sub) or {}).get("service") == "stale", timeout=3, what="state says stale")
    late = subs(broker.port)  # Home Assistant restarting sees it too: retained
    wait_until(lambda: late.last(CAMERA) == "offline", what="retained camera offline")
    assert pub.stop() == 0


def test_without_a_status_file_the_log_says_whether_the_camera_runs(tmp_path):
    """`run` writes no status.json: the camera counts as running while rows come (LOG_STALE_S)."""
    from edge.eventlog import LogFollower

    db = tmp_path / "ev.db"
    write_moods(db, "happy")
    f = LogFollower(db, tmp_path / "status.json")
    f.poll_log(False)
    f.poll_status()
    assert f.camera_live(time.time(), 150.0) and not f.camera_live(time.time() + 151, 150.0)
    f.close()


def test_state_is_the_current_mood_and_the_interval_means_are_apart(tmp_path):
    """Issue 30.3: a summary row's valence is a mean over its interval; it must not replace the current
    mood's valence (HA showed 0.35 while the mood was 'happy' at +0.94)."""
    from edge.eventlog import LogFollower

    db = tmp_path / "ev.db"
    log = EventLog(db, LogConfig(summary_interval=10.0))
    log.record(mood("happy", 0.95), 1, None, 0.0)
    assert log.flush()
    live = LogFollower(db)  # follows row by row as they come
    live.poll_log(False)
    for i in range(1, 10):
        log.record(mood("happy", 0.3), 1, None, float(i))  # still happy, but barely
    log.record(mood("happy", 0.3), 1, None, 10.0)  # the interval's summary row
    assert log.flush()
    rows = read_rows(db)
    assert [r.kind for r in rows] == ["change", "summary"]
    change, summary = rows
    assert summary.valence < change.valence - 0.1  # the mean is lower: the two must not be mixed
    live.poll_log(False)
    fresh = LogFollower(db)  # started later: the latest change and summary rows
    fresh.poll_log(False)
    for f in (live, fresh):
        s = f.state(0)
        assert s["mood"] == "happy" and s["valence"] == pytest.approx(change.valence), s
        assert s["confidence"] == pytest.approx(0.95, abs=1e-3)
        assert s["interval"]["valence"] == pytest.approx(summary.valence) and s["interval"]["face_ratio"] == 1.0
        assert "kind" not in s
        f.close()
    log.close()


def run_bridge(bridge, stop: threading.Event) -> threading.Thread:
    """bridge.run in a thread; a MqttError it ends with is kept as bridge.error (None while it runs)."""
    from edge.mqtt import MqttError

    def target() -> None:
        try:
            bridge.run(stop)
        except MqttError as e:
            bridge.error = e
    bridge.error = None
    t = threading.Thread(target=target, daemon=True)
    t.start()
    return t


def test_heartbeat_for_expire_after_and_the_models_labels_as_options(tmp_path, broker, subs):
    """The state is re-sent every heartbeat even unchanged (HA's expire_after greys out a hung bridge),
    and the mood's enum options follow the running model's labels (a model of your own)."""
    from edge.mqtt import Bridge

    db, status = tmp_path / "ev.db", tmp_path / "status.json"
    write_moods(db, "happy")
    status.write_text(json.dumps({"state": "running", "updated": time.time(), "model": {"labels": FER_LABELS}}))
    sub = subs(broker.port)
    bridge = Bridge(MqttConfig(host="127.0.0.1", port=broker.port, device_id=DEV), db, status, poll=0.05,
                    heartbeat=0.5)
    stop = threading.Event()
    t = run_bridge(bridge, stop)
    try:
        wait_until(lambda: len(sub.on(STATE)) >= 4, timeout=5, what="the state re-sent every heartbeat")
        assert len({p for p in sub.on(STATE)}) == 1  # the same state, again
        status.write_text(json.dumps({"state": "running", "updated": time.time(),
                                      "model": {"labels": ["smile", "frown", "calm"]}}))
        mood_topic = f"homeassistant/sensor/{DEV}/mood/config"
        wait_until(lambda: json.loads(sub.last(mood_topic))["options"] == ["smile", "frown", "calm", "none"],
                   what="the mood's options for the new model")
    finally:
        stop.set()
        t.join(10)


def test_two_bridges_for_one_device_the_newer_wins_in_one_line(tmp_path, broker, subs, publishers):
    """Issue 30.2: the unit and a manual run (same machine, same client id) knocked each other off once a
    second. Now the older says so in one line and stops (exit 2), the newer keeps publishing."""
    db = tmp_path / "ev.db"
    write_moods(db, "happy")
    cfg = config(tmp_path, broker.port)
    first = publishers(cfg, db, name="first")
    sub = subs(broker.port)
    wait_until(lambda: (state_of(sub) or {}).get("mood") == "happy", what="the first bridge")
    second = publishers(cfg, db, name="second")
    assert first.proc.wait(20) == 2
    line = first.stderr().strip().splitlines()[-1]
    assert "another emotion-edge publish took over device id 'testpi'" in line and f"pid {second.proc.pid}" in line, line
    time.sleep(3)  # the newer one stays
    assert second.proc.poll() is None and sub.last(AVAIL) == "online"
    write_moods(db, "sad")
    wait_until(lambda: (state_of(sub) or {}).get("mood") == "sad", what="the second bridge publishing")
    assert second.stop() == 0 and "took over" not in second.stderr()


def test_default_device_and_client_ids_differ_per_machine(tmp_path):
    """Two Pis left at hostname `raspberrypi` get two device ids and client ids (from /etc/machine-id)."""
    need_broker()
    from edge.mqtt import Bridge, device_id, machine_key, sanitize_id

    ids = []
    for n, mid in enumerate(("0123456789abcdef0123456789abcdef", "fedcba9876543210fedcba9876543210")):
        f = tmp_path / f"machine-id{n}"
        f.write_text(mid + "\n")
        key = machine_key(f)
        assert key and mid not in key  # derived, never the id itself
        b = Bridge(MqttConfig(host="127.0.0.1", port=1), tmp_path / "ev.db", None, machine=f)
        ids.append((device_id(MqttConfig(), key), b.client_id))
        assert b.client_id.startswith(f"emotion-edge-{ids[-1][0]}-") and b.client_id.endswith(key[:8])
    assert ids[0][0] != ids[1][0] and ids[0][1] != ids[1][1]
    host = sanitize_id(socket.gethostname())
    assert ids[0][0] == f"{host}-{machine_key(tmp_path / 'machine-id0')[:6]}"  # hostname, then 6 hex digits
    assert device_id(MqttConfig(), None) == host  # no machine id: the hostname, as before
    assert machine_key(tmp_path / "none") is None and machine_key(Path("/dev/null")) is None


def test_a_changed_device_id_removes_the_old_discovery(tmp_path, broker, subs):
    """Issue 30.4: when this machine's device id changes, its old retained discovery is removed (else
    Home Assistant keeps a dead device for ever); another machine's device is left alone."""
    from edge.mqtt import Bridge

    db = tmp_path / "ev.db"
    write_moods(db, "happy")
    machine = tmp_path / "machine-id"
    machine.write_text("0123456789abcdef0123456789abcdef\n")
    other = tmp_path / "other-machine-id"
    other.write_text("fedcba9876543210fedcba9876543210\n")
    for dev, mid in (("olddev", machine), ("elsewhere", other)):
        b = Bridge(MqttConfig(host="127.0.0.1", port=broker.port, device_id=dev), db, None, poll=0.05, machine=mid)
        stop = threading.Event()
        t = run_bridge(b, stop)
        wait_until(lambda: b.states >= 1, what=f"{dev} published")
        stop.set()
        t.join(10)
    b = Bridge(MqttConfig(host="127.0.0.1", port=broker.port, device_id="newdev"), db, None, poll=0.05, machine=machine)
    stop = threading.Event()
    t = run_bridge(b, stop)
    try:
        wait_until(lambda: b.states >= 1, what="newdev published")
        time.sleep(1)
        late = subs(broker.port)
        wait_until(lambda: any("/newdev/" in m[0] for m in late.messages), what="retained messages")
        time.sleep(0.5)
        topics = {t for t, p, _ in late.messages if p}
        assert not any("olddev" in x for x in topics), sorted(topics)
        assert "homeassistant/sensor/elsewhere/mood/config" in topics and "emotion-edge/elsewhere/state" in topics
    finally:
        stop.set()
        t.join(10)


def test_uninstall_removes_the_device_from_the_broker(tmp_path, broker, subs, publishers):
    """`publish --uninstall`: every retained discovery config and state of this device is removed."""
    db = tmp_path / "ev.db"
    write_moods(db, "happy")
    cfg = config(tmp_path, broker.port)
    pub = publishers(cfg, db)
    sub = subs(broker.port)
    wait_until(lambda: (state_of(sub) or {}).get("mood") == "happy", what="published")
    assert pub.stop() == 0
    p = publish_cli(tmp_path, cfg, "--uninstall")
    assert p.returncode == 0 and "removed device 'testpi'" in p.stdout, p.stdout + p.stderr
    late = subs(broker.port)
    time.sleep(1.5)
    assert [m for m in late.messages if DEV in m[0]] == []


def test_check_reports_the_mqtt_broker_and_login(tmp_path):
    """Issue 30.5: `check` checks [mqtt] when a host is set: paho present, broker reachable, login accepted."""
    need_broker()
    pw = tmp_path / "broker.passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(pw), "pi", "right"], check=True, capture_output=True)
    broker = Broker(tmp_path, extra=f"password_file {pw}\n", anonymous=False).start()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    try:
        secret = tmp_path / "secret"
        results = {}
        for word in ("right", "wrong"):
            secret.write_text(word)
            secret.chmod(0o600)
            cfg = config(tmp_path, broker.port, username="pi", password_file=str(secret))
            p = subprocess.run([sys.executable, "-m", "edge.cli", "check", "--json", "--config", str(cfg)],
                               capture_output=True, text=True, env=env, timeout=120)
            results[word] = json.loads(p.stdout)["mqtt"]
        assert results["right"]["ok"] and "login accepted as 'pi'" in results["right"]["detail"], results
        assert not results["wrong"]["ok"] and "refused the login as 'pi'" in results["wrong"]["detail"], results
        broker.stop()
        p = subprocess.run([sys.executable, "-m", "edge.cli", "check", "--json", "--config", str(cfg)],
                           capture_output=True, text=True, env=env, timeout=120)
        got = json.loads(p.stdout)["mqtt"]
        assert not got["ok"] and "unreachable" in got["detail"], got
    finally:
        broker.stop()


def test_a_claim_left_by_an_earlier_run_on_this_machine_is_ignored(tmp_path, broker, subs):
    """A Pi without a clock may boot 'before' its last run: that run's retained claim (its process gone)
    must not make the new bridge stop; a live claim from this machine that is newer still does."""
    from edge.mqtt import Bridge, machine_key

    machine = tmp_path / "machine-id"
    machine.write_text("0123456789abcdef0123456789abcdef\n")
    dead = subprocess.Popen(["true"])
    dead.wait()
    db = tmp_path / "ev.db"
    write_moods(db, "happy")
    sub = subs(broker.port)
    stale = {"id": "old", "since": time.time() + 3600, "pid": dead.pid, "host": "x", "machine": machine_key(machine)[:16]}
    sub.c.publish(f"{BASE}/bridge", json.dumps(stale), qos=1, retain=True).wait_for_publish(5)
    b = Bridge(MqttConfig(host="127.0.0.1", port=broker.port, device_id=DEV), db, None, poll=0.05, machine=machine)
    stop = threading.Event()
    t = run_bridge(b, stop)
    try:
        wait_until(lambda: b.states >= 1, what="published despite the stale claim")
        time.sleep(1)
        assert t.is_alive() and b._fatal is None
        live = {**stale, "id": "new", "pid": os.getpid()}  # a process that runs: a real, newer bridge
        sub.c.publish(f"{BASE}/bridge", json.dumps(live), qos=1, retain=True)
        wait_until(lambda: not t.is_alive(), what="the older bridge stopping")
        assert "took over device id 'testpi'" in str(b.error)
    finally:
        stop.set()
        t.join(10)


def test_a_claims_pid_counts_as_running_only_when_it_is_a_process_here():
    """A claim's pid is whatever another program wrote: None, true, 0 (this process group) or a negative
    number never count as a running bridge (os.kill would signal a group or raise)."""
    from edge.mqtt import _alive

    dead = subprocess.Popen(["true"])
    dead.wait()
    assert _alive(os.getpid()) and not _alive(dead.pid)
    for bad in (None, True, False, 0, -1, "123", 1.5):
        assert not _alive(bad), bad


def test_which_first_connect_errors_are_final():
    """A reset during the first connect is a TLS problem only with tls on (then exit 2, naming the error);
    without TLS it is a broker away: retried. A refused connection is always retried."""
    import ssl

    from edge.mqtt import MqttError, connect_error

    plain, tls = MqttConfig(host="127.0.0.1"), MqttConfig(host="127.0.0.1", tls=True)
    assert connect_error(plain, ConnectionResetError()) is None and connect_error(plain, ConnectionRefusedError()) is None
    assert connect_error(tls, ConnectionRefusedError()) is None
    e = connect_error(tls, ConnectionResetError())
    assert isinstance(e, MqttError) and "TLS handshake failed (ConnectionResetError); is the port a TLS listener?" in str(e)
    e = connect_error(plain, ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number"))
    assert isinstance(e, MqttError) and "TLS handshake failed" in str(e)


def test_an_older_versions_hostname_discovery_is_removed_once(tmp_path, broker, subs):
    """Upgrading from the version whose default device id was the bare hostname: that id's retained
    discovery (object_id, no origin) goes; another host's old discovery, or a current bridge's config
    for the same name from another machine (origin, another serial), stays."""
    from edge.mqtt import Bridge, sanitize_id

    host = sanitize_id(socket.gethostname())
    machine = tmp_path / "machine-id"
    machine.write_text("0123456789abcdef0123456789abcdef\n")
    db = tmp_path / "ev.db"
    write_moods(db, "happy")

    def old_config(node: str) -> dict:
        return {"name": "Mood", "object_id": f"emotion_edge_{node}_mood", "unique_id": f"emotion-edge_{node}_mood",
                "state_topic": f"emotion-edge/{node}/state", "device": {"identifiers": [f"emotion-edge_{node}"]}}
    sub = subs(broker.port)
    wait_until(lambda: sub.c.is_connected(), what="the test client")
    for node in (host, "otherpi"):
        sub.c.publish(f"homeassistant/sensor/{node}/mood/config", json.dumps(old_config(node)), qos=1, retain=True)
        sub.c.publish(f"homeassistant/binary_sensor/{node}/face/config", "{}", qos=1, retain=True)

    def run_once() -> set[str]:
        b = Bridge(MqttConfig(host="127.0.0.1", port=broker.port), db, None, poll=0.05, machine=machine)
        stop = threading.Event()
        t = run_bridge(b, stop)
        try:
            wait_until(lambda: b.states >= 1, what="published")
            time.sleep(1)
        finally:
            stop.set()
            t.join(10)
        late = subs(broker.port)
        wait_until(lambda: any(f"/{b.topics.device_id}/" in m[0] for m in late.messages), what="retained messages")
        time.sleep(0.5)
        return {t for t, p, _ in late.messages if p}
    kept = run_once()
    assert f"homeassistant/sensor/{host}/mood/config" not in kept and f"homeassistant/binary_sensor/{host}/face/config" not in kept
    assert "homeassistant/sensor/otherpi/mood/config" in kept and "homeassistant/binary_sensor/otherpi/face/config" in kept
    current = {**old_config(host), "origin": {"name": "emotion-edge"}, "device": {"identifiers": ["x"], "serial_number": "other"}}
    current.pop("object_id")
    current["default_entity_id"] = f"sensor.emotion_edge_{host}_mood"
    sub.c.publish(f"homeassistant/sensor/{host}/mood/config", json.dumps(current), qos=1, retain=True).wait_for_publish(5)
    assert f"homeassistant/sensor/{host}/mood/config" in run_once()  # another machine's bridge: left alone


def test_nothing_is_resent_between_heartbeats(tmp_path, broker, subs):
    """Between heartbeats an unchanged state and an unchanged discovery are sent once, and before the log
    has a row no state is sent at all (not a 'null')."""
    from edge.mqtt import Bridge

    db = tmp_path / "ev.db"
    sub = subs(broker.port)
    b = Bridge(MqttConfig(host="127.0.0.1", port=broker.port, device_id=DEV), db, None, poll=0.05)
    stop = threading.Event()
    t = run_bridge(b, stop)
    try:
        wait_until(lambda: sub.last(AVAIL) == "online", what="online")
        time.sleep(1)
        assert sub.on(STATE) == []  # no row yet: nothing to say
        write_moods(db, "happy")
        wait_until(lambda: sub.on(STATE), what="the first state")
        time.sleep(2)  # 40 polls
        assert len(sub.on(STATE)) == 1 and len(sub.on(f"homeassistant/sensor/{DEV}/mood/config")) == 1
    finally:
        stop.set()
        t.join(10)
