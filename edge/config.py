"""Configuration: one TOML file, every key optional, unknown keys and bad values rejected by name.

Precedence: defaults < file (/etc/emotion-edge/config.toml or --config) < command-line flags.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from edge.errors import ConfigError
from edge.safeio import CONFIG_MAX_BYTES, read_text

DEFAULT_CONFIG_PATH = Path("/etc/emotion-edge/config.toml")
COLOR_RE = re.compile(r"^#[0-9a-fA-F]{6}$")
BARE_KEY_RE = re.compile(r"[A-Za-z0-9_-]+")
MAX_CONFIG_INT = 2 ** 53  # larger than any setting takes, and every float up to it is exact
BOM = "\ufeff"  # Windows editors start UTF-8 files with it; TOML has no place for it


def _opt(default: Any, doc: str, check: Callable[[Any], str | None] | None = None, **kw: Any) -> Any:
    """A config field with its documentation and validator (returns an error text or None)."""
    meta = {"doc": doc, "check": check}
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda d=default: type(d)(d), metadata=meta, **kw)
    return field(default=default, metadata=meta, **kw)


STRENGTH_RANGE = (0.0, 2.0)         # [calibrate] strength; also what calibration-report accepts
NEUTRAL_MARGIN_RANGE = (0.0, 5.0)   # [calibrate] neutral_margin


def _range(lo: float, hi: float) -> Callable[[Any], str | None]:
    return lambda v: None if lo <= v <= hi else f"must be between {lo:g} and {hi:g}"


def _one_of(*choices: str) -> Callable[[Any], str | None]:
    return lambda v: None if v in choices else f"must be one of {', '.join(choices)}"


def _color(v: str) -> str | None:
    return None if COLOR_RE.match(v) else "must be a colour like \"#ff8800\""


def _colors(v: dict) -> str | None:
    for k, c in v.items():
        if not isinstance(c, str) or not COLOR_RE.match(c):
            return f"colour for {k!r} must be like \"#ff8800\""
    return None


def _pin(v: int) -> str | None:
    return None if 0 <= v <= 27 else "must be a BCM GPIO number 0..27"


@dataclass
class SourceConfig:
    source: str = _opt("auto", "auto | picamera2 | sample | /dev/videoN | camera index | video file | image folder")
    width: int = _opt(640, "main stream / capture width", _range(16, 4096))
    height: int = _opt(480, "main stream / capture height", _range(16, 4096))
    lores_width: int = _opt(320, "picamera2 lores (YUV420) width used for detection", _range(16, 4096))
    lores_height: int = _opt(240, "picamera2 lores (YUV420) height used for detection", _range(16, 4096))
    fps: float = _opt(15.0, "camera frame rate", _range(1, 120))
    realtime: bool = _opt(False, "replay files at the clip's own pace instead of as fast as possible")
    poll: float = _opt(1.0, "seconds the loop waits for a camera frame before showing the no-camera LED", _range(0.05, 60))
    stall_after: float = _opt(3.0, "seconds without a camera frame before one warning line", _range(0.1, 3600))
    give_up_after: float = _opt(300.0, "stop reopening a lost camera after this many seconds and exit 1, so systemd restarts the service (0 = never)", _range(0, 86400))


@dataclass
class DetectConfig:
    scale_factor: float = _opt(1.1, "Haar scaleFactor", _range(1.01, 2.0))
    min_neighbors: int = _opt(5, "Haar minNeighbors", _range(0, 50))
    min_size: int = _opt(40, "smallest face side in frame pixels", _range(8, 2000))
    detect_width: int = _opt(320, "frames wider than this are downscaled before Haar", _range(64, 4096))
    detect_every: int = _opt(3, "run Haar every N frames, reuse boxes in between", _range(1, 1000))
    detect_hz: float = _opt(7.5, "track: run Haar at most this many times a second, reusing its boxes on the frames between "
                            "(0 = on every frame)", _range(0.0, 1000))
    max_faces: int = _opt(3, "faces classified and logged per frame (the largest drives the LED)", _range(1, 32))
    cascade: str = _opt("", "path to a Haar cascade XML (empty: find haarcascade_frontalface_default.xml)")
    mode: str = _opt("track", "track: full-frame Haar now and then, a small region search around each face in between | skip: full-frame Haar every detect_every frames", _one_of("track", "skip"))
    scan_period: float = _opt(1.0, "track: seconds between full-frame scans while faces are tracked (finds newcomers)", _range(0.0, 60))
    idle_period: float = _opt(0.4, "track: seconds between full-frame scans while no face is tracked", _range(0.0, 60))
    track_size: int = _opt(56, "track: face side in px at which the region around a tracked face is searched", _range(24, 200))
    smooth: float = _opt(0.3, "track: share of the previous box kept when a face moves (0 = no smoothing)", _range(0.0, 0.9))


@dataclass
class ClassifyConfig:
    model: str = _opt("", "path to NAME.tflite (with NAME.json beside it); empty: the bundled model")
    num_threads: int = _opt(1, "LiteRT interpreter threads", _range(1, 16))
    classify_hz: float = _opt(10.0, "classify at most this many times a second", _range(0.1, 1000))
    steady_hz: float = _opt(1.0, "read the faces only this many times a second while the mood is settled (the last reading "
                            "agrees with it, no face changed its look); at classify_hz or above: always classify_hz", _range(0.1, 1000))
    change: float = _opt(0.0, "a face whose look (16x16, mean removed) differs from its last reading's by this many grey levels "
                         "on average is read at classify_hz for a while (0 = looks are not compared)", _range(0.0, 255))
    flip_average: bool = _opt(False, "also classify the mirrored face and average: twice the time; the bundled model already "
                              "averages its mirror image inside (for a single net such as edgenet48_ft)")
    multi_crop: bool = _opt(False, "classify four framings of each face (the model's crop margin -0.05 to +0.10) and average: "
                            "4x the classify time; off in the loop, whose mood smoother averages over frames; `photo` and "
                            "`calibrate --photos` do it unless --single-crop, since a photo is one frame")


@dataclass
class MoodConfig:
    half_life: float = _opt(0.8, "seconds for the smoothed probabilities to move halfway to a new reading", _range(0.0, 60))
    margin: float = _opt(0.08, "a new mood must lead the current one by this much probability", _range(0.0, 1.0))
    hold: float = _opt(1.0, "... for this many seconds before the mood changes", _range(0.0, 60))
    stale: float = _opt(3.0, "an emotion that another mood has led, by any amount, for this many seconds fades to "
                             "neutral (readings with no clear leader, as while talking, rarely lead by the margin); "
                             "0: only the margin changes a mood", _range(0.0, 600))
    no_face_timeout: float = _opt(5.0, "seconds without a face before the mood becomes 'none'", _range(0.1, 3600))


DEFAULT_COLORS = {
    "angry": "#ff0000",
    "disgust": "#66ff00",
    "fear": "#9900ff",
    "happy": "#ffcc00",
    "sad": "#0033ff",
    "surprise": "#ff00cc",
    "neutral": "#ffffff",
}


@dataclass
class LedConfig:
    backend: str = _opt("auto", "auto (gpio on a Pi, else console) | gpio | console | none", _one_of("auto", "gpio", "console", "none"))
    red_pin: int = _opt(17, "BCM pin of the red leg", _pin)
    green_pin: int = _opt(27, "BCM pin of the green leg", _pin)
    blue_pin: int = _opt(22, "BCM pin of the blue leg", _pin)
    active_high: bool = _opt(True, "false for a common-anode LED")
    brightness: float = _opt(0.6, "cap on every channel (0..1)", _range(0.0, 1.0))
    fade: float = _opt(0.5, "seconds to fade to a new colour", _range(0.0, 30))
    idle_color: str = _opt("#000000", "colour when the mood is 'none' (#000000 = off)", _color)
    no_camera_color: str = _opt("#200000", "colour while the camera is lost", _color)
    colors: dict = _opt(dict(DEFAULT_COLORS), "emotion -> colour; the shown colour is the probability-weighted blend", _colors)
    mode: str = _opt("blend", "blend (the per-emotion colours above) | valence (hue from valence, blue..yellow; brightness from arousal)", _one_of("blend", "valence"))


@dataclass
class LogConfig:
    db: str = _opt("", "SQLite file; empty: $STATE_DIRECTORY/emotion-edge.db, /var/lib/emotion-edge/… or ~/.local/state/emotion-edge/…")
    summary_interval: float = _opt(60.0, "seconds between summary rows", _range(1, 86400))
    commit_interval: float = _opt(0.5, "seconds between batched commits (a crash loses at most this much)", _range(0.05, 60))
    keep_days: float = _opt(90.0, "delete rows older than this", _range(0.01, 36500))
    max_mb: float = _opt(50.0, "trim the oldest rows when the file grows past this", _range(0.1, 100000))


def _pin_or_off(v: int) -> str | None:
    return None if v == -1 or 0 <= v <= 27 else "must be a BCM GPIO number 0..27, or -1 for no button"


@dataclass
class CalibrateConfig:
    file: str = _opt("", "per-person calibration JSON; empty: calibration.json beside the log (made by `emotion-edge calibrate`)")
    seconds: float = _opt(5.0, "how long `emotion-edge calibrate` watches the resting face", _range(1, 120))
    min_frames: int = _opt(8, "frames with exactly one face needed for a calibration", _range(1, 10000))
    strength: float = _opt(1.0, "share of the person's resting-face bias removed (0 = calibration off, 1 = all)", _range(*STRENGTH_RANGE))
    neutral_margin: float = _opt(0.75, "log-odds head start for neutral after calibration: how much more expressive than "
                                      "their resting face a person must look to read as an emotion", _range(*NEUTRAL_MARGIN_RANGE))
    rest_spread: float = _opt(1.0, "with a resting face taken from several frames or photos, each emotion must also rise "
                                   "this many of its own standard deviations at rest (talking moves some, such as fear) "
                                   "before it counts; 0: off", _range(0.0, 5.0))
    button_pin: int = _opt(-1, "BCM pin of a push button (to GND) that starts a calibration; -1 = no button", _pin_or_off)
    learn: bool = _opt(True, "learn the resting face while watching and use it while no calibration is in use "
                             "(the service keeps it in learned-baseline.json beside the log)")
    learn_half_life: float = _opt(1800.0, "face time (s) after which what was learned counts half: how fast a lasting "
                                          "change of face, light or person is followed", _range(60, 604800))
    learn_min_seconds: float = _opt(10.0, "face time (s) to learn before the learned resting face is used", _range(5, 86400))
    learn_neutral_margin: float = _opt(0.5, "neutral's head start with the learned resting face (it holds expressions "
                                            "too, so less than neutral_margin); 0: a face at rest reads indifferent",
                                       _range(*NEUTRAL_MARGIN_RANGE))


@dataclass
class StatsConfig:
    interval: float = _opt(60.0, "seconds between stats log lines", _range(1, 86400))


MQTT_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")


def mqtt_id_problem(v: str) -> str | None:
    """[mqtt] device_id: empty (derived) or letters, digits, _ and - only (a full match: no trailing newline)."""
    return None if v == "" or MQTT_ID_RE.fullmatch(v) else "use letters, digits, _ and - only (at most 64)"


def mqtt_topic_problem(v: str) -> str | None:
    """A topic prefix: no wildcards, no $ at the start, no control characters, not empty."""
    t = v.strip("/")
    if not t or t.startswith("$") or any(c in "+#" or ord(c) < 32 or 0x7f <= ord(c) < 0xa0 for c in t):
        return "must be a topic without + # $ or control characters"
    return None


def mqtt_host_problem(v: str) -> str | None:
    """The broker host: empty (off), an IP address, or a DNS name whose labels are 1..63 bytes (IDNA)."""
    import ipaddress

    if v == "":
        return None
    try:
        ipaddress.ip_address(v)
        return None
    except ValueError:
        pass
    if len(v) > 253 or any(ord(c) <= 32 or c in "/\\@:[]" or 0x7f <= ord(c) < 0xa0 for c in v):
        return "must be a host name or IP address"
    try:
        v.encode("idna")  # an empty or over-long label fails here, not later in paho's thread
    except UnicodeError:
        return "must be a host name or IP address (each dot-separated part 1 to 63 characters)"
    return None


@dataclass
class MqttConfig:
    host: str = _opt("", "MQTT broker for `emotion-edge publish` (Home Assistant); empty = off", mqtt_host_problem)
    port: int = _opt(1883, "broker port (8883 is usual with tls)", _range(1, 65535))
    username: str = _opt("", "broker user name (empty: none)")
    password_file: str = _opt("", "file holding the broker password (never the password itself here); mode 0640 root:emotion-edge")
    tls: bool = _opt(False, "connect with TLS, verifying the broker's certificate")
    ca_file: str = _opt("", "CA certificate (PEM) for tls; empty: the system's CAs")
    topic_prefix: str = _opt("emotion-edge", "state topics: PREFIX/DEVICE_ID/...", mqtt_topic_problem)
    discovery_prefix: str = _opt("homeassistant", "Home Assistant MQTT discovery prefix", mqtt_topic_problem)
    device_id: str = _opt("", "this device in topics and Home Assistant (empty: the hostname and a short "
                              "hash of /etc/machine-id, so two Pis called raspberrypi stay two devices)", mqtt_id_problem)
    qos: int = _opt(1, "MQTT QoS of what is published", _range(0, 2))
    retain: bool = _opt(True, "retain the state, so a new subscriber sees the mood at once")
    keepalive: int = _opt(30, "seconds between MQTT keep-alive pings (the broker sends the last will after 1.5x)", _range(5, 3600))


@dataclass
class Config:
    source: SourceConfig = field(default_factory=SourceConfig)
    detect: DetectConfig = field(default_factory=DetectConfig)
    classify: ClassifyConfig = field(default_factory=ClassifyConfig)
    mood: MoodConfig = field(default_factory=MoodConfig)
    led: LedConfig = field(default_factory=LedConfig)
    log: LogConfig = field(default_factory=LogConfig)
    calibrate: CalibrateConfig = field(default_factory=CalibrateConfig)
    stats: StatsConfig = field(default_factory=StatsConfig)
    mqtt: MqttConfig = field(default_factory=MqttConfig)


def _check_value(section: str, f: dataclasses.Field, value: Any) -> Any:
    name = f"{section}.{f.name}"
    want = f.type if isinstance(f.type, type) else {"str": str, "int": int, "float": float, "bool": bool, "dict": dict}[f.type]
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_CONFIG_INT:
        # `1` and 400 zeros: float() raised OverflowError (a traceback; the service died on SIGHUP)
        raise ConfigError(f"config key {name}: number too large ({len(str(abs(value)))} digits)")
    if want is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if isinstance(value, str) and "\0" in value:  # every str key is a path or a name: open() refuses NUL
        raise ConfigError(f"config key {name}: must not contain a NUL character")
    if want is not bool and isinstance(value, bool) or not isinstance(value, want):
        raise ConfigError(f"config key {name}: expected {want.__name__}, got {type(value).__name__} {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"config key {name}: must be a finite number")
    check = f.metadata.get("check")
    err = check(value) if check else None
    if err:
        raise ConfigError(f"config key {name}: {err} (got {value!r})")
    return value


def apply(cfg: Config, data: dict[str, Any], origin: str = "config") -> Config:
    """Overlay a {section: {key: value}} mapping onto cfg; unknown sections/keys are errors."""
    sections = {f.name: f for f in dataclasses.fields(Config)}
    for sec, values in data.items():
        if sec not in sections:
            raise ConfigError(f"{origin}: unknown section [{sec}] (known: {', '.join(sections)})")
        if not isinstance(values, dict):
            raise ConfigError(f"{origin}: [{sec}] must be a table")
        obj = getattr(cfg, sec)
        fields = {f.name: f for f in dataclasses.fields(obj)}
        for key, value in values.items():
            if key not in fields:
                raise ConfigError(f"{origin}: unknown key {sec}.{key} (known: {', '.join(fields)})")
            value = _check_value(sec, fields[key], value)
            if sec == "led" and key == "colors":
                value = {**getattr(obj, key), **value}
            setattr(obj, key, value)
    return cfg


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Defaults, then the file (if given, or the default path if it exists), then overrides."""
    cfg = Config()
    if path is None and DEFAULT_CONFIG_PATH.is_file():
        path = DEFAULT_CONFIG_PATH
    if path is not None:
        p = Path(path)
        try:
            text = read_text(p, CONFIG_MAX_BYTES)  # no FIFO, device or giant file
            data = tomllib.loads(text.removeprefix(BOM))  # a BOM is the editor's, not the TOML's
        except FileNotFoundError:
            raise ConfigError(f"{p}: config file not found") from None
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"{p}: cannot read config ({e})") from None
        except (tomllib.TOMLDecodeError, RecursionError) as e:
            raise ConfigError(f"{p}: not valid TOML ({e or 'nested too deeply'})") from None
        except ValueError as e:  # an integer of over 4300 digits: Python refuses to convert it
            raise ConfigError(f"{p}: not valid TOML (a number too large: {str(e).split(':')[0]})") from None
        apply(cfg, data, str(p))
    if overrides:
        apply(cfg, overrides, "command line")
    _check_lores(cfg.source)
    _check_pins(cfg)
    return cfg


