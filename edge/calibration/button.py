"""An optional push button that starts a calibration on a headless Pi (gpiozero `Button`)."""
from __future__ import annotations

from typing import Callable

from edge.errors import EdgeError


class ButtonError(EdgeError):
    """The calibration button's pin cannot be used."""


class CalibrateButton:
    """Button between a BCM pin and GND (internal pull-up); a press calls `on_press` from gpiozero's thread."""

    def __init__(self, pin: int, on_press: Callable[[], None], pin_factory: object | None = None,
                 bounce_time: float = 0.05) -> None:
        try:
            from gpiozero import Button
        except ImportError as e:  # pragma: no cover - gpiozero is a dependency
            raise ButtonError(f"calibration button: gpiozero is not installed ({e})") from None
        try:
            self.device = Button(pin, pull_up=True, bounce_time=bounce_time, pin_factory=pin_factory)
        except Exception as e:  # GPIOZeroError, OSError, and lgpio.error, which is a plain Exception
            raise ButtonError(f"calibration button on BCM pin {pin} cannot be used: {type(e).__name__}: {e} "
                              "(set [calibrate] button_pin = -1 to run without it)") from None
        self.device.when_pressed = lambda *_: on_press()

    def close(self) -> None:
        self.device.close()
