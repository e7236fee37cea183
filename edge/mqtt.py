"""The MQTT bridge behind `emotion-edge publish`: the local mood -> an MQTT broker / Home Assistant.

A separate process from the camera service, so the process that sees faces never touches the
network: this one only reads the log and status.json, and only labels and numbers leave the device.

- Home Assistant discovery: retained config messages for one device (mood, confidence, valence,
  arousal, face, frames/s), all reading one JSON state topic through value templates.
- Availability: `online` on connect, `offline` on a clean stop, and the same `offline` as the
  broker's last will when the process dies (kill -9, power cut): HA greys the entities out.
- Broker away: paho reconnects with exponential backoff (1 s .. 60 s); one warning per outage,
  nothing is queued while disconnected (memory stays flat), and on reconnect the latest state
  and a summary of the outage are published, retained.
- A refused login or an untrusted TLS certificate is a configuration problem: one line, exit 2.
"""
from __future__ import annotations

import json
import logging
import re
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from edge import __version__
from edge.config import MqttConfig
from edge.errors import ConfigError, EdgeError
from edge.follow import LogFollower

log = logging.getLogger(__name__)

POLL_S = 0.5  # log/status poll period: with the log's 0.5 s commits, a change is out within ~1 s
MIN_BACKOFF_S, MAX_BACKOFF_S = 1, 60
MAX_QUEUED = 100  # paho's own queue cap: publishes beyond it fail instead of growing memory
ID_RE = re.compile(r"^[A-Za-z0-9_-]+$")
AUTH_CODES = {4, 5, 134, 135}  # MQTT 3.1.1 / 5: bad user name or password, not authorized


class MqttError(EdgeError):
    """The broker refused us for a reason retrying cannot fix (login, TLS trust)."""


def sanitize_id(text: str) -> str:
    """A hostname -> a topic- and Home-Assistant-safe id: lowercase [a-z0-9_-]."""
    out = re.sub(r"[^a-z0-9_-]+", "_", text.strip().lower()).strip("_-")
    return out or "emotion-edge"


def device_id(cfg: MqttConfig) -> str:
    if cfg.device_id:
        if not ID_RE.match(cfg.device_id):
            raise ConfigError(f"config key mqtt.device_id: use letters, digits, _ and - only (got {cfg.device_id!r})")
        return cfg.device_id
    return sanitize_id(socket.gethostname())


def _check_prefix(key: str, value: str) -> str:
    v = value.strip("/")
    if not v or any(c in v for c in "+#\0") or v.startswith("$"):
        raise ConfigError(f"config key mqtt.{key}: must be a topic without + # $ (got {value!r})")
    return v


def read_password(cfg: MqttConfig) -> str | None:
    if not cfg.password_file:
        return None
    try:
        return Path(cfg.password_file).read_text(encoding="utf-8").rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"config key mqtt.password_file: cannot read {cfg.password_file} "
                          f"({getattr(e, 'strerror', None) or e})") from None


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
    def outage(self) -> str:
        return f"{self.base}/outage"


def topics_for(cfg: MqttConfig) -> Topics:
    dev = device_id(cfg)
    return Topics(f"{_check_prefix('topic_prefix', cfg.topic_prefix)}/{dev}",
                  _check_prefix("discovery_prefix", cfg.discovery_prefix), dev)


def discovery_messages(t: Topics) -> list[tuple[str, dict[str, Any]]]:
    """(topic, payload) of each Home Assistant discovery config, all under one device."""
    device = {"identifiers": [f"emotion-edge_{t.device_id}"], "name": f"emotion-edge {t.device_id}",
              "model": "emotion-edge mood light", "manufacturer": "emotion-edge", "sw_version": __version__}
    common = {"state_topic": t.state, "availability_topic": t.availability,
              "payload_available": "online", "payload_not_available": "offline", "device": device}

    def ent(component: str, key: str, name: str, template: str, **extra: Any) -> tuple[str, dict[str, Any]]:
        payload = {"name": name, "unique_id": f"emotion-edge_{t.device_id}_{key}",
                   "object_id": f"emotion_edge_{t.device_id}_{key}", "value_template": template, **common, **extra}
        return f"{t.discovery}/{component}/{t.device_id}/{key}/config", payload

    return [
        ent("sensor", "mood", "Mood", "{{ value_json.mood }}", icon="mdi:emoticon-outline",
            json_attributes_topic=t.state,
            json_attributes_template="{{ {'confidence': value_json.confidence, 'probabilities': value_json.probs,"
                                     " 'valence': value_json.valence, 'arousal': value_json.arousal,"
                                     " 'service': value_json.service} | tojson }}"),
        ent("sensor", "confidence", "Confidence", "{{ (value_json.confidence * 100) | round(1) }}",
            unit_of_measurement="%", state_class="measurement", icon="mdi:gauge"),
        ent("sensor", "valence", "Valence", "{{ value_json.valence }}", state_class="measurement",
            icon="mdi:emoticon-happy-outline"),
        ent("sensor", "arousal", "Arousal", "{{ value_json.arousal }}", state_class="measurement",
            icon="mdi:lightning-bolt-outline"),
        ent("binary_sensor", "face", "Face", "{{ value_json.face }}", payload_on="ON", payload_off="OFF",
            device_class="occupancy"),
        ent("sensor", "fps", "Frames per second", "{{ value_json.fps }}", unit_of_measurement="frames/s",
            state_class="measurement", entity_category="diagnostic", icon="mdi:camera-timer"),
    ]


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