def _check_pins(cfg: Config) -> None:
    """One GPIO pin can drive one thing: two LED legs (or the button) on one pin pass every range check
    but show a wrong colour, or gpiozero refuses the second at start."""
    used: dict[int, str] = {}
    pins = [("led.red_pin", cfg.led.red_pin), ("led.green_pin", cfg.led.green_pin), ("led.blue_pin", cfg.led.blue_pin)]
    if cfg.calibrate.button_pin >= 0:
        pins.append(("calibrate.button_pin", cfg.calibrate.button_pin))
    for name, pin in pins:
        if pin in used:
            raise ConfigError(f"config keys {used[pin]} and {name}: both are BCM pin {pin}; each needs its own pin")
        used[pin] = name


def _check_lores(src: SourceConfig) -> None:
    """picamera2 refuses a lores stream larger than main (at configure, long after start-up): say so now."""
    if src.lores_width > src.width or src.lores_height > src.height:
        raise ConfigError(f"config keys source.lores_width/lores_height: the lores stream {src.lores_width}x{src.lores_height} "
                          f"may not be larger than the main stream source.width/height {src.width}x{src.height}")


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        # JSON string escapes (\n, \uXXXX) are valid TOML; DEL is the one control JSON leaves raw
        return json.dumps(v, ensure_ascii=False).replace("\x7f", "\\u007f")
    return repr(v)


