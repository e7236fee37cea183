"""The MQTT bridge behind `emotion-edge publish`: the local mood -> an MQTT broker / Home Assistant.

A separate process from the camera service, so the process that sees faces never touches the
network: this one only reads the log and status.json, and only labels and numbers leave the device.

- Home Assistant discovery: retained config messages for one device (mood, confidence, valence,
  arousal, face, frames/s, camera service), all reading one JSON state topic through value templates.
  The payloads follow Home Assistant 2026.2's MQTT schema (homeassistant/components/mqtt/schemas.py).
- Two availability topics: the bridge's own (`online` on connect, `offline` on a clean stop and as
  the broker's last will) and the camera service's (`online` while status.json says running and is
  fresh, else `offline`). The mood entities need both (availability_mode all), so HA never shows a
  stale mood; they also expire when the state stops coming (the bridge re-sends it every minute).
- One bridge per device id: each claims `PREFIX/ID/bridge`; an older one that sees a newer claim
  says so in one line and stops, instead of the two knocking each other off the broker.
- Broker away: paho reconnects with exponential backoff (1 s .. 60 s); one warning per outage,
  nothing is queued while disconnected (memory stays flat), and on reconnect the latest state
  and a summary of the outage are published, retained. Incoming packets are capped.
- A refused login, an untrusted TLS certificate or a port that does not speak TLS is a
  configuration problem: one line, exit 2.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import socket
import ssl
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from edge import __version__
from edge.config import MqttConfig, mqtt_host_problem, mqtt_id_problem, mqtt_topic_problem
from edge.contract import FER_LABELS
from edge.errors import ConfigError, EdgeError
from edge.eventlog import LogFollower
from edge.safeio import read_bytes, read_text

log = logging.getLogger(__name__)

POLL_S = 0.5  # log/status poll period: with the log's 0.5 s commits, a change is out within ~1 s
MIN_BACKOFF_S, MAX_BACKOFF_S = 1, 60
MAX_QUEUED = 100  # paho's own queue cap: publishes beyond it fail instead of growing memory
MAX_IN_BYTES = 256 << 10  # largest packet accepted from the broker (ours are < 1 KiB)
PASSWORD_MAX_BYTES = 4096
CA_MAX_BYTES = 4 << 20  # Debian's whole CA bundle is about 220 KB
HEARTBEAT_S = 60.0  # the state is re-sent this often even unchanged...
EXPIRE_AFTER_S = 180  # ...so Home Assistant can expire it when the bridge hangs (3 beats missed)
LOG_STALE_S = 150.0  # no status.json: the camera counts as stopped after this long without a log row
AUTH_CODES = {134, 135}  # paho 2 reason codes (MQTT 3.1.1's 4 and 5 arrive as these): bad login, not authorized
MACHINE_ID = Path("/etc/machine-id")
# /proc/device-tree is a link to the first; the bridge unit's ProcSubset=pid hides /proc/device-tree
MODEL_PATHS = (Path("/sys/firmware/devicetree/base/model"), Path("/proc/device-tree/model"))
ORIGIN = {"name": "emotion-edge", "sw_version": __version__}
LIVE = "online", "offline"


class MqttError(EdgeError):
    """The broker refused us for a reason retrying cannot fix (login, TLS, another bridge took over)."""


def sanitize_id(text: str) -> str:
    """A hostname -> a topic- and Home-Assistant-safe id: lowercase [a-z0-9_-]."""
    out = re.sub(r"[^a-z0-9_-]+", "_", text.strip().lower()).strip("_-")
    return out or "emotion-edge"


def machine_key(path: Path = MACHINE_ID) -> str | None:
    """A stable per-machine hex key derived from /etc/machine-id (never the id itself), or None."""
    try:
        text = read_text(path, 256).strip()
    except (OSError, UnicodeDecodeError):
        return None
    if not re.fullmatch(r"[0-9a-f]{32}", text):
        return None
    return hmac.new(bytes.fromhex(text), b"emotion-edge mqtt", hashlib.sha256).hexdigest()


def pi_model(paths: tuple[Path, ...] = MODEL_PATHS) -> str | None:
    """'Raspberry Pi 4 Model B Rev 1.5' from the device tree, or None off a Pi."""
    for p in paths:
        try:
            text = read_bytes(p, 256).decode("utf-8", "replace").strip("\0 \n")
        except OSError:
            continue
        text = "".join(c for c in text if c.isprintable())
        if text:
            return text
    return None


def device_id(cfg: MqttConfig, key: str | None = None) -> str:
    """[mqtt] device_id, else the hostname plus 6 hex of the machine key (two `raspberrypi`s stay two)."""
    if cfg.device_id:
        problem = mqtt_id_problem(cfg.device_id)
        if problem:
            raise ConfigError(f"config key mqtt.device_id: {problem} (got {cfg.device_id!r})")
        return cfg.device_id
    host = sanitize_id(socket.gethostname())
    return f"{host}-{key[:6]}" if key else host


def _check_prefix(key: str, value: str) -> str:
    problem = mqtt_topic_problem(value)
    if problem:
        raise ConfigError(f"config key mqtt.{key}: {problem} (got {value!r})")
    return value.strip("/")


def read_password(cfg: MqttConfig) -> str | None:
    """The password file's first line, read capped (no FIFO, device or giant file); warns when others can read it."""
    if not cfg.password_file:
        return None
    try:
        text = read_text(cfg.password_file, PASSWORD_MAX_BYTES)
        mode = os.stat(cfg.password_file).st_mode
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"config key mqtt.password_file: cannot read {cfg.password_file} "
                          f"({getattr(e, 'strerror', None) or e})") from None
    if mode & stat.S_IROTH:
        log.warning("%s is readable by every user (mode %o): chmod 0640 and chown root:emotion-edge it",
                    cfg.password_file, stat.S_IMODE(mode))
    return text.rstrip("\r\n")


