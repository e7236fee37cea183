"""The systemd entry point: wraps the loop with sd_notify, signals, reload and a status file.

Start-up: logging -> config -> pipeline -> READY=1 -> loop. WATCHDOG=1 is sent from the per-frame
callback only, so a camera that stops delivering frames stops the pings and systemd restarts us.
SIGTERM/SIGINT stop (LED off, log flushed, camera released, exit 0); SIGHUP reloads config and
model, keeping the old ones when the new ones are bad.

Exit status: 0 stopped or clip ended, 1 runtime failure (systemd retries), 2 bad config, model or
cascade (RestartPreventExitStatus=2: a restart cannot fix it).
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from edge.affect import affect_of
from edge.config import Config
from edge.errors import ConfigError, DetectorError, EdgeError, ModelError
from edge.service import notices
from edge.service.logsetup import setup_logging
from edge.service.notify import Notifier
from edge.service.statusfile import status_path, write_status

if TYPE_CHECKING:
    from edge.pipeline import Pipeline

log = logging.getLogger("emotion-edge")

EXIT_OK, EXIT_RUNTIME, EXIT_BAD_INPUT = 0, 1, 2
State = Literal["starting", "running", "reloading", "stopping", "stopped", "failed"]
"""What status.json's `state` says; `emotion-edge status` reads it."""
BAD_INPUT = (ConfigError, ModelError, DetectorError)
STOP_GRACE = 3.0        # seconds after SIGTERM before a stuck read is interrupted (systemd waits 10)
STATUS_INTERVAL = 5.0   # seconds between STATUS= / status.json updates
NO_CAMERA_HOLD = 5.0    # seconds a GPIO LED shows the no-camera colour before exit 1 (systemd retries 30 s later)


def build_parser() -> argparse.ArgumentParser:
    from edge.commands.common import add_pipeline_flags

    p = argparse.ArgumentParser(prog="emotion-edge-service", description="emotion-edge as a systemd service")
    p.add_argument("--config", metavar="PATH", help="TOML config (default /etc/emotion-edge/config.toml if it exists)")
    add_pipeline_flags(p)
    p.add_argument("--max-frames", type=int, help="stop after N frames (tests)")
    p.add_argument("--status-file", metavar="PATH", help="status JSON (default $STATE_DIRECTORY/status.json or beside the log)")
    p.add_argument("-v", "--verbose", action="count", default=0, help="-v debug")
    return p


def main(argv: list[str] | None = None) -> int:
    return run_service(build_parser().parse_args(argv))


