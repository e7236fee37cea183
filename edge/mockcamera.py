"""`MockPicamera2`: a stand-in for `picamera2.Picamera2` shipped with the code, like gpiozero's MockFactory.

Tests (and anyone without a Pi) pass it as `camera_factory`. It has the surface `Picamera2Source`
uses and behaves like the real class where that matters to us: the camera list, construction by
number, `create_video_configuration` / `configure` / `stream_configuration`, `start`,
`capture_arrays(["lores"])` -> `([YUV420 array], {"SensorTimestamp": ns})` paced at the
configured FrameRate, `stop`, `close`. It records every call and can be told to fail a step, to
hang in a capture until closed, or to adjust the lores size. NumPy only, no libcamera.

Knobs are class attributes; `MockPicamera2.make(...)` returns a fresh subclass holding them, so
each test gets its own camera list, frames and recorded instances.
"""
from __future__ import annotations

import copy
import threading
import time
from typing import Any, ClassVar, Sequence

import numpy as np

PI_CAMERA: dict[str, Any] = {"Model": "imx708", "Location": 2, "Rotation": 0,
                             "Id": "/base/axi/pcie@120000/rp1/i2c@88000/imx708@1a", "Num": 0}
"""What `global_camera_info()` lists for a Camera Module 3 on a Pi 5."""
USB_CAMERA: dict[str, Any] = {"Model": "HD Pro Webcam C920", "Id": "/base/axi/pcie@120000/rp1/usb@200000-1:1.0-046d:082d",
                              "Num": 1}
"""libcamera lists UVC webcams too; their Id holds the USB path."""

STEPS = ("init", "configure", "start", "capture", "stop", "close")
CHROMA = 128   # U and V of a gray picture
PADDING = 7    # bytes past the lores width in each row (the ISP pads rows to its stride)