@dataclass(frozen=True)
class Topics:
    base: str  # PREFIX/DEVICE_ID
    discovery: str
    device_id: str

    @property
    def state(self) -> str:
        return f"{self.base}/state"

    @property
    def availability(self) -> str:
        return f"{self.base}/availability"

    @property
    def service(self) -> str:
        """The camera service's availability, as the bridge sees it in status.json."""
        return f"{self.base}/service"

    @property
    def outage(self) -> str:
        return f"{self.base}/outage"

    @property
    def bridge(self) -> str:
        """Which bridge publishes this device now (retained): a newer one makes an older one stop."""
        return f"{self.base}/bridge"

    @property
    def own(self) -> list[str]:
        return [self.state, self.availability, self.service, self.outage, self.bridge]


def topics_for(cfg: MqttConfig, key: str | None = None) -> Topics:
    dev = device_id(cfg, key)
    return Topics(f"{_check_prefix('topic_prefix', cfg.topic_prefix)}/{dev}",
                  _check_prefix("discovery_prefix", cfg.discovery_prefix), dev)


# (component, key) of every entity, and those of older versions (removed when a device id changes)
ENTITIES = (("sensor", "mood"), ("sensor", "confidence"), ("sensor", "valence"), ("sensor", "arousal"),
            ("binary_sensor", "face"), ("sensor", "fps"), ("sensor", "service"))