class Service:
    """One run of the service: owns the pipeline, the control events, the notifier and the status file
    (the pipeline owns the stages: the service only starts, reloads and closes it)."""

    def __init__(self, args: argparse.Namespace, notifier: Notifier, *, pin_factory: Any = None,
                 camera_factory: Any = None, status_interval: float = STATUS_INTERVAL) -> None:
        from edge.loop import Control

        self.args = args
        self.notifier = notifier
        self.pin_factory = pin_factory
        self.camera_factory = camera_factory
        self.status_interval = status_interval
        self.control = Control()
        self.cfg: Config | None = None
        self.pipeline: Pipeline | None = None
        self.status_file: Path | None = None
        self.state: State = "starting"
        self.last_error: dict[str, Any] | None = None
        self.started = time.time()
        self._wd_interval = notifier.watchdog_interval
        self._next_wd = 0.0
        self._next_status = 0.0
        self._last_frames = 0
        self._last_faces = 0
        self._status_warned = False
        self._grace: threading.Timer | None = None
        self._old_handlers: dict[int, Any] = {}
        self._stats: Any = None
        self._mood: Any = None
        self.stop_reason: str | None = None

    # ---------------------------------------------------------------- signals
    def _on_stop_signal(self, signum: int, frame: Any) -> None:
        if self.control.stop.is_set():  # second signal, or the grace timer: break out of a stuck read
            raise KeyboardInterrupt
        self.control.stop.set()
        self.notifier.stopping()
        if self._grace is None and threading.current_thread() is threading.main_thread():
            main_id = threading.main_thread().ident
            self._grace = threading.Timer(STOP_GRACE, signal.pthread_kill, (main_id, signal.SIGINT))
            self._grace.daemon = True
            self._grace.start()

    def _on_hup(self, signum: int, frame: Any) -> None:
        self.control.reload.set()

    def _install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # only the main thread may set handlers (tests may run us elsewhere)
        for sig, fn in ((signal.SIGTERM, self._on_stop_signal), (signal.SIGINT, self._on_stop_signal),
                        (signal.SIGHUP, self._on_hup)):
            self._old_handlers[sig] = signal.signal(sig, fn)

    def _restore_signals(self) -> None:
        if self._grace is not None:  # cancel before our handler goes, or a late SIGINT hits the default one
            self._grace.cancel()
        for sig, old in self._old_handlers.items():
            signal.signal(sig, old)
        self._old_handlers.clear()

    # ---------------------------------------------------------------- status
    def _fail(self, err: BaseException | str, code: int, reason: str | None = None) -> int:
        """The one way the service fails: state `failed`, the error logged and in status.json, an exit code
        (2: bad input, systemd does not retry; 1: a runtime failure, systemd restarts us)."""
        self.state = "failed"
        if reason is not None:
            self.stop_reason = reason
        self._error(err)
        return code

    def _error(self, err: BaseException | str) -> None:
        msg = str(err)
        log.error("%s", msg)
        self.last_error = {"time": time.time(), "message": msg}

    def _status_dict(self, stats: Any = None, mood: Any = None) -> dict[str, Any]:
        d: dict[str, Any] = {
            "pid": os.getpid(), "state": self.state, "started": self.started, "updated": time.time(),
            "last_error": self.last_error, "config": getattr(self.args, "config", None),
        }
        if self.cfg is not None:
            d["source"] = self.cfg.source.source
            d["led"] = self.cfg.led.backend
        if self.pipeline is not None:
            d.update(self.pipeline.status())
        notes = notices.current()  # a damaged log moved aside, a damaged deployed model, rows dropped
        if notes:
            d["notices"] = notes
        if stats is not None:
            snap = stats.snapshot()
            d["fps"] = snap["fps"]
            d["frames"] = snap["frames"]
            d["stats"] = snap
            df = stats.frames - self._last_frames
            d["face_ratio"] = round((stats.faces_seen - self._last_faces) / df, 3) if df > 0 else 0.0
            framing = stats.framing.summary(self.cfg.detect) if self.cfg is not None else None
            if framing is not None:  # the last minute's typical face and `view`'s advice for it (edge/loop.py)
                d["framing"] = framing
        if mood is not None:
            d["mood"] = mood.label
            d["confidence"] = round(float(mood.confidence), 3)
            va = affect_of(mood.labels, mood.probs)
            if va is not None:
                d["valence"], d["arousal"] = va.valence, va.arousal
        return d

    def _write_status(self, data: dict[str, Any]) -> None:
        if self.status_file is None:
            return
        try:
            write_status(self.status_file, data)
        except OSError as e:
            if not self._status_warned:  # once: a read-only disk must not fill the journal
                log.warning("cannot write %s: %s", self.status_file, e)
                self._status_warned = True

    def _publish(self, stats: Any, mood: Any) -> None:
        self._stats, self._mood = stats, mood
        d = self._status_dict(stats, mood)
        self._last_frames, self._last_faces = stats.frames, stats.faces_seen
        self.notifier.status(status_line(d))
        self._write_status(d)

    def on_frame(self, stats: Any, mood: Any) -> None:
        """Called by the loop for every frame: cheap unless a ping or a status update is due."""
        now = time.monotonic()
        if self._wd_interval is not None and now >= self._next_wd:
            self._next_wd = now + self._wd_interval
            self.notifier.watchdog()
        if now >= self._next_status:
            self._next_status = now + self.status_interval
            self._publish(stats, mood)

    # ---------------------------------------------------------------- run
    def run(self) -> int:
        from edge.commands.common import config_from_args

        self._install_signals()
        try:
            return self._run(config_from_args)
        except KeyboardInterrupt:  # second SIGTERM/SIGINT or the grace timer: still a clean stop
            log.info("stopped while blocked (camera not answering)")
            self.stop_reason = "stop"
            return EXIT_OK
        finally:
            self._restore_signals()
            self.state = "stopped" if self.state not in ("failed",) else self.state
            final = self._status_dict(self._stats, self._mood)
            final["stop_reason"] = self.stop_reason
            self._write_status(final)

    def _run(self, config_from_args: Any) -> int:
        from edge.loop import Stats, run_loop
        from edge.pipeline import Pipeline

        explicit = getattr(self.args, "status_file", None)
        if explicit or os.environ.get("STATE_DIRECTORY"):  # so a bad config at start shows in `status`
            self.status_file = status_path(None, explicit)
        try:
            self.cfg = config_from_args(self.args)
        except EdgeError as e:
            return self._fail(e, EXIT_BAD_INPUT)
        self.status_file = status_path(self.cfg, explicit)
        max_frames = getattr(self.args, "max_frames", None)
        if max_frames is not None and max_frames < 1:
            return self._fail(f"--max-frames must be at least 1 (got {max_frames})", EXIT_BAD_INPUT)
        try:
            with _signals_blocked():  # threads started here (camera) inherit the mask: signals wake the main thread
                self.pipeline = Pipeline.build(self.cfg, pin_factory=self.pin_factory, camera_factory=self.camera_factory,
                                               calibration_required=bool(getattr(self.args, "calibration", None)),
                                               state_dir=self.status_file.parent, sample_fallback=False,
                                               no_camera_hold=NO_CAMERA_HOLD, on_error=self._error)
        except BAD_INPUT as e:
            return self._fail(e, EXIT_BAD_INPUT)
        except EdgeError as e:  # camera missing at boot...: systemd retries after RestartSec
            return self._fail(e, EXIT_RUNTIME)
        why = "stop"
        try:
            self.state = "running"
            clf = self.pipeline.classifier
            self.notifier.ready(status=f"started, source {self.cfg.source.source}, waiting for frames")
            self._write_status(self._status_dict())
            log.info("ready: source %s, model %s (%s), LED %s", self.cfg.source.source, clf.path, clf.info.sha256[:12],
                     self.cfg.led.backend)
            stats = self._stats = Stats()
            while True:
                why = run_loop(self.pipeline, self.cfg, self.control, max_frames=max_frames,
                               on_frame=self.on_frame, stats=stats)
                if why != "reload":
                    break
                self.reload()
            if why == "stop":
                self.notifier.stopping()
            self.state, self.stop_reason = "stopping", why
            self._mood = self.pipeline.smoother.mood
            log.info("stopping (%s) after %d frames", why, stats.frames)
        except EdgeError as e:  # the camera failed for good: exit non-zero so systemd restarts us
            self.notifier.stopping()
            return self._fail(e, EXIT_RUNTIME, reason="error")
        finally:
            self.pipeline.close()  # LED off first, then log flush + close, camera, interpreter
        return EXIT_OK

    def reload(self) -> None:
        """SIGHUP: the pipeline reloads from the new config; on any error it keeps the running stages."""
        from edge.commands.common import config_from_args

        self.control.reload.clear()
        self.state = "reloading"
        self.notifier.reloading()
        old_cfg = self.cfg
        try:
            cfg = config_from_args(self.args)
            self.pipeline.reload(cfg)
        except EdgeError as e:
            self._error(f"reload failed, still running the previous config and model: {e}")
        else:
            self.cfg = cfg
            clf = self.pipeline.classifier
            log.info("reloaded: model %s (%s)", clf.path, clf.info.sha256[:12])
        self.state = "running"
        self._write_status(self._status_dict())  # before READY=1: whoever waits for it reads the new model
        self.notifier.ready(status="reloaded" if self.cfg is not old_cfg else "reload failed, previous config kept")
        self._next_status = 0.0  # publish the new model at the next frame


