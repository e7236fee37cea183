"""Taking a calibration from live frames.

`CalibrationSession` collects the model's own (uncalibrated) probabilities of a single resting face
for a few seconds. `CalibrationController` is the calibration stage's capture part: idle (one time
comparison per frame) until a request (edge.calibration.requests) or the button arrives, then it runs
a session, shows it on the LED, saves and hands on the result, and writes the result file that
`emotion-edge calibrate` waits for.
"""
from __future__ import annotations

import logging
import os
import stat
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from edge.calibration.file import (Calibration, CalibrationError, load_for, make_calibration, make_taught, remove_if_ours,
                                   save, smiling)
from edge.calibration.profile import moved_from_rest
from edge.calibration.requests import REQUEST_NAME, RESULT_NAME, ensure_requests_dir, read_json_small, requests_dir, write_json_atomic
from edge.types import Box, Prediction

log = logging.getLogger("emotion-edge")

POLL_SECONDS = 0.5          # how often the service looks for a request file
SHOW_RESULT_SECONDS = 3.0   # LED shows "done" / "failed" this long afterwards


@dataclass
class Outcome:
    """How a calibration ended: a calibration, or why there is none."""

    ok: bool
    message: str
    calibration: Calibration | None = None
    frames: int = 0


@dataclass
class CalibrationSession:
    """Collect one face for `seconds` of frame time, at rest (`as_label` "" or neutral) or showing the
    expression `as_label`; `feed()` returns the Outcome at the end. `profile`: the profile it adds to
    (its resting face judges whether an expression moved away from rest)."""

    seconds: float
    min_frames: int
    model_sha256: str
    labels: tuple[str, ...]
    t0: float | None = None
    samples: list[np.ndarray] = field(default_factory=list)
    looks: list[np.ndarray] = field(default_factory=list)
    frames: int = 0
    no_face: int = 0
    several: int = 0
    as_label: str = ""
    profile: Calibration | None = None

    @property
    def rest(self) -> bool:
        return self.as_label in ("", "neutral")

    def feed(self, t: float, n_faces: int, faces: Sequence[tuple[Box, Prediction]] | None,
             look: np.ndarray | None = None) -> Outcome | None:
        if self.t0 is None:
            self.t0 = t
        self.frames += 1
        if n_faces == 0:
            self.no_face += 1
        elif n_faces > 1:
            self.several += 1
        elif faces:
            pred = faces[0][1]
            self.samples.append(np.array(pred.probs, np.float32))
            if look is not None:
                self.looks.append(look)
        if t - self.t0 < self.seconds:
            return None
        return self.finish()

    def finish(self) -> Outcome:
        n = len(self.samples)
        if n >= self.min_frames and not self.rest:
            return self._taught(n)
        if n >= self.min_frames:
            if smile := smiling(np.mean(self.samples, axis=0), self.labels):
                return Outcome(False, f"calibration failed: the face read {smile}, not at rest; "
                                      "relax your face (no smile) and calibrate again", None, n)
            looks = self.looks if len(self.looks) == n else ()
            cal = make_calibration(self.samples, self.model_sha256, self.labels, "camera", looks=looks)
            if self.profile is not None:
                cal = self.profile.with_rest(cal)
            return Outcome(True, f"calibrated from {n} frames of one face (at rest it read {cal.resting()})", cal, n)
        if self.frames == 0:
            why = "no frames arrived from the camera"
        elif self.several > max(self.no_face, n):
            why = f"several faces in view ({self.several} of {self.frames} frames); only the person to calibrate should face the camera"
        elif n == 0:
            why = f"no face seen in {self.frames} frames; face the camera, in good light"
        else:
            why = f"too few frames with one face ({n}, need {self.min_frames}); face the camera for the whole time"
        return Outcome(False, "calibration failed: " + why, None, n)

    def _taught(self, n: int) -> Outcome:
        """The expression taught from what was seen, added to the profile; refused when the face did not
        move away from its resting face (the person did not really show it)."""
        looks = self.looks if len(self.looks) == n else ()
        taught = make_taught(self.samples, looks, self.labels, "camera")
        base = self.profile or Calibration(self.model_sha256, self.labels, None, 0.0, 0, "camera")
        if base.baseline is not None and not moved_from_rest(taught.logp, base.baseline):
            return Outcome(False, f"teaching {self.as_label} failed: the face read as your resting face; "
                                  f"show {self.as_label} more clearly and try again", None, n)
        cal = base.with_expression(self.as_label, taught)
        return Outcome(True, f"{self.as_label} taught from {n} frames of one face (the profile holds "
                             f"{', '.join(cal.taught())})", cal, n)