def discovery_messages(t: Topics, labels: list[str] | None = None, hw: str | None = None,
                       serial: str | None = None) -> list[tuple[str, dict[str, Any]]]:
    """(topic, payload) of each Home Assistant discovery config, all under one device."""
    device: dict[str, Any] = {"identifiers": [f"emotion-edge_{t.device_id}"], "name": f"emotion-edge {t.device_id}",
                              "model": "emotion-edge mood light", "manufacturer": "emotion-edge",
                              "sw_version": __version__}
    if hw:
        device["hw_version"] = hw
    if serial:
        device["serial_number"] = serial
    slug = re.sub(r"[^a-z0-9_]", "_", t.device_id.lower())
    bridge_only = {"availability_topic": t.availability, "payload_available": LIVE[0], "payload_not_available": LIVE[1]}
    with_camera = {"availability": [{"topic": t.availability}, {"topic": t.service}], "availability_mode": "all",
                   "expire_after": EXPIRE_AFTER_S}
    options = [*(labels or FER_LABELS), *([] if "none" in (labels or FER_LABELS) else ["none"])]

    def ent(component: str, key: str, name: str, template: str, avail: dict[str, Any],
            **extra: Any) -> tuple[str, dict[str, Any]]:
        payload = {"name": name, "unique_id": f"emotion-edge_{t.device_id}_{key}",
                   "default_entity_id": f"{component}.emotion_edge_{slug}_{key}", "value_template": template,
                   "state_topic": t.state, "device": device, "origin": ORIGIN, **avail, **extra}
        return f"{t.discovery}/{component}/{t.device_id}/{key}/config", payload

    return [
        ent("sensor", "mood", "Mood", "{{ value_json.mood }}", with_camera, device_class="enum", options=options,
            icon="mdi:emoticon-outline", json_attributes_topic=t.state,
            json_attributes_template="{{ {'confidence': value_json.confidence, 'probabilities': value_json.probs,"
                                     " 'valence': value_json.valence, 'arousal': value_json.arousal,"
                                     " 'since': value_json.time, 'service': value_json.service,"
                                     " 'interval': value_json.interval} | tojson }}"),
        ent("sensor", "confidence", "Confidence", "{{ (value_json.confidence * 100) | round(1) }}", with_camera,
            unit_of_measurement="%", state_class="measurement", icon="mdi:gauge"),
        ent("sensor", "valence", "Valence", "{{ value_json.valence }}", with_camera, state_class="measurement",
            icon="mdi:emoticon-happy-outline"),
        ent("sensor", "arousal", "Arousal", "{{ value_json.arousal }}", with_camera, state_class="measurement",
            icon="mdi:lightning-bolt-outline"),
        ent("binary_sensor", "face", "Face", "{{ value_json.face }}", with_camera, payload_on="ON", payload_off="OFF",
            device_class="occupancy"),
        ent("sensor", "fps", "Frames per second", "{{ value_json.fps }}", with_camera, unit_of_measurement="frames/s",
            state_class="measurement", entity_category="diagnostic", icon="mdi:camera-timer"),
        ent("sensor", "service", "Camera service", "{{ value_json.service }}", bridge_only,
            entity_category="diagnostic", icon="mdi:cctv"),
    ]


