"""LED behaviours the main LED tests leave out: `auto` on a Pi, moods without probabilities, sub-step
changes, and the calibration states (on gpiozero's MockPWMPin: the pin states are the truth)."""
from __future__ import annotations

import numpy as np
import pytest

import edge.led as led_mod
from edge.config import LedConfig
from edge.contract import FER_LABELS
from edge.led import GpioLed, make_led
from edge.types import Mood

R, G, B = 17, 27, 22
PWM_STEP = 1 / 256  # one step of an 8-bit PWM duty cycle: the smallest change worth writing


def pins(f) -> tuple[float, float, float]:
    return (f.pin(R).state, f.pin(G).state, f.pin(B).state)


def spy_writes(led: GpioLed) -> list:
    """Every colour the LED pushes to its pins, in order (the writes still reach the mock pins)."""
    writes = []
    real = led._write
    led._write = lambda rgb: (writes.append(rgb), real(rgb))
    return writes


def sure(label: str) -> np.ndarray:
    probs = np.zeros(len(FER_LABELS), np.float32)
    probs[FER_LABELS.index(label)] = 1.0
    return probs


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
        led.show(Mood("angry", 0.9, None, FER_LABELS, 0.05), 0.05)  # the first label is a label like any other
        assert pins(factory) == pytest.approx(led_mod.hex_to_rgb(LedConfig().colors["angry"]))
        led.show(Mood("contempt", 0.9, None, FER_LABELS, 0.1), 0.1)  # a label with no colour
        assert pins(factory) == pytest.approx((1.0, 1.0, 1.0))
        led.show(Mood("contempt", 0.9, None, ("contempt", "happy"), 0.2), 0.2)  # a first label with a spare colour
        assert pins(factory) == pytest.approx(led_mod.hex_to_rgb(led_mod.SPARE_COLORS[0]))


def test_changes_below_one_pwm_step_are_not_written(factory):
    led = GpioLed(LedConfig(fade=0.0, brightness=1.0), pin_factory=factory)
    writes = spy_writes(led)
    led.show(Mood("sad", 1.0, sure("sad"), FER_LABELS, 0.0), 0.0)
    assert len(writes) == 1
    # a slow fade: each frame moves the colour by a fraction of one PWM step
    led.cfg.fade = 30.0
    happy = sure("happy")
    for i in range(1, 6):
        led.show(Mood("happy", 1.0, happy, FER_LABELS, 0.0), i * 0.001)  # 1/30000 of full scale per frame
    assert len(writes) == 1, "sub-step changes must not reach the pins"
    assert max(abs(a - b) for a, b in zip(led.shown, writes[0])) < PWM_STEP
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
        assert (seen[0], seen[10], seen[20]) == pytest.approx((0.15 * 0.8, 0.8, 0.15 * 0.8)), "dim at 0 s, full at 1 s"
        led.show_state("calibrated", 3.0)
        assert pins(factory) == pytest.approx((0.0, 0.8, 0.0))
        blink = set()
        for i in range(8):
            led.show_state("calibration_failed", 4.0 + i / 8)
            blink.add(tuple(round(v, 3) for v in pins(factory)))
        assert blink == {(0.8, 0.0, 0.0), (0.0, 0.0, 0.0)}
        rhythm = []
        for i in range(8):  # 2 Hz: a quarter second on, a quarter second off
            led.show_state("calibration_failed", 6.0 + i / 8)
            rhythm.append(pins(factory)[0] > 0)
        assert rhythm == [True, True, False, False] * 2


@pytest.mark.parametrize("channel", [0, 1, 2])
def test_a_slow_fade_writes_each_pwm_step_of_any_one_channel_and_lands_exactly_on_the_target(factory, channel):
    """Each write moves the fading channel, whichever one it is, by just over one PWM step; the last write
    is the target itself, although it is less than a step from the write before."""
    colors = {"on": "#" + "".join("ff" if i == channel else "00" for i in range(3))}
    led = GpioLed(LedConfig(fade=1.0, brightness=0.05, colors=colors), pin_factory=factory)
    writes = spy_writes(led)
    mood = Mood("on", 1.0, np.ones(1), ("on",), 0.0)
    target = led.target_for(mood)
    assert target[channel] == 0.05 and sum(target) == 0.05
    frame = 1e-5  # each frame moves the channel 1e-5 of full scale, so 5000 frames reach 0.05
    for i in range(5100):
        led.show(mood, i * frame)
    assert writes[-1] == target and pins(factory) == pytest.approx(target, abs=1e-12)
    moved = [b[channel] - a[channel] for a, b in zip([(0.0, 0.0, 0.0), *writes], writes)]
    assert all(PWM_STEP < m <= PWM_STEP + frame * 1.01 for m in moved[:-1]), moved
    assert 0 < moved[-1] < PWM_STEP, moved  # the landing, written although it is less than one step
    assert len(writes) == 13  # 0.05 is 12 whole steps and the rest: one write per PWM step, not per frame
    led.close()


def test_a_fade_starts_from_dark_at_first_and_again_after_off(factory):
    sad = Mood("sad", 1.0, sure("sad"), FER_LABELS, 0.0)  # #0033ff
    with GpioLed(LedConfig(fade=1.0, brightness=1.0), pin_factory=factory) as led:
        assert led.shown == (0.0, 0.0, 0.0)
        led.show(sad, 0.0)  # starts the fade clock
        led.show(sad, 0.1)
        assert pins(factory) == pytest.approx((0.0, 0.1, 0.1))
        led.show(sad, 2.0)
        assert pins(factory) == pytest.approx((0.0, 0.2, 1.0))
        led.off()
        assert led.shown == (0.0, 0.0, 0.0) and pins(factory) == (0.0, 0.0, 0.0)
        led.show(sad, 2.1)
        assert pins(factory) == pytest.approx((0.0, 0.1, 0.1))


def test_probabilities_that_do_not_sum_to_one_give_the_same_colour(factory):
    """int8 outputs sum to 1 only roughly: the blend is normalised, so it is their shares that count."""
    from edge.led import blend_color

    probs = np.array([0.1, 0.0, 0.2, 0.4, 0.1, 0.1, 0.1], np.float32)
    colors = LedConfig().colors
    assert blend_color(probs * 0.5, FER_LABELS, colors) == pytest.approx(blend_color(probs, FER_LABELS, colors))
    with GpioLed(LedConfig(fade=0.0, brightness=0.7), pin_factory=factory) as led:
        want = led.target_for(Mood("happy", 0.4, probs, FER_LABELS, 0.0))
        assert led.target_for(Mood("happy", 0.2, probs * 0.5, FER_LABELS, 0.0)) == pytest.approx(want)
        assert want == pytest.approx(tuple(0.7 * c for c in blend_color(probs, FER_LABELS, colors)))
