"""LED tests on gpiozero's MockFactory with PWM pins: the recorded pin states are the truth."""
from __future__ import annotations

import io
import warnings
from dataclasses import replace

import numpy as np
import pytest
from gpiozero.pins.mock import MockFactory, MockPWMPin

from edge.config import LedConfig
from edge.contract import FER_LABELS
from edge.errors import EdgeError
from edge.led import (SPARE_COLORS, ConsoleLed, GpioLed, LedError, NullLed, blend_color, make_led, on_raspberry_pi,
                      rgb_to_hex, spare_colors)
from edge.types import Mood

R, G, B = 17, 27, 22


def mood(label: str, p: float = 1.0) -> Mood:
    if label == "none":
        return Mood("none", 0.0, None, FER_LABELS, 0.0)
    probs = np.full(len(FER_LABELS), (1 - p) / (len(FER_LABELS) - 1), dtype=np.float32)
    probs[FER_LABELS.index(label)] = p
    return Mood(label, p, probs, FER_LABELS, 0.0)


def pins(f) -> tuple[float, float, float]:
    return (f.pin(R).state, f.pin(G).state, f.pin(B).state)


def test_blend_color_weights_and_missing_labels_get_spare_colors():
    colors = {"a": "#ff0000", "b": "#0000ff"}
    assert blend_color([1, 0], ("a", "b"), colors) == pytest.approx((1, 0, 0))
    assert blend_color([0.5, 0.5], ("a", "b"), colors) == pytest.approx((0.5, 0, 0.5))
    assert blend_color([0, 1], ("a", "zzz"), colors) == pytest.approx((0, 1, 1))  # the first spare: cyan
    with pytest.raises(ValueError, match="3 probabilities for 2 labels"):
        blend_color([1, 0, 0], ("a", "b"), colors)
    with pytest.raises(ValueError, match="0 probabilities for 2 labels"):
        blend_color(0.5, ("a", "b"), colors)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no 0/0 on the way
        assert blend_color([0, 0], ("a", "b"), colors) == (0.0, 0.0, 0.0)
    assert rgb_to_hex((1.5, -0.2, 0.5)) == "#ff0080"  # clipped to 0..1 first


def test_spare_colors_skip_the_configured_ones_and_are_reused_once_all_are_taken():
    colors = {"a": "#00FFFF", "b": "#ff6600"}  # the first two spares, one in capitals
    assert spare_colors(("a", "x", "b", "y", "x"), colors) == {"x": "#008080", "y": "#99ff33"}
    taken = {f"c{i}": c for i, c in enumerate(SPARE_COLORS)}
    missing = [f"m{i}" for i in range(len(SPARE_COLORS) + 1)]
    got = spare_colors((*taken, *missing), taken)
    assert list(got) == missing and list(got.values()) == [*SPARE_COLORS, SPARE_COLORS[0]]


def test_unknown_labels_get_distinct_colors_never_neutral_white(caplog):
    """Issue 12 (7): a model's own labels (contempt, ...) used to light white, which is neutral's colour."""
    labels = ("angry", "contempt", "happy", "neutral", "bored", "confused")
    colors = dict(LedConfig().colors)
    shown = [rgb_to_hex(blend_color(np.eye(len(labels))[i], labels, colors)) for i in range(len(labels))]
    assert len(set(shown)) == len(labels)  # every label its own colour
    assert shown[labels.index("neutral")] == "#ffffff"
    assert all(c not in colors.values() for c in (shown[1], shown[4], shown[5]))  # none borrows an emotion's colour
    assert spare_colors(labels, colors) == {"contempt": "#00ffff", "bored": "#ff6600", "confused": "#008080"}
    # the light says so once per label set, not per frame
    led = NullLed(LedConfig(brightness=1.0))
    probs = np.eye(len(labels), dtype=np.float32)[1]
    with caplog.at_level("WARNING", logger="edge.led"):
        for i in range(50):
            led.show(Mood("contempt", 1.0, probs, labels, float(i)), float(i))
    assert led.target_for(Mood("contempt", 1.0, probs, labels, 0.0)) == pytest.approx((0.0, 1.0, 1.0))
    said = [r.getMessage() for r in caplog.records if "spare colours" in r.getMessage()]
    assert said == ["LED: labels with no configured colour get spare colours: contempt #00ffff, bored #ff6600, "
                    "confused #008080 (set [led] colors to choose)"]


