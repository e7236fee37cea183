"""The mood light: an RGB LED (gpiozero), a console stand-in for laptops, or nothing.

The shown colour is the probability-weighted blend of per-emotion colours, scaled by the
brightness cap, and fades linearly toward its target so the light never flickers.
"""
from __future__ import annotations

import logging
import math
import sys
from pathlib import Path
from typing import Sequence, TextIO

import numpy as np

from edge.affect import affect_of, valence_rgb
from edge.config import LedConfig
from edge.errors import EdgeError
from edge.types import NO_MOOD, Mood

log = logging.getLogger(__name__)

PI_MODEL_FILE = Path("/proc/device-tree/model")
WHITE = (1.0, 1.0, 1.0)
STEP = 1.0 / 256  # smallest channel change worth writing to the PWM pins


class LedError(EdgeError):
    """The LED cannot be driven (no pin factory, pin busy, bad pins)."""


def hex_to_rgb(color: str) -> tuple[float, float, float]:
    """'#rrggbb' -> (r, g, b) floats 0..1."""
    c = color.lstrip("#")
    return (int(c[0:2], 16) / 255.0, int(c[2:4], 16) / 255.0, int(c[4:6], 16) / 255.0)


def rgb_to_hex(rgb: Sequence[float]) -> str:
    return "#" + "".join(f"{round(min(1.0, max(0.0, v)) * 255):02x}" for v in rgb)


# For labels the configuration does not name (a model with labels of its own): distinct from each
# other and from the default emotion colours, so an unknown label never looks like neutral's white.
SPARE_COLORS = ("#00ffff", "#ff6600", "#008080", "#99ff33", "#ff6699", "#806600", "#6666ff", "#cc99ff")


def spare_colors(labels: Sequence[str], colors: dict[str, str]) -> dict[str, str]:
    """label -> colour for the labels missing from `colors`, each a spare colour no other label uses."""
    used = {c.lower() for c in colors.values()}
    free = [c for c in SPARE_COLORS if c not in used] or list(SPARE_COLORS)
    missing = [lab for lab in dict.fromkeys(labels) if lab not in colors]
    return {lab: free[i % len(free)] for i, lab in enumerate(missing)}


def color_matrix(labels: Sequence[str], colors: dict[str, str]) -> np.ndarray:
    """Rows of RGB per label (labels missing from `colors` get spare colours, see spare_colors)."""
    spare = spare_colors(labels, colors)
    return np.array([hex_to_rgb(colors[lab] if lab in colors else spare[lab]) for lab in labels], dtype=np.float64)


def blend_color(probs: Sequence[float] | np.ndarray, labels: Sequence[str], colors: dict[str, str],
                matrix: np.ndarray | None = None) -> tuple[float, float, float]:
    """Probability-weighted blend of the per-label colours, each channel clipped to 0..1.

    `matrix` is color_matrix(labels, colors) when the caller keeps one (the LED blends every frame).
    """
    p = np.asarray(probs, dtype=np.float64)
    if p.shape != (len(labels),):
        raise ValueError(f"blend_color: {p.shape[0] if p.ndim else 0} probabilities for {len(labels)} labels")
    total = float(p.sum())
    rgb = p @ (color_matrix(labels, colors) if matrix is None else matrix) / (total if total > 0 else 1.0)
    return tuple(float(min(1.0, max(0.0, v))) for v in rgb)  # type: ignore[return-value]