class Bridge:
    """Owns the paho client (network thread) and the follower (main thread)."""

    def __init__(self, cfg: MqttConfig, db: Path, status: Path | None, *, poll: float = POLL_S,
                 clock: Callable[[], float] = time.time) -> None:
        if not cfg.host:
            raise ConfigError("config key mqtt.host is empty: set the broker in [mqtt] (publishing is off without it)")
        self.cfg = cfg
        self.topics = topics_for(cfg)
        self.poll = poll
        self._clock = clock
        self.follower = LogFollower(db, status)
        self._lock = threading.Lock()
        self._connected = False
        self._ever_connected = False
        self._down_since: float | None = None
        self._tries = 0
        self._fatal: str | None = None
        self._published: dict[str, Any] | None = None  # the last state payload sent
        self.sent = 0  # messages handed to paho (tests and stats)
        mqtt = _paho()
        self._mqtt = mqtt
        password = read_password(cfg)
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"emotion-edge-{self.topics.device_id}",
                        protocol=mqtt.MQTTv311, clean_session=True)
        if cfg.username or password is not None:
            c.username_pw_set(cfg.username or None, password)
        if cfg.tls:
            if cfg.ca_file and not Path(cfg.ca_file).is_file():
                raise ConfigError(f"config key mqtt.ca_file: no file at {cfg.ca_file}")
            try:
                c.tls_set(ca_certs=cfg.ca_file or None, cert_reqs=ssl.CERT_REQUIRED)
            except (ssl.SSLError, OSError, ValueError) as e:
                raise ConfigError(f"config key mqtt.ca_file: cannot use {cfg.ca_file} as a CA ({e})") from None
        c.will_set(self.topics.availability, "offline", qos=cfg.qos, retain=True)
        c.reconnect_delay_set(MIN_BACKOFF_S, MAX_BACKOFF_S)
        c.max_queued_messages_set(MAX_QUEUED)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_connect_fail = self._on_connect_fail
        self.client = c

    @property
    def where(self) -> str:
        return f"{self.cfg.host}:{self.cfg.port}"

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
        with self._lock:
            self._connected = True
            if self._down_since is not None:
                log.warning("MQTT broker %s: connected again after %.0f s (%d tries)", self.where,
                            self._clock() - self._down_since, self._tries)
            elif not self._ever_connected:
                log.info("MQTT broker %s: connected as %s", self.where, self.topics.base)
            self._ever_connected = True
            self._down_since, self._tries = None, 0
            for topic, payload in discovery_messages(self.topics):
                self._send(topic, json.dumps(payload, sort_keys=True), retain=True)
            self._send(self.topics.availability, "online", retain=True)
            backlog = self.follower.backlog
            if backlog.rows:
                self._send(self.topics.outage, json.dumps(backlog.as_dict(), sort_keys=True), retain=True)
            self.follower.backlog = type(backlog)()
            self._published = None  # publish the latest state now, whatever was sent before
            self._publish_state()

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        with self._lock:
            self._connected = False
        if self._fatal is None and reason is not None and getattr(reason, "value", 0) != 0:
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
    def _send(self, topic: str, payload: str, retain: bool) -> None:
        info = self.client.publish(topic, payload, qos=self.cfg.qos, retain=retain)
        if info.rc == self._mqtt.MQTT_ERR_SUCCESS:
            self.sent += 1

    def _publish_state(self) -> None:
        """Send the state when it differs from the last one sent (caller holds the lock)."""
        state = self.follower.state(self._clock())
        if state is None or not self._connected or state == self._published:
            return
        self._send(self.topics.state, json.dumps(state, sort_keys=True), retain=self.cfg.retain)
        self._published = state

    # -- main thread --------------------------------------------------------------------------
    def _first_connect(self) -> None:
        """Connect once in the foreground, so that a TLS trust failure is one clear line."""
        try:
            self.client.connect(self.cfg.host, self.cfg.port, self.cfg.keepalive)
            return
        except ssl.SSLCertVerificationError as e:
            raise MqttError(f"MQTT broker {self.where}: TLS certificate not trusted ({e.verify_message}); "
                            "check [mqtt] ca_file and host") from None
        except ssl.SSLError as e:
            raise MqttError(f"MQTT broker {self.where}: TLS handshake failed ({e.reason or e}); "
                            "is the port a TLS listener? check [mqtt] tls and port") from None
        except (OSError, ValueError) as e:
            self._outage(f"unreachable ({type(e).__name__}: {e})")
        self.client.connect_async(self.cfg.host, self.cfg.port, self.cfg.keepalive)

    def run(self, stop: threading.Event) -> int:
        """Publish until `stop` is set; a clean stop leaves `offline` (retained) behind."""
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
            self._shutdown()
        return 0

    def _shutdown(self) -> None:
        with self._lock:
            connected = self._connected and self._fatal is None
        if connected:
            info = self.client.publish(self.topics.availability, "offline", qos=self.cfg.qos, retain=True)
            try:
                info.wait_for_publish(timeout=3.0)
            except (RuntimeError, ValueError):
                pass
            self.client.disconnect()
        self.client.loop_stop()
        self.follower.close()