def test_check_and_run_name_the_spare_colors(tmp_path):
    import json
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    src = root / "tests" / "fixtures" / "models" / "tiny_int8"
    model = tmp_path / "own.tflite"
    shutil.copy(src.with_suffix(".tflite"), model)
    meta = json.loads(src.with_suffix(".json").read_text())
    meta["labels"] = ["angry", "contempt", "fear", "happy", "sad", "surprise", "neutral"]
    model.with_suffix(".json").write_text(json.dumps(meta))

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "edge.cli", *args], cwd=root, capture_output=True, text=True,
                              timeout=120)

    r = cli("check", "--json", "--model", str(model), "--led", "none")
    detail = json.loads(r.stdout)["model"]["detail"]
    assert "no configured colour for contempt (shown #00ffff)" in detail, detail
    r = cli("run", "--source", str(root / "tests" / "fixtures" / "faces"), "--model", str(model), "--led", "console",
            "--db", str(tmp_path / "l.db"), "--max-frames", "7", "--no-calibration")
    assert r.returncode == 0, r.stderr
    assert "spare colours: contempt #00ffff" in r.stderr


def test_gpio_shows_blend_times_brightness(factory):
    cfg = LedConfig(brightness=0.5, fade=0.0)
    with GpioLed(cfg, pin_factory=factory) as led:
        led.show(mood("angry"), 0.0)  # #ff0000
        assert pins(factory) == pytest.approx((0.5, 0.0, 0.0))
        led.show(mood("happy"), 0.1)  # #ffcc00
        assert pins(factory) == pytest.approx((0.5, 0.4, 0.0), abs=1e-3)
        # 50/50 angry + sad blends both colours
        probs = np.zeros(7, np.float32)
        probs[0] = probs[4] = 0.5
        led.show(Mood("angry", 0.5, probs, FER_LABELS, 0.2), 0.2)
        assert pins(factory) == pytest.approx((0.25, 0.05, 0.25), abs=1e-3)


def test_brightness_cap_holds_for_every_mood(factory):
    cfg = LedConfig(brightness=0.3, fade=0.0)
    with GpioLed(cfg, pin_factory=factory) as led:
        for i, lab in enumerate(FER_LABELS):
            led.show(mood(lab), float(i))
            assert max(pins(factory)) <= 0.3 + 1e-9
        assert pins(factory) == pytest.approx((0.3, 0.3, 0.3))  # neutral is white


def test_active_low_inverts_pins(factory):
    cfg = LedConfig(active_high=False, brightness=1.0, fade=0.0)
    with GpioLed(cfg, pin_factory=factory) as led:
        assert pins(factory) == pytest.approx((1, 1, 1))  # off = pins high on a common anode
        led.show(mood("angry"), 0.0)
        assert pins(factory) == pytest.approx((0, 1, 1))
        led.off()
        assert pins(factory) == pytest.approx((1, 1, 1))
    # closed: gpiozero releases the pins (inputs), so a common-anode LED gets no current
    assert factory.pin(R).function == "input"


def test_fade_is_linear_and_reaches_target_after_fade_seconds(factory):
    cfg = LedConfig(brightness=1.0, fade=0.5)
    led = GpioLed(cfg, pin_factory=factory)
    led.show(mood("angry"), 10.0)  # starts the fade clock
    assert pins(factory)[0] == 0.0
    led.show(mood("angry"), 10.25)
    assert pins(factory)[0] == pytest.approx(0.5, abs=0.01)
    led.show(mood("angry"), 10.5)
    assert pins(factory) == pytest.approx((1.0, 0.0, 0.0))
    # fade to blue: red falls and blue rises together, done after `fade` seconds
    t = 10.5
    while t < 11.0 - 1e-9:
        t += 1 / 30
        led.show(mood("sad"), t)
    assert pins(factory) == pytest.approx((0.0, 0.2, 1.0), abs=1e-6)
    led.close()


def test_none_shows_idle_color_scaled_and_no_camera_state(factory):
    cfg = LedConfig(brightness=0.5, fade=0.0, idle_color="#202020", no_camera_color="#ff0000")
    with GpioLed(cfg, pin_factory=factory) as led:
        led.show(mood("none"), 0.0)
        assert pins(factory) == pytest.approx((0x20 / 255 * 0.5,) * 3)
        led.show_state("no_camera", 1.0)
        assert pins(factory) == pytest.approx((0.5, 0, 0))


def test_writes_only_on_change(factory):
    cfg = LedConfig(brightness=1.0, fade=0.2)
    writes = []
    led = GpioLed(cfg, pin_factory=factory)
    led._write = lambda rgb: writes.append(rgb)  # count device writes, pins untouched
    m = mood("happy")
    for i in range(300):
        led.show(m, i / 30)
    # a 0.2 s fade at 30 fps is ~6 steps; after that nothing is written
    assert 3 <= len(writes) <= 8
    assert writes[-1] == pytest.approx((1.0, 0.8, 0.0))
    led.close()


def test_close_turns_off_and_is_safe_twice(factory):
    led = GpioLed(LedConfig(brightness=1.0, fade=0.0), pin_factory=factory)
    led.show(mood("happy"), 0.0)
    assert max(pins(factory)) > 0
    led.close()
    assert pins(factory) == (0, 0, 0)
    led.close()
    led.show(mood("happy"), 1.0)  # ignored after close, no exception
    # the pins were released: a new LED can take them
    GpioLed(LedConfig(), pin_factory=factory).close()