class MoodLight:
    """Base: turns moods into a target colour and fades the shown colour toward it.

    Subclasses implement `_write(rgb)` (push a colour to the device) and `_release()`.
    """

    def __init__(self, cfg: LedConfig) -> None:
        self.cfg = cfg
        self._scale = float(cfg.brightness)
        self._idle = self._scaled(hex_to_rgb(cfg.idle_color))
        self._no_camera = self._scaled(hex_to_rgb(cfg.no_camera_color))
        self._matrices: dict[tuple[str, ...], np.ndarray] = {}
        self._shown = [0.0, 0.0, 0.0]  # colour currently on the device
        self._target = (0.0, 0.0, 0.0)
        self._written = (0.0, 0.0, 0.0)  # colour last pushed to the device
        self._last_t: float | None = None
        self._closed = False

    # -- colour targets -------------------------------------------------------------------
    def _scaled(self, rgb: Sequence[float]) -> tuple[float, float, float]:
        s = self._scale
        return (rgb[0] * s, rgb[1] * s, rgb[2] * s)

    def target_for(self, mood: Mood) -> tuple[float, float, float]:
        """The (brightness-scaled) colour a mood should show."""
        if mood.label == NO_MOOD:
            return self._idle
        if self.cfg.mode == "valence" and mood.probs is not None:
            va = affect_of(mood.labels, mood.probs)
            if va is not None:
                return self._scaled(valence_rgb(va))
        m = self._matrices.get(mood.labels)
        if m is None:
            m = self._matrices[mood.labels] = color_matrix(mood.labels, self.cfg.colors)
            spare = spare_colors(mood.labels, self.cfg.colors)
            if spare:  # once per label set (a model swap may bring new labels), never per frame
                log.warning("LED: labels with no configured colour get spare colours: %s (set [led] colors to choose)",
                            ", ".join(f"{k} {v}" for k, v in spare.items()))
        if mood.probs is None:
            i = mood.labels.index(mood.label) if mood.label in mood.labels else -1
            c = self.cfg.colors.get(mood.label)
            return self._scaled(tuple(m[i]) if i >= 0 else hex_to_rgb(c) if c else WHITE)
        return self._scaled(blend_color(mood.probs, mood.labels, self.cfg.colors, m))

    # -- public API -----------------------------------------------------------------------
    def show(self, mood: Mood, t: float) -> None:
        """Called every loop iteration: retarget and advance the fade (cheap when idle)."""
        if self._closed:
            return
        target = self.target_for(mood)
        self._announce(mood.label, mood.confidence, target, t)
        self._fade_to(target, t)

    def show_state(self, state: str, t: float) -> None:
        """Special states: 'no_camera'; 'calibrating' (slow white breathe, 2 s period); 'teaching:LABEL'
        (the same breathe in that expression's colour, while the person shows it); 'calibrated'
        (steady green) and 'calibration_failed' (red blink, 2 Hz) after a calibration; else idle."""
        if self._closed:
            return
        breathe = state == "calibrating" or state.startswith("teaching:")
        if state == "no_camera":
            target = self._no_camera
        elif state == "calibrating":
            target = self._scaled(WHITE)
        elif state.startswith("teaching:"):
            c = self.cfg.colors.get(state[len("teaching:"):])
            target = self._scaled(hex_to_rgb(c) if c else WHITE)
        elif state == "calibrated":
            target = self._scaled((0.0, 1.0, 0.0))
        elif state == "calibration_failed":
            target = self._scaled((1.0, 0.0, 0.0))
        else:
            target = self._idle
        self._announce(state, None, target, t)  # the state's colour, once: not every breathe step
        if breathe:
            k = 0.15 + 0.85 * (0.5 - 0.5 * math.cos(math.pi * t))
            target = (target[0] * k, target[1] * k, target[2] * k)
        elif state == "calibration_failed" and int(t * 4) % 2:
            target = (0.0, 0.0, 0.0)
        self._fade_to(target, t)

    def off(self) -> None:
        """Dark now, no fade."""
        self._shown = [0.0, 0.0, 0.0]
        self._target = self._written = (0.0, 0.0, 0.0)
        if not self._closed:
            self._write(self._written)

    def close(self) -> None:
        """Turn the LED off and release it; safe to call twice."""
        if self._closed:
            return
        try:
            self.off()
        finally:
            self._closed = True
            self._release()

    @property
    def shown(self) -> tuple[float, float, float]:
        return (self._shown[0], self._shown[1], self._shown[2])

    def __enter__(self) -> "MoodLight":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- fading ---------------------------------------------------------------------------
    def _fade_to(self, target: tuple[float, float, float], t: float) -> None:
        """Move each channel toward the target at full-scale/fade per second (linear)."""
        self._target = target
        last, self._last_t = self._last_t, t
        if self.cfg.fade <= 0:
            max_step = 1.0
        elif last is None:
            return  # first call starts the fade clock, from the current (dark) colour
        else:
            max_step = max(0.0, t - last) / self.cfg.fade
        shown = self._shown
        changed = False
        for i in range(3):
            d = target[i] - shown[i]
            if d == 0.0:
                continue
            v = target[i] if abs(d) <= max_step else shown[i] + (max_step if d > 0 else -max_step)
            shown[i] = v
            changed = True
        if changed:
            self._maybe_write()

    def _maybe_write(self) -> None:
        s, w = self._shown, self._written
        tgt = self._target
        at_target = s[0] == tgt[0] and s[1] == tgt[1] and s[2] == tgt[2]
        if at_target or abs(s[0] - w[0]) > STEP or abs(s[1] - w[1]) > STEP or abs(s[2] - w[2]) > STEP:
            if (s[0], s[1], s[2]) != w:
                self._written = (s[0], s[1], s[2])
                self._write(self._written)

    # -- device hooks ---------------------------------------------------------------------
    def _announce(self, label: str, confidence: float | None, target: tuple[float, float, float], t: float) -> None:
        """Hook for backends that report changes (console)."""

    def _write(self, rgb: tuple[float, float, float]) -> None:
        raise NotImplementedError

    def _release(self) -> None:
        pass