@contextlib.contextmanager
def _signals_blocked():
    """Block our signals while other threads are created, so the kernel delivers them to the main thread.

    A stop signal taken by another thread would leave a main thread stuck in a hung camera read
    asleep; delivered to the main thread it interrupts the wait and the handler runs.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT, signal.SIGHUP})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def status_line(d: dict[str, Any]) -> str:
    """systemd STATUS=: '12.1 fps, mood happy (0.82), faces in 95% of frames'."""
    parts = [f"{d.get('fps', 0.0):.1f} fps"]
    if d.get("mood") and d["mood"] != "none":
        parts.append(f"mood {d['mood']} ({d.get('confidence', 0.0):.2f})")
    else:
        parts.append("no face")
    if "face_ratio" in d:
        parts.append(f"faces in {d['face_ratio'] * 100:.0f}% of frames")
    if d.get("last_error"):
        parts.append("last error: " + str(d["last_error"].get("message", ""))[:80])
    return ", ".join(parts)


def run_service(args: argparse.Namespace, *, notifier: Notifier | None = None, pin_factory: Any = None,
                camera_factory: Any = None, status_interval: float = STATUS_INTERVAL) -> int:
    """`emotion-edge run --service` and `python -m edge.service` both end here."""
    setup_logging("DEBUG" if getattr(args, "verbose", 0) else "INFO")
    own = notifier is None
    notifier = Notifier.from_env() if notifier is None else notifier
    try:
        svc = Service(args, notifier, pin_factory=pin_factory, camera_factory=camera_factory,
                      status_interval=status_interval)
        return svc.run()
    finally:
        if own:
            notifier.close()


if __name__ == "__main__":
    sys.exit(main())