def _alive(pid: Any) -> bool:
    """Whether a process with this id runs here (a claim from this machine names one)."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists
        return True
    return True


def _paho():
    try:
        import paho.mqtt
        import paho.mqtt.client as mqtt
    except ImportError:
        raise ConfigError("paho-mqtt is not installed: pip install 'paho-mqtt>=2,<3' "
                          "(or the project's [mqtt] extra)") from None
    if int(paho.mqtt.__version__.split(".")[0]) < 2:
        raise ConfigError(f"paho-mqtt {paho.mqtt.__version__} is too old: emotion-edge needs 2.x "
                          "(Debian's python3-paho-mqtt is 1.6; pip install 'paho-mqtt>=2,<3')")
    return mqtt


def _capped_client_class(mqtt: Any) -> type:
    class CappedClient(mqtt.Client):  # type: ignore[misc, valid-type]
        """paho's client, refusing an incoming packet larger than MAX_IN_BYTES before reading its body
        (paho itself would read a 200 MB message into memory)."""

        too_big: int | None = None

        def _sock_recv(self, bufsize: int) -> bytes:
            p = self._in_packet
            if p.get("have_remaining") and p.get("remaining_length", 0) > MAX_IN_BYTES:
                self.too_big = p["remaining_length"]
                raise ConnectionAbortedError(f"incoming packet of {self.too_big} bytes")
            return super()._sock_recv(bufsize)
    return CappedClient


def make_client(cfg: MqttConfig, client_id: str, will_topic: str | None) -> tuple[Any, Any]:
    """(paho module, client) with login, TLS and the last will set; bad settings are ConfigErrors."""
    problem = mqtt_host_problem(cfg.host)
    if problem:
        raise ConfigError(f"config key mqtt.host: {problem} (got {cfg.host!r})")
    mqtt = _paho()
    password = read_password(cfg)
    if password is not None and not cfg.username:
        raise ConfigError("config key mqtt.password_file is set but mqtt.username is empty: MQTT sends a "
                          "password only with a user name")
    c = _capped_client_class(mqtt)(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                                   protocol=mqtt.MQTTv311, clean_session=True)
    if cfg.username:
        c.username_pw_set(cfg.username, password)
        if password is None:
            log.info("MQTT: logging in as %r without a password (no [mqtt] password_file)", cfg.username)
    if cfg.tls:
        try:
            cadata = read_text(cfg.ca_file, CA_MAX_BYTES) if cfg.ca_file else None
        except FileNotFoundError:
            raise ConfigError(f"config key mqtt.ca_file: no file at {cfg.ca_file}") from None
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"config key mqtt.ca_file: cannot read {cfg.ca_file} "
                              f"({getattr(e, 'strerror', None) or e})") from None
        try:
            ctx = ssl.create_default_context(cadata=cadata) if cadata else ssl.create_default_context()
        except (ssl.SSLError, ValueError) as e:
            raise ConfigError(f"config key mqtt.ca_file: cannot use {cfg.ca_file} as a CA ({e})") from None
        c.tls_set_context(ctx)
    if will_topic:
        c.will_set(will_topic, LIVE[1], qos=cfg.qos, retain=True)
    c.reconnect_delay_set(MIN_BACKOFF_S, MAX_BACKOFF_S)
    c.max_queued_messages_set(MAX_QUEUED)
    return mqtt, c


def connect_error(cfg: MqttConfig, e: BaseException) -> MqttError | None:
    """A first-connect exception that retrying cannot fix, as one line; None for 'retry later'."""
    where = f"{cfg.host}:{cfg.port}"
    if isinstance(e, ssl.SSLCertVerificationError):
        return MqttError(f"MQTT broker {where}: TLS certificate not trusted ({e.verify_message}); "
                         "check [mqtt] ca_file and host")
    # a plain listener answers a TLS hello with a reset or EOF (or garbage: an SSLError)
    if isinstance(e, ssl.SSLError) or (cfg.tls and isinstance(e, (ConnectionResetError, ConnectionAbortedError,
                                                                   BrokenPipeError, EOFError))):
        reason = getattr(e, "reason", None) or type(e).__name__
        return MqttError(f"MQTT broker {where}: TLS handshake failed ({reason}); "
                         "is the port a TLS listener? check [mqtt] tls and port")
    return None


class Bridge:
    """Owns the paho client (network thread) and the follower (main thread)."""

    def __init__(self, cfg: MqttConfig, db: Path, status: Path | None, *, poll: float = POLL_S,
                 clock: Callable[[], float] = time.time, heartbeat: float = HEARTBEAT_S,
                 machine: Path = MACHINE_ID) -> None:
        if not cfg.host:
            raise ConfigError("config key mqtt.host is empty: set the broker in [mqtt] (publishing is off without it)")
        self.cfg = cfg
        self.key = machine_key(machine)
        self.topics = topics_for(cfg, self.key)
        self.hw = pi_model()
        self.poll = poll
        self.heartbeat = heartbeat
        self._clock = clock
        self.follower = LogFollower(db, status)
        self._lock = threading.Lock()
        self._connected = False
        self._ever_connected = False
        self._down_since: float | None = None
        self._tries = 0
        self._fatal: str | None = None
        self._published: dict[str, Any] | None = None  # the last state payload sent
        self._published_at = 0.0
        self._camera: str | None = None  # the last camera availability sent
        self._labels: list[str] | None = None  # the labels in the mood entity's options
        self.sent = 0  # messages handed to paho, accepted or not (tests and stats)
        self.states = 0  # state messages paho accepted
        self.claim = {"host": socket.gethostname(), "pid": os.getpid(), "since": round(clock(), 3),
                      "id": secrets.token_hex(4), "machine": self.key[:16] if self.key else None}
        # unique per machine and device: a second bridge elsewhere never kicks this one off the broker
        self.client_id = f"emotion-edge-{self.topics.device_id}" + (f"-{self.key[:8]}" if self.key else "")
        self._mqtt, c = make_client(cfg, self.client_id, self.topics.availability)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_connect_fail = self._on_connect_fail
        c.on_message = self._on_message
        self.client = c

    @property
    def where(self) -> str:
        return f"{self.cfg.host}:{self.cfg.port}"

    def _discovery(self) -> list[tuple[str, dict[str, Any]]]:
        return discovery_messages(self.topics, self._labels, self.hw, self.key[:16] if self.key else None)

    # -- callbacks (paho's network thread) -----------------------------------------------------
    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            if reason.value in AUTH_CODES:
                self._fatal = (f"MQTT broker {self.where} refused the login"
                               f"{' as ' + repr(self.cfg.username) if self.cfg.username else ''}: {reason} "
                               "(check [mqtt] username and password_file)")
                client.disconnect()
            else:
                self._outage(f"refused the connection: {reason}")
            return
        t = self.topics
        with self._lock:
            self._connected = True
            if self._down_since is not None:
                log.warning("MQTT broker %s: connected again after %.0f s (%d tries)", self.where,
                            self._clock() - self._down_since, self._tries)
            elif not self._ever_connected:
                log.info("MQTT broker %s: connected as %s (device id %s); state on %s, availability on %s and %s, "
                         "discovery under %s/+/%s/", self.where, self.client_id, t.device_id, t.state,
                         t.availability, t.service, t.discovery, t.device_id)
            self._ever_connected = True
            self._down_since, self._tries = None, 0
            client.subscribe(t.bridge, qos=1)
            client.subscribe(f"{t.discovery}/sensor/+/mood/config", qos=1)  # our old device ids, if any
            self._send(t.bridge, json.dumps(self.claim, sort_keys=True), retain=True)
            self._labels = self.follower.labels
            for topic, payload in self._discovery():
                self._send(topic, json.dumps(payload, sort_keys=True), retain=True)
            self._send(t.availability, LIVE[0], retain=True)
            self._camera = None
            backlog = self.follower.backlog
            if backlog.rows:
                self._send(t.outage, json.dumps(backlog.as_dict(), sort_keys=True), retain=True)
            self.follower.backlog = type(backlog)()
            self._published = None  # publish the latest state now, whatever was sent before
            self._publish_state()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        try:
            data = json.loads(msg.payload.decode("utf-8")) if msg.payload else None
        except (UnicodeDecodeError, ValueError, RecursionError):
            return
        if not isinstance(data, dict):
            return
        if msg.topic == self.topics.bridge:
            self._on_claim(client, data)
        else:
            self._on_old_discovery(msg.topic, data)

    def _on_claim(self, client: Any, data: dict[str, Any]) -> None:
        """A newer bridge for this device id took over: say who, and stop (it keeps publishing)."""
        if data.get("id") == self.claim["id"] or self._fatal:
            return
        since = data.get("since")
        if not isinstance(since, (int, float)) or (since, str(data.get("id"))) < (self.claim["since"], self.claim["id"]):
            return  # an older one's claim: it will stop when it sees ours
        if self.key and data.get("machine") == self.claim["machine"] and not _alive(data.get("pid")):
            return  # left by an earlier run on this machine (whose clock may have been ahead before a reboot)
        self._fatal = (f"MQTT broker {self.where}: another emotion-edge publish took over device id "
                       f"{self.topics.device_id!r} (host {str(data.get('host'))[:64]!r}, pid {data.get('pid')}); "
                       "stopping this one: run one bridge per device, or give each its own [mqtt] device_id")
        client.disconnect()

    def _on_old_discovery(self, topic: str, data: dict[str, Any]) -> None:
        """A retained mood config of this machine under another device id (the id changed): remove it."""
        parts = topic.split("/")
        node = parts[-3] if len(parts) >= 4 else ""
        if not node or node == self.topics.device_id or mqtt_id_problem(node) is not None:
            return
        dev = data.get("device") if isinstance(data.get("device"), dict) else {}
        ours = bool(self.key) and dev.get("serial_number") == self.key[:16]
        legacy = ("origin" not in data and data.get("object_id") == f"emotion_edge_{node}_mood"
                  and node == sanitize_id(socket.gethostname()))  # the hostname default of older versions
        if not (ours or legacy):
            return
        old = [f"{self.topics.discovery}/{c}/{node}/{k}/config" for c, k in ENTITIES]
        state = data.get("state_topic")
        prefix = self.topics.base.rsplit("/", 1)[0]
        if isinstance(state, str) and state == f"{prefix}/{node}/state":
            old += [f"{prefix}/{node}/{leaf}" for leaf in ("state", "availability", "service", "outage", "bridge")]
        for t in old:
            self._send(t, "", retain=True)
        log.info("MQTT: removed the retained discovery of this machine's old device id %r (now %r)",
                 node, self.topics.device_id)

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        with self._lock:
            self._connected = False
        if self._fatal is None and reason is not None and getattr(reason, "value", 0) != 0:
            big = getattr(client, "too_big", None)
            if big:
                client.too_big = None
                self._outage(f"sent a packet of {big} bytes, over the {MAX_IN_BYTES >> 10} KiB accepted; "
                             "dropped the connection")
            else:
                self._outage(f"connection lost: {reason}")

    def _on_connect_fail(self, client: Any, userdata: Any) -> None:
        self._outage("unreachable")

    def _outage(self, why: str) -> None:
        """One warning when an outage starts; the tries only counted."""
        with self._lock:
            self._connected = False
            self._tries += 1
            if self._down_since is None:
                self._down_since = self._clock()
                log.warning("MQTT broker %s: %s; retrying with backoff (%d..%d s), not queueing meanwhile",
                            self.where, why, MIN_BACKOFF_S, MAX_BACKOFF_S)

    # -- publishing ---------------------------------------------------------------------------
    def _send(self, topic: str, payload: str, retain: bool) -> bool:
        self.sent += 1
        info = self.client.publish(topic, payload, qos=self.cfg.qos, retain=retain)
        return info.rc == self._mqtt.MQTT_ERR_SUCCESS

    def _publish_state(self) -> None:
        """Send the camera's availability and the state when changed or due (caller holds the lock)."""
        if not self._connected:
            return
        now = self._clock()
        camera = LIVE[0] if self.follower.camera_live(now, LOG_STALE_S) else LIVE[1]
        if camera != self._camera and self._send(self.topics.service, camera, retain=True):
            self._camera = camera
        labels = self.follower.labels
        if labels is not None and labels != self._labels:  # another model: the mood's options change
            self._labels = labels
            topic, payload = self._discovery()[0]
            self._send(topic, json.dumps(payload, sort_keys=True), retain=True)
        state = self.follower.state(now)
        if state is None or (state == self._published and now - self._published_at < self.heartbeat):
            return
        if self._send(self.topics.state, json.dumps(state, sort_keys=True), retain=self.cfg.retain):
            self.states += 1
        self._published, self._published_at = state, now

    # -- main thread --------------------------------------------------------------------------
    def _first_connect(self) -> None:
        """Connect once in the foreground, so that a TLS problem is one clear line."""
        try:
            self.client.connect(self.cfg.host, self.cfg.port, self.cfg.keepalive)
            return
        except (OSError, ValueError, EOFError) as e:
            fatal = connect_error(self.cfg, e)
            if fatal is not None:
                raise fatal from None
            self._outage(f"unreachable ({type(e).__name__}: {e})")
        self.client.connect_async(self.cfg.host, self.cfg.port, self.cfg.keepalive)

    def run(self, stop: threading.Event) -> int:
        """Publish until `stop` is set; a clean stop leaves `offline` (retained) behind."""
        self.follower.poll_log(count_backlog=False)  # the model's labels and the state, before discovery
        self.follower.poll_status()
        self._first_connect()
        self.client.loop_start()
        try:
            while True:
                if self._fatal:
                    raise MqttError(self._fatal)
                with self._lock:
                    connected = self._connected
                self.follower.poll_log(count_backlog=not connected)
                self.follower.poll_status()
                with self._lock:
                    self._publish_state()
                if stop.wait(self.poll):
                    break
        finally:
            said_offline = self._shutdown()
        log.info("MQTT: stopped; %d states published to %s%s", self.states, self.topics.state,
                 f", {LIVE[1]} left on {self.topics.availability}" if said_offline else "")
        return 0

    def _shutdown(self) -> bool:
        """Disconnect (saying offline first when connected and still ours); True when offline was sent."""
        with self._lock:
            connected = self._connected and self._fatal is None
        if connected:
            info = self.client.publish(self.topics.availability, LIVE[1], qos=self.cfg.qos, retain=True)
            try:
                info.wait_for_publish(timeout=3.0)
            except (RuntimeError, ValueError):
                pass
        # also when not connected: paho's thread would otherwise keep resending unacknowledged messages
        # to a broker that took the connection but never answers, and loop_stop would wait for it
        self.client.disconnect()
        self.client.loop_stop()
        self.follower.close()
        return connected


