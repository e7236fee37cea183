"""A camera wrapper that survives a lost, failing or hung camera.

A reader thread owns the camera and hands the newest frame to the loop through a one-slot box,
so `read()` never blocks longer than `poll` seconds: no frame in time raises `SourceStalled`,
the loop shows the no-camera LED and stops calling on_frame, so the systemd watchdog pings stop.
A camera that raises is closed and reopened on a backoff schedule; after `give_up_after` seconds
without success the thread stops retrying and `read()` raises SourceError naming the last error, so
the service exits 1 and systemd restarts it (with or without a watchdog; status says failed).
Each outage logs one warning line, each recovery one info line; the give-up is the caller's one error line.

Only cameras are wrapped: a file or folder that ends must still end the loop (`read()` -> None).
"""
from __future__ import annotations

import dataclasses
import logging
import threading
import time
from typing import Any, Callable, Sequence

from edge.errors import SourceError, SourceStalled
from edge.sources import FrameSource, OpenCvDeviceSource, Picamera2Source, open_source
from edge.types import Frame

log = logging.getLogger(__name__)

DEFAULT_BACKOFF = (1.0, 2.0, 4.0, 8.0, 30.0)


class ResilientSource(FrameSource):
    """Wraps a camera source: bounded `read()`, reopen with backoff, one log line per outage.

    `open_fn` opens the camera (called once here unless `first` is given, then again after each
    failure). Errors from the first open propagate: a camera missing at start-up is the service's
    start failure, retried by systemd. The reader is a daemon thread so a camera read that never
    returns cannot keep the process alive; `close()` waits at most `close_timeout` for it, then
    closes the camera from the caller (which is what unblocks a hung picamera2/V4L2 read).
    """

    def __init__(self, open_fn: Callable[[], FrameSource], *, poll: float = 1.0, stall_after: float = 3.0,
                 backoff: Sequence[float] = DEFAULT_BACKOFF, give_up_after: float | None = 300.0,
                 clock: Callable[[], float] = time.monotonic, first: FrameSource | None = None,
                 close_timeout: float = 1.0) -> None:
        if poll <= 0 or stall_after < 0 or not backoff or min(backoff) < 0:
            raise ValueError("ResilientSource: poll must be > 0, stall_after >= 0, backoff non-empty and >= 0")
        self._open_fn = open_fn
        self.poll = float(poll)
        self.stall_after = float(stall_after)
        self.backoff = tuple(float(b) for b in backoff)
        self.give_up_after = give_up_after
        self._clock = clock
        self.close_timeout = float(close_timeout)
        inner = first if first is not None else open_fn()
        self.name = f"resilient {getattr(inner, 'name', type(inner).__name__)}"
        self._inner: FrameSource | None = inner
        self._lock = threading.Lock()            # guards _inner and the outage flags
        self._ready = threading.Condition(threading.Lock())  # guards the one-slot box
        self._slot: Frame | None = None
        self._stop = threading.Event()
        self._closed = False
        self._last_frame = clock()               # outages are timed from the last good frame
        self._in_outage = False                  # set once an outage is noticed (error or stall)
        self._warned = False                     # one warning line per outage
        # Counters for stats and tests.
        self.frames = 0           # frames the camera delivered
        self.dropped = 0          # frames replaced before the loop took them (loop slower than camera)
        self.outages = 0          # failures/stalls noticed
        self.recoveries = 0       # outages that ended with a frame
        self.open_attempts = 0    # reopen attempts (successful or not)
        self.last_error: str | None = None
        self.gave_up = False
        self._gave_up_message = ""
        self._thread = threading.Thread(target=self._run, name="camera-reader", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ loop side
    def read(self) -> Frame | None:
        """The newest frame, waiting at most `poll` seconds; SourceStalled when none came, SourceError once given up."""
        if self._closed:
            return None
        with self._ready:
            if self._slot is None:
                self._ready.wait(self.poll)
            frame, self._slot = self._slot, None
        if frame is not None:
            return frame
        if self._closed:
            return None
        if self.gave_up:
            raise SourceError(self._gave_up_message)
        self._note_stall()
        raise SourceStalled(f"{self.name}: no frame for {self._clock() - self._last_frame:.1f} s")

    def _note_stall(self) -> None:
        """A hung read never raises: warn once when the silence passes stall_after."""
        silent = self._clock() - self._last_frame
        if silent < self.stall_after:
            return
        with self._lock:
            if self._warned:
                return
            self._warned = True
            if not self._in_outage:
                self._in_outage = True
                self.outages += 1
        log.warning("%s: no frame from camera for %.1f s (hung or disconnected); LED shows no-camera",
                    self.name, silent)

    # ------------------------------------------------------------------ reader thread
    def _run(self) -> None:
        failures = 0  # reopen attempts since the last success, indexes the backoff schedule
        try:
            while not self._stop.is_set():
                src = self._inner
                if src is None:
                    if self._give_up_due():
                        return
                    delay = self.backoff[min(failures, len(self.backoff) - 1)]
                    log.debug("%s: reopening in %g s", self.name, delay)
                    if self._stop.wait(delay):
                        return
                    self.open_attempts += 1
                    try:
                        src = self._open_fn()
                    except Exception as e:  # still gone: try again later, quietly
                        failures += 1
                        self.last_error = _describe(e)
                        log.debug("%s: reopen attempt %d failed: %s", self.name, self.open_attempts, e)
                        continue
                    with self._lock:
                        if self._stop.is_set():  # closed while opening: do not leak the device
                            _quiet_close(src)
                            return
                        self._inner = src
                    failures = 0
                    continue
                try:
                    frame = src.read()
                    if frame is None:
                        raise SourceError("camera returned no frame")
                except Exception as e:  # SourceError, OSError, anything the driver throws
                    if self._stop.is_set():
                        return
                    self._lost(e)
                    continue
                self._deliver(frame)
        finally:
            self._close_inner()

    def _deliver(self, frame: Frame) -> None:
        now = self._clock()
        back = None
        with self._lock:
            if self._in_outage:
                back = now - self._last_frame
                self._in_outage = self._warned = False
                self.recoveries += 1
            self._last_frame = now
        self.frames += 1
        with self._ready:
            if self._slot is not None:
                self.dropped += 1
            self._slot = frame
            self._ready.notify()
        if back is not None:
            log.info("%s: camera back after %.1f s", self.name, back)

    def _lost(self, err: BaseException) -> None:
        self.last_error = _describe(err)
        with self._lock:
            first = not self._warned
            if not self._in_outage:
                self._in_outage = True
                self.outages += 1
            self._warned = True
        if first:
            log.warning("%s: camera lost (%s); reopening with backoff %s s", self.name, self.last_error,
                        "/".join(f"{b:g}" for b in self.backoff))
        self._close_inner()

    def _give_up_due(self) -> bool:
        if self.give_up_after is None:
            return False
        gone = self._clock() - self._last_frame
        if gone < self.give_up_after:
            return False
        self._gave_up_message = (f"{self.name}: camera did not come back within {gone:.0f} s "
                                 f"(last error: {self.last_error}); giving up")
        self.gave_up = True  # after the message: read() raises it as soon as it sees the flag
        return True

    def _close_inner(self) -> None:
        with self._lock:
            src, self._inner = self._inner, None
        if src is not None:
            _quiet_close(src)

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Stop the reader and close the camera; returns within ~close_timeout even if a read is hung."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        with self._ready:
            self._ready.notify_all()
        try:
            # A working camera returns within a frame time and the reader closes it itself; a stalled
            # one will not, so do not wait for it (the service's stop grace is only a few seconds).
            stalled = self._clock() - self._last_frame > self.poll
            if not stalled and self._thread is not threading.current_thread():
                self._thread.join(self.close_timeout)
        finally:
            # Still blocked in the driver: closing the device from here is what makes the read return.
            self._close_inner()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(0.2)  # give the woken read a moment; a driver that ignores close stays a daemon

    @property
    def alive(self) -> bool:
        """Whether the reader thread is still running (False after give-up or close)."""
        return self._thread.is_alive()


def _describe(err: BaseException) -> str:
    return str(err) if isinstance(err, SourceError) else f"{type(err).__name__}: {err}"


def _quiet_close(src: Any) -> None:
    try:
        src.close()
    except Exception as e:  # a dead camera often fails to close; nothing more to do about it
        log.debug("closing camera failed: %s", e)


def is_camera(source: FrameSource) -> bool:
    """Cameras (Pi camera, /dev/video devices) get wrapped; files and folders must still end."""
    return isinstance(source, (Picamera2Source, OpenCvDeviceSource))


def wrap_camera(source: FrameSource, cfg: Any, *, camera_factory: Any = None, **opts: Any) -> FrameSource:
    """Wrap `source` in a ResilientSource when it is a camera, else return it unchanged.

    Reopening uses the resolved kind (`auto` that found a Pi camera reopens `picamera2`, never
    falls back to the sample clip). Timing comes from `opts`, else from optional `cfg` keys
    `poll`, `stall_after`, `give_up_after` (0 = never) when the config has them.
    """
    if not is_camera(source):
        return source
    # A USB camera found by `auto` reopens its device node, never `auto` (which could pick another).
    spec = "picamera2" if isinstance(source, Picamera2Source) else str(getattr(source, "device", cfg.source))
    reopen_cfg = dataclasses.replace(cfg, source=spec) if dataclasses.is_dataclass(cfg) else cfg
    for key in ("poll", "stall_after", "give_up_after"):
        if key not in opts and hasattr(cfg, key):
            opts[key] = getattr(cfg, key)
    if opts.get("give_up_after") == 0:
        opts["give_up_after"] = None
    return ResilientSource(lambda: open_source(reopen_cfg, camera_factory=camera_factory), first=source, **opts)