class CalibrationController:
    """The capture part of the calibration stage: polls for requests, runs sessions, saves results and
    hands them to `apply` (None: `calibrate --reset`); `model()` is the model the stage serves now."""

    def __init__(self, state_dir: Path, cal_path: Path, *, seconds: float, min_frames: int,
                 apply: Callable[[Calibration | None], None], model: Callable[[], tuple[str, tuple[str, ...]]],
                 clock: Callable[[], float] = time.monotonic, requests: bool = True,
                 current: Callable[[], Calibration | None] = lambda: None) -> None:
        self.state_dir = Path(state_dir)
        self.cal_path = Path(cal_path)
        self.seconds, self.min_frames = seconds, min_frames
        self._apply, self._model, self._clock, self._current = apply, model, clock, current
        self.session: CalibrationSession | None = None
        self.request_id = ""
        self.last: Outcome | None = None
        self._show_until = -1.0
        self._show_state = ""
        self._next_poll = 0.0
        self._bad_seen: tuple[int, int] | None = None  # the bad request entry already named
        self._asked = threading.Event()  # set from the button's thread; acted on by the loop's thread
        self.requests = requests
        self._dir: Path | None = None  # requests only for the service: `calibrate` asks a service, not a `run`
        if requests:
            try:
                self._dir = ensure_requests_dir(self.state_dir)
            except OSError as e:
                log.warning("calibration requests disabled: cannot create %s (%s)", requests_dir(self.state_dir), e)

    def start(self, seconds: float | None = None, request_id: str = "", as_label: str = "") -> None:
        """Begin a session now (a request, the button, or `calibrate` without a service); `as_label`: teach
        that expression into the profile in use instead of the resting face."""
        sha, labels = self._model()
        profile = self._current() or self._saved(sha, labels)
        if profile is not None and (profile.model_sha256, profile.labels) != (sha, labels):
            profile = None
        self.session = CalibrationSession(float(seconds or self.seconds), self.min_frames, sha, labels,
                                          as_label=as_label, profile=profile)
        self.request_id = request_id
        if self.session.rest:
            log.info("calibration started: %.0f s, look at the camera and talk normally (no big smile)", self.session.seconds)
        else:
            log.info("teaching %s: %.0f s, show it to the camera", as_label, self.session.seconds)
        self._result({"state": "running", "message": "calibrating" if self.session.rest else f"teaching {as_label}"})

    def _saved(self, sha: str, labels: tuple[str, ...]) -> Calibration | None:
        """The profile in the file, when none is in use (strength 0): a step adds to it, never loses it."""
        try:
            return load_for(self.cal_path, sha, labels, required=False)
        except CalibrationError:
            return None

    def start_soon(self) -> None:
        """Thread-safe: start a session at the next frame (the push button calls this)."""
        self._asked.set()

    def reset(self, request_id: str = "") -> None:
        try:
            remove_if_ours(self.cal_path)
        except CalibrationError as e:  # a wrong [calibrate] file: never delete what is not a calibration
            self._result({"state": "failed", "message": str(e)}, request_id)
            return
        except OSError as e:
            self._result({"state": "failed", "message": f"cannot remove {self.cal_path}: {e.strerror or e}"}, request_id)
            return
        self._apply(None)
        log.info("calibration removed")
        self._result({"state": "reset", "message": "calibration removed"}, request_id)

    def feed(self, t: float, n_faces: int, faces: Sequence[tuple[Box, Prediction]] | None,
             look: np.ndarray | None = None) -> str | None:
        """Per frame: the LED state to show instead of the mood, or None (cheap when idle); `look`: the
        largest face's look, which a capture keeps in the profile."""
        now = self._clock()
        if self.session is None and self._asked.is_set():
            self._asked.clear()
            self.start()
        if self.session is None and now >= self._next_poll:
            self._next_poll = now + POLL_SECONDS
            self._poll()
        if self.session is not None:
            out = self.session.feed(t, n_faces, faces, look)
            if out is None:
                return "calibrating" if self.session.rest else f"teaching:{self.session.as_label}"
            self._finish(out)
        if now < self._show_until:
            return self._show_state
        return None

    def _poll(self) -> None:
        if self._dir is None:
            return
        path = self._dir / REQUEST_NAME
        try:
            st = os.lstat(path)
        except OSError:
            return
        req = read_json_small(path)
        try:
            if stat.S_ISDIR(st.st_mode):
                os.rmdir(path)  # an empty folder goes; one with something in it stays, named once below
            else:
                path.unlink()
        except OSError:
            pass
        if not req or not isinstance(req.get("id"), str) or len(req["id"]) > 64:
            what = (st.st_ino, st.st_mtime_ns)
            if what != self._bad_seen:  # once per bad entry, not twice a second for ever
                self._bad_seen = what
                kind = "a folder" if stat.S_ISDIR(st.st_mode) else "not a request"
                log.warning("ignored %s at %s (a calibration request is a small JSON file); "
                            "said once, remove it to ask again", kind, path)
            return
        action, rid = req.get("action"), req["id"]
        if action == "reset":
            self.reset(rid)
            return
        secs = req.get("seconds", self.seconds)
        if action != "calibrate" or not isinstance(secs, (int, float)) or isinstance(secs, bool) or not 1 <= secs <= 120:
            self._result({"state": "failed", "message": "bad calibration request (action or seconds out of range 1-120)"}, rid)
            return
        as_label = req.get("as", "")
        if not isinstance(as_label, str) or (as_label and as_label not in self._model()[1]):
            self._result({"state": "failed", "message": "bad calibration request (no such expression in the model)"}, rid)
            return
        self.start(float(secs), rid, as_label)

    def end_now(self) -> None:
        """End a running session with what it has (the clip or camera ended before its time was up)."""
        if self.session is not None and self.session.frames:
            self._finish(self.session.finish())
        self.session = None

    def _finish(self, out: Outcome) -> None:
        self.session = None
        if out.ok and out.calibration is not None:
            if self._model() != (out.calibration.model_sha256, out.calibration.labels):
                out = Outcome(False, "calibration failed: the model changed while it ran; run it again", None, out.frames)
            else:
                try:
                    save(out.calibration, self.cal_path)
                except OSError as e:
                    out = Outcome(False, f"calibration failed: cannot write {self.cal_path} ({e.strerror or e})", None, out.frames)
                else:
                    self._apply(out.calibration)
        self.last = out
        (log.info if out.ok else log.warning)("%s", out.message)
        self._show_state = "calibrated" if out.ok else "calibration_failed"
        self._show_until = self._clock() + SHOW_RESULT_SECONDS
        self._result({"state": "done" if out.ok else "failed", "message": out.message, "frames": out.frames,
                      "file": str(self.cal_path) if out.ok else ""})

    def _result(self, data: dict[str, Any], request_id: str | None = None) -> None:
        rid = self.request_id if request_id is None else request_id
        if self._dir is None or not rid:
            return
        try:
            write_json_atomic(self._dir / RESULT_NAME, {"id": rid, "time": time.time(), **data})
        except OSError as e:
            log.warning("cannot write the calibration result: %s", e)

    def close(self) -> None:
        """A session cut short (stop, reload) reports failure rather than leaving the caller waiting."""
        if self.session is not None:
            self.session = None
            self._result({"state": "failed", "message": "calibration interrupted (service stopping or reloading)"})