def test_pin_busy_is_a_clear_edge_error(factory):
    led = GpioLed(LedConfig(), pin_factory=factory)
    with pytest.raises(LedError, match=r"BCM pins 17,27,22") as e:
        GpioLed(LedConfig(), pin_factory=factory)
    assert isinstance(e.value, EdgeError) and "\n" not in str(e.value)
    led.close()


def test_no_pin_factory_is_a_clear_edge_error(monkeypatch):
    monkeypatch.setenv("GPIOZERO_PIN_FACTORY", "nosuchfactory")
    import gpiozero

    monkeypatch.setattr(gpiozero.Device, "pin_factory", None)
    with pytest.raises(LedError, match="cannot be used"):
        GpioLed(LedConfig())


def test_console_prints_changes_not_frames():
    out = io.StringIO()
    led = ConsoleLed(LedConfig(brightness=1.0), stream=out)
    for i in range(100):
        led.show(mood("happy", 0.81), 2.0 + i / 30)
    for i in range(100):
        led.show(mood("sad"), 6.0 + i / 30)
    led.show(mood("none"), 12.3)
    led.show_state("no_camera", 13.0)
    led.show_state("no_camera", 13.1)
    led.close()
    lines = out.getvalue().splitlines()
    happy = rgb_to_hex(blend_color(mood("happy", 0.81).probs, FER_LABELS, LedConfig().colors))
    assert happy == "#efb71f"
    assert lines == [
        f"   0.0s  mood happy (0.81)  LED {happy}",
        "   4.0s  mood sad (1.00)  LED #0033ff",
        "  10.3s  mood none  LED #000000",
        "  11.0s  no_camera  LED #200000",
    ]


def test_console_says_a_colour_change_of_24_levels_and_a_new_mood_in_the_same_colour():
    """Same mood: a line once the colour moved 24/255 or more on some channel since the last line said;
    a new mood always gets its line."""
    labels = ("a", "b", "c")
    out = io.StringIO()
    led = ConsoleLed(LedConfig(brightness=1.0, colors={"a": "#000000", "b": "#ff0000", "c": "#ff0000"}), stream=out)

    def show(label: str, red: float, t: float) -> None:  # red: the share of the red labels b and c
        probs = np.array([1 - red, red if label == "b" else 0.0, red if label == "c" else 0.0])
        led.show(Mood(label, float(probs.max()), probs, labels, t), t)

    show("b", 0.0, 10.0)
    show("b", 0.094, 11.0)   # just under 24/255 = 0.0941: no line
    show("b", 0.0945, 12.0)  # just over
    show("c", 0.0945, 13.0)  # the same colour, another mood
    show("c", 0.0, 14.0)
    assert out.getvalue().splitlines() == [
        "   0.0s  mood b (1.00)  LED #000000",
        "   2.0s  mood b (0.91)  LED #180000",
        "   3.0s  mood c (0.91)  LED #180000",
        "   4.0s  mood c (1.00)  LED #000000",
    ]


def test_null_led_and_make_led(factory, tmp_path, monkeypatch):
    assert isinstance(make_led(LedConfig(backend="none")), NullLed)
    assert isinstance(make_led(LedConfig(backend="console")), ConsoleLed)
    gl = make_led(LedConfig(backend="gpio"), pin_factory=factory)
    assert isinstance(gl, GpioLed)
    gl.close()
    model = tmp_path / "model"
    model.write_text("Raspberry Pi 4 Model B Rev 1.4\x00")
    assert on_raspberry_pi(model)
    assert not on_raspberry_pi(tmp_path / "missing")
    import edge.led as led_mod

    monkeypatch.setattr(led_mod, "PI_MODEL_FILE", tmp_path / "missing")
    assert isinstance(make_led(LedConfig(backend="auto")), ConsoleLed)
    with NullLed(replace(LedConfig(), fade=0)) as n:
        n.show(mood("happy"), 0.0)
        assert n.shown == pytest.approx((0.6, 0.48, 0.0))


class _LgpioError(Exception):
    """What lgpio raises for a busy or missing pin: a bare Exception subclass, not OSError."""


_LgpioError.__module__, _LgpioError.__name__, _LgpioError.__qualname__ = "lgpio", "error", "error"


class BusyPinFactory(MockFactory):
    def pin(self, spec, **kwargs):
        raise _LgpioError("GPIO busy")


def test_lgpio_error_is_a_clear_led_error():
    with pytest.raises(LedError, match=r"BCM pins 17,27,22 cannot be used: error: GPIO busy") as e:
        make_led(LedConfig(backend="gpio"), pin_factory=BusyPinFactory(pin_class=MockPWMPin))
    assert "\n" not in str(e.value)