def _connect_once(cfg: MqttConfig, client_id: str, timeout: float) -> tuple[Any, Any, str | None]:
    """(mqtt, client, None) once the broker accepted us, or (.., .., one-line reason) when it did not."""
    mqtt, c = make_client(cfg, client_id, None)
    got: dict[str, Any] = {}
    done = threading.Event()

    def on_connect(client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        got["reason"] = reason
        done.set()
    c.on_connect = on_connect
    where = f"{cfg.host}:{cfg.port}"
    try:
        c.connect(cfg.host, cfg.port, cfg.keepalive)
    except (OSError, ValueError, EOFError) as e:
        fatal = connect_error(cfg, e)
        return mqtt, c, str(fatal) if fatal else f"MQTT broker {where}: unreachable ({type(e).__name__}: {e})"
    c.loop_start()
    if not done.wait(timeout):
        c.loop_stop()
        return mqtt, c, f"MQTT broker {where}: no answer to the login within {timeout:g} s"
    reason = got["reason"]
    if reason.is_failure:
        c.loop_stop()
        who = f" as {cfg.username!r}" if cfg.username else ""
        return mqtt, c, f"MQTT broker {where} refused the login{who}: {reason}"
    return mqtt, c, None


def probe(cfg: MqttConfig, timeout: float = 5.0) -> tuple[bool, str]:
    """For `check`: paho present, settings valid, broker reachable and the login accepted."""
    t = topics_for(cfg, machine_key())
    mqtt, c, problem = _connect_once(cfg, f"emotion-edge-check-{secrets.token_hex(4)}", timeout)
    if problem:
        return False, problem
    c.disconnect()
    c.loop_stop()
    import paho.mqtt
    who = f" as {cfg.username!r}" if cfg.username else " (anonymous)"
    return True, (f"paho-mqtt {paho.mqtt.__version__}; broker {cfg.host}:{cfg.port} reachable, login accepted{who}; "
                  f"device id {t.device_id}")


def uninstall(cfg: MqttConfig, timeout: float = 10.0) -> str:
    """Remove this device's retained discovery and state from the broker (Home Assistant drops the device)."""
    t = topics_for(cfg, machine_key())
    mqtt, c, problem = _connect_once(cfg, f"emotion-edge-uninstall-{secrets.token_hex(4)}", timeout)
    if problem:
        raise MqttError(problem)
    try:
        infos = [c.publish(f"{t.discovery}/{comp}/{t.device_id}/{key}/config", "", qos=1, retain=True)
                 for comp, key in ENTITIES]
        infos += [c.publish(topic, "", qos=1, retain=True) for topic in t.own]
        end = time.monotonic() + timeout
        for info in infos:
            info.wait_for_publish(timeout=max(0.1, end - time.monotonic()))
    finally:
        c.disconnect()
        c.loop_stop()
    return (f"removed device {t.device_id!r} from MQTT broker {cfg.host}:{cfg.port}: {len(ENTITIES)} discovery "
            f"configs under {t.discovery}/ and the retained topics under {t.base}/")