class NullLed(MoodLight):
    """No LED at all (`--led none`)."""

    def _write(self, rgb: tuple[float, float, float]) -> None:
        pass


class GpioLed(MoodLight):
    """A real RGB LED on three BCM pins through gpiozero (PWM)."""

    def __init__(self, cfg: LedConfig, pin_factory: object | None = None) -> None:
        super().__init__(cfg)
        try:
            from gpiozero import RGBLED
        except ImportError as e:  # pragma: no cover - gpiozero is a dependency
            raise LedError(f"LED: gpiozero is not installed ({e}); use --led console or none") from None
        pins = (cfg.red_pin, cfg.green_pin, cfg.blue_pin)
        try:
            self.device = RGBLED(*pins, active_high=cfg.active_high, pwm=True, pin_factory=pin_factory)
        except Exception as e:  # GPIOZeroError, OSError, and lgpio.error (busy or missing pin: a bare Exception)
            raise LedError(
                f"LED on BCM pins {pins[0]},{pins[1]},{pins[2]} cannot be used: "
                f"{type(e).__name__}: {e} (check the pins, run on a Pi or set GPIOZERO_PIN_FACTORY, or use --led console)"
            ) from None

    def _write(self, rgb: tuple[float, float, float]) -> None:
        self.device.value = rgb

    def _release(self) -> None:
        self.device.close()


class ConsoleLed(MoodLight):
    """Prints what the LED would do, one line per mood or clear colour change (never per frame)."""

    MIN_DELTA = 24 / 255  # colour changes smaller than this are not worth a line

    def __init__(self, cfg: LedConfig, stream: TextIO | None = None) -> None:
        super().__init__(cfg)
        self.stream = stream if stream is not None else sys.stdout
        self._t0: float | None = None
        self._said_label: str | None = None
        self._said_color = (-1.0, -1.0, -1.0)

    def _announce(self, label: str, confidence: float | None, target: tuple[float, float, float], t: float) -> None:
        if self._t0 is None:
            self._t0 = t
        c = self._said_color
        if label == self._said_label and max(abs(target[0] - c[0]), abs(target[1] - c[1]), abs(target[2] - c[2])) < self.MIN_DELTA:
            return
        self._said_label, self._said_color = label, target
        what = f"mood {label} ({confidence:.2f})" if confidence is not None and label != NO_MOOD else (
            "mood none" if label == NO_MOOD else label)
        self.stream.write(f"{t - self._t0:6.1f}s  {what}  LED {rgb_to_hex(target)}\n")
        self.stream.flush()

    def _write(self, rgb: tuple[float, float, float]) -> None:
        pass


def on_raspberry_pi(model_file: Path | None = None) -> bool:
    try:
        return "raspberry pi" in (model_file or PI_MODEL_FILE).read_text(errors="replace").lower()
    except OSError:
        return False


def make_led(cfg: LedConfig, pin_factory: object | None = None) -> MoodLight:
    """Build the configured backend; 'auto' is gpio on a Raspberry Pi (or with a pin factory), else console."""
    backend = cfg.backend
    if backend == "auto":
        backend = "gpio" if (pin_factory is not None or on_raspberry_pi()) else "console"
    if backend == "gpio":
        return GpioLed(cfg, pin_factory)
    if backend == "console":
        return ConsoleLed(cfg)
    if backend == "none":
        return NullLed(cfg)
    raise LedError(f"config key led.backend: unknown LED backend {backend!r} (use auto, gpio, console or none)")