class MockPicamera2:
    """Stand-in for `picamera2.Picamera2`; see the module docstring. Knobs (class attributes):

    cameras: what `global_camera_info()` lists. frames: gray uint8 HxW images served in turn
    (None: frame n is filled with n % 256). fail_on / error: the step of `STEPS` that raises
    (default a RuntimeError naming it); fail_after: good captures before "capture" fails.
    hang_after: good captures before a capture blocks until `close()` (for ever when
    wake_on_close is False: a driver that ignores close). lores_size: the lores size
    libcamera "adjusts" the request to. stride: row length of the lores array (None: width + 64).
    realtime: pace captures at the configured FrameRate, as a camera does.
    """

    cameras: ClassVar[list[dict[str, Any]]] = [PI_CAMERA]
    frames: ClassVar[Sequence[np.ndarray] | None] = None
    fail_on: ClassVar[str] = ""
    error: ClassVar[BaseException | None] = None
    fail_after: ClassVar[int] = 0
    hang_after: ClassVar[int | None] = None
    wake_on_close: ClassVar[bool] = True
    lores_size: ClassVar[tuple[int, int] | None] = None
    stride: ClassVar[int | None] = None
    realtime: ClassVar[bool] = True
    instances: ClassVar[list["MockPicamera2"]] = []

    @classmethod
    def make(cls, **knobs: Any) -> type["MockPicamera2"]:
        """A fresh subclass with these knobs and its own `instances` list (unknown knobs are refused)."""
        unknown = set(knobs) - {"cameras", "frames", "fail_on", "error", "fail_after", "hang_after",
                                "wake_on_close", "lores_size", "stride", "realtime"}
        if unknown:
            raise TypeError(f"MockPicamera2.make: unknown knobs {sorted(unknown)}")
        if knobs.get("fail_on", "") not in ("", *STEPS):
            raise ValueError(f"MockPicamera2.make: fail_on must be one of {STEPS}")
        return type(cls.__name__, (cls,), {**knobs, "instances": []})

    @classmethod
    def global_camera_info(cls) -> list[dict[str, Any]]:
        """A copy of `cameras` (the real one is a staticmethod reading libcamera's list)."""
        return [dict(c) for c in cls.cameras]

    def __init__(self, camera_num: int = 0) -> None:
        self.camera_num = camera_num
        self.calls: list[tuple[Any, ...]] = [("init", camera_num)]
        self.config: dict[str, Any] | None = None
        self.started = self.closed = False
        self.captured = 0
        self.hung = threading.Event()       # set when a capture starts to hang
        self._woken = threading.Event()     # close() wakes a hung capture, as a driver does
        self._t0_ns = 0
        type(self).instances.append(self)
        self._maybe_fail("init")
        if not any(c.get("Num", i) == camera_num for i, c in enumerate(self.cameras)):
            raise IndexError("list index out of range")  # what picamera2 raises for a missing camera

    # ------------------------------------------------------------------ configuration
    def create_video_configuration(self, main: dict[str, Any] | None = None, lores: dict[str, Any] | None = None,
                                   controls: dict[str, Any] | None = None, **other: Any) -> dict[str, Any]:
        """A plain dict like picamera2's; main defaults to 1280x720 XBGR8888 as there."""
        self.calls.append(("create_video_configuration", {"main": main, "lores": lores, "controls": controls, **other}))
        config: dict[str, Any] = {"use_case": "video", "main": {"format": "XBGR8888", "size": (1280, 720), **(main or {})},
                                  "lores": None, "controls": {"FrameRate": 30.0, **(controls or {})}}
        if lores is not None:
            config["lores"] = {"format": "YUV420", "size": config["main"]["size"], **lores}
        return config

    def configure(self, camera_config: dict[str, Any]) -> None:
        """Keeps a copy, with the lores size `lores_size` says libcamera picked."""
        self.calls.append(("configure", camera_config))
        self._maybe_fail("configure")
        self.config = copy.deepcopy(camera_config)
        if self.lores_size is not None and self.config.get("lores") is not None:
            self.config["lores"]["size"] = tuple(self.lores_size)

    def stream_configuration(self, name: str = "main") -> dict[str, Any]:
        """The configured stream, with the size libcamera really set (it may differ from the request)."""
        self.calls.append(("stream_configuration", name))
        if self.config is None or self.config.get(name) is None:
            raise RuntimeError(f"stream {name!r} is not configured")
        return self.config[name]

    # ------------------------------------------------------------------ running
    def start(self) -> None:
        self.calls.append(("start",))
        if self.config is None:
            raise RuntimeError("Camera has not been configured")
        self._maybe_fail("start")
        self.started = True
        self._t0_ns = time.monotonic_ns()

    def capture_arrays(self, names: Sequence[str] = ("main",)) -> tuple[list[np.ndarray], dict[str, Any]]:
        """The next frame of each named stream and its metadata; lores is YUV420 (Y plane on top)."""
        self.calls.append(("capture_arrays", list(names)))
        if self.closed or not self.started:
            raise RuntimeError("Camera is not running")
        if self.hang_after is not None and self.captured >= self.hang_after:
            self.hung.set()
            (self._woken if self.wake_on_close else threading.Event()).wait()  # only close() ends it, if anything
            raise RuntimeError("Camera frontend has timed out!")
        if self.fail_on == "capture" and self.captured >= self.fail_after:
            self._maybe_fail("capture")
        n = self.captured
        period_ns = int(1e9 / float(self.config["controls"].get("FrameRate", 30.0)))
        ts = self._t0_ns + n * period_ns
        if self.realtime:
            delay = (ts - time.monotonic_ns()) / 1e9
            if delay > 0 and self._woken.wait(delay):
                raise RuntimeError("Camera is not running")
        self.captured += 1
        arrays = [self._array(name, n) for name in names]
        return arrays, {"SensorTimestamp": ts, "FrameDuration": period_ns // 1000}

    def _array(self, name: str, n: int) -> np.ndarray:
        stream = self.config.get(name) if self.config else None
        if stream is None:
            raise RuntimeError(f"stream {name!r} is not configured")
        w, h = stream["size"]
        if name != "lores":
            return np.zeros((h, w, 4), np.uint8)  # XBGR8888 main: nothing here looks at it
        y = self._gray(n, w, h)
        stride = self.stride if self.stride is not None else w + 64
        arr = np.full((h * 3 // 2, stride), CHROMA, np.uint8)
        arr[:, w:] = PADDING
        arr[:h, :w] = y
        return arr

    def _gray(self, n: int, w: int, h: int) -> np.ndarray:
        if not self.frames:
            return np.full((h, w), n % 256, np.uint8)
        img = np.asarray(self.frames[n % len(self.frames)])
        if img.shape != (h, w) or img.dtype != np.uint8:
            raise ValueError(f"MockPicamera2: frames must be uint8 {h}x{w} (the lores size), got {img.dtype} {img.shape}")
        return img

    def stop(self) -> None:
        self.calls.append(("stop",))
        self._maybe_fail("stop")
        self.started = False

    def close(self) -> None:
        """Like picamera2: stops a running camera, then releases it; a hung capture wakes with an error."""
        self.calls.append(("close",))
        self.started = False
        self._woken.set()
        self._maybe_fail("close")
        self.closed = True

    # ------------------------------------------------------------------ helpers
    def names(self) -> list[str]:
        """The recorded call names, in order."""
        return [c[0] for c in self.calls]

    def _maybe_fail(self, step: str) -> None:
        if self.fail_on == step:
            raise self.error if self.error is not None else RuntimeError(f"{step} failed")