def _toml_key(k: str) -> str:
    return k if BARE_KEY_RE.fullmatch(k) else _toml_value(k)


def dump_config(cfg: Config, with_docs: bool = True, commented: bool = False) -> str:
    """TOML text of the effective config; `commented` gives the installer's all-defaults template."""
    out: list[str] = []
    pre = "# " if commented else ""
    for sec in dataclasses.fields(cfg):
        obj = getattr(cfg, sec.name)
        out.append(f"{pre}[{sec.name}]")
        nested: list[tuple[str, dict]] = []
        for f in dataclasses.fields(obj):
            v = getattr(obj, f.name)
            if isinstance(v, dict):
                nested.append((f.name, v))
                continue
            if with_docs:
                out.append(f"# {f.metadata.get('doc', '')}")
            out.append(f"{pre}{f.name} = {_toml_value(v)}")
        for name, d in nested:
            out.append("")
            if with_docs:
                doc = next(f.metadata.get("doc", "") for f in dataclasses.fields(obj) if f.name == name)
                out.append(f"# {doc}")
            out.append(f"{pre}[{sec.name}.{name}]")
            out.extend(f"{pre}{_toml_key(k)} = {_toml_value(c)}" for k, c in d.items())
        out.append("")
    return "\n".join(out)


def state_dir(for_reading: bool = False) -> Path:
    """Where the log lives: systemd's StateDirectory, the system default, or the user's state dir.

    Readers (`emotion-edge log` over ssh) use the system directory whenever it exists, even though
    they cannot write there; writers fall back to the user's state dir when it is not writable.
    """
    env = os.environ.get("STATE_DIRECTORY")
    if env:
        return Path(env.split(":")[0])
    system = Path("/var/lib/emotion-edge")
    if system.is_dir() and (for_reading or os.access(system, os.W_OK)):
        return system
    return Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state")) / "emotion-edge"


def default_db_path(for_reading: bool = False) -> Path:
    """The log when log.db is empty: in the service's state folder, so it is the service's own."""
    return state_dir(for_reading) / "emotion-edge.db"


def db_path(cfg: Config, for_reading: bool = False) -> Path:
    return Path(cfg.log.db) if cfg.log.db else default_db_path(for_reading)


def learned_baseline_path(cfg: Config, for_reading: bool = False) -> Path:
    """Where the service keeps the resting face it learned: beside the log (the service can write there)."""
    return db_path(cfg, for_reading).parent / "learned-baseline.json"


def calibration_path(cfg: Config, for_reading: bool = False) -> Path:
    """The per-person calibration file: [calibrate] file, else calibration.json beside the log."""
    return Path(cfg.calibrate.file).expanduser() if cfg.calibrate.file else db_path(cfg, for_reading).parent / "calibration.json"
