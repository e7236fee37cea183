"""LED behaviours the main LED tests leave out: `auto` on a Pi, moods without probabilities, sub-step
changes, and the calibration states (on gpiozero's MockPWMPin: the pin states are the truth)."""
from __future__ import annotations

import numpy as np
import pytest

import edge.led as led_mod
from edge.config import LedConfig
from edge.contract import FER_LABELS
from edge.led import STEP, GpioLed, make_led
from edge.types import Mood

R, G, B = 17, 27, 22


def pins(f) -> tuple[float, float, float]:
    return (f.pin(R).state, f.pin(G).state, f.pin(B).state)


def test_auto_on_a_raspberry_pi_drives_the_gpio_led(factory, tmp_path, monkeypatch):
    model = tmp_path / "model"
    model.write_text("Raspberry Pi 5 Model B Rev 1.0\x00")
    monkeypatch.setattr(led_mod, "PI_MODEL_FILE", model)
    from gpiozero import Device

    monkeypatch.setattr(Device, "pin_factory", factory)
    led = make_led(LedConfig(backend="auto", fade=0.0, brightness=1.0))
    try:
        assert isinstance(led, GpioLed)
        led.show_state("no_camera", 0.0)
        assert pins(factory) == pytest.approx((0x20 / 255, 0.0, 0.0))
    finally:
        led.close()


def test_a_mood_without_probabilities_shows_its_own_colour_or_white(factory):
    with GpioLed(LedConfig(fade=0.0, brightness=1.0), pin_factory=factory) as led:
        led.show(Mood("sad", 0.9, None, FER_LABELS, 0.0), 0.0)
        assert pins(factory) == pytest.approx(led_mod.hex_to_rgb(LedConfig().colors["sad"]))
        led.show(Mood("contempt", 0.9, None, FER_LABELS, 0.1), 0.1)  # a label with no colour
        assert pins(factory) == pytest.approx((1.0, 1.0, 1.0))


def test_changes_below_one_pwm_step_are_not_written(factory):
    led = GpioLed(LedConfig(fade=0.0, brightness=1.0), pin_factory=factory)
    writes = []
    real = led._write
    led._write = lambda rgb: (writes.append(rgb), real(rgb))
    probs = np.zeros(len(FER_LABELS), np.float32)
    probs[FER_LABELS.index("sad")] = 1.0
    led.show(Mood("sad", 1.0, probs, FER_LABELS, 0.0), 0.0)
    assert len(writes) == 1
    # a slow fade: each frame moves the colour by a fraction of one PWM step
    led.cfg.fade = 30.0
    happy = np.zeros_like(probs)
    happy[FER_LABELS.index("happy")] = 1.0
    for i in range(1, 6):
        led.show(Mood("happy", 1.0, happy, FER_LABELS, 0.0), i * 0.001)  # 1/30000 of full scale per frame
    assert len(writes) == 1, "sub-step changes must not reach the pins"
    assert max(abs(a - b) for a, b in zip(led.shown, writes[0])) < STEP
    led.close()


def test_calibration_states_white_breathe_green_and_red_blink(factory):
    with GpioLed(LedConfig(fade=0.0, brightness=0.8), pin_factory=factory) as led:
        seen = []
        for i in range(21):
            led.show_state("calibrating", i / 10)
            r, g, b = pins(factory)
            assert r == pytest.approx(g) == pytest.approx(b), "calibrating is white"
            seen.append(r)
        assert max(seen) == pytest.approx(0.8, abs=0.02) and min(seen) < 0.2, "a 2 s breathe from dim to full"
        led.show_state("calibrated", 3.0)
        assert pins(factory) == pytest.approx((0.0, 0.8, 0.0))
        blink = set()
        for i in range(8):
            led.show_state("calibration_failed", 4.0 + i / 8)
            blink.add(tuple(round(v, 3) for v in pins(factory)))
        assert blink == {(0.8, 0.0, 0.0), (0.0, 0.0, 0.0)}
