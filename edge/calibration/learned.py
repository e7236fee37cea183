"""The resting face learned while the device watches, for people who never run `calibrate`.

Most of the time a person in front of a mood light is at rest, and most of the model's error on a
real person is their resting face (docs/CALIBRATION.md). So the calibration stage keeps a slowly forgetting,
face-time-weighted mean of the largest face's log-probabilities and, once it has seen enough face
time, applies it like a calibration (strength as `[calibrate] strength`, no neutral head start, since
the mean holds expressions too; what it gains: docs/CALIBRATION.md). An explicit calibration always
wins; this one is used only while none is in use.

The state is a small JSON file beside the log (`learned-baseline.json`), bound to the model's sha256
like a calibration, so a service restart or reload keeps what it learned.
"""
from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from edge.calibration.file import PROB_FLOOR, Calibration
from edge.safeio import read_json, write_atomic
from edge.types import Prediction

log = logging.getLogger("emotion-edge")

KIND = "emotion-edge learned baseline"
VERSION = 1
FILE_NAME = "learned-baseline.json"
SOURCE = "learned"          # Calibration.source of the baseline this module applies
MAX_GAP = 1.0               # s: a face seen again after a pause counts at most this much face time
REFRESH_SECONDS = 10.0      # s of frame time between updates of the applied baseline
SAVE_SECONDS = 300.0        # s of wall time between saves of the state file (and at close)
MAX_FILE_BYTES = 64 * 1024


class LearnedBaseline:
    """Face-time-weighted mean of log-probabilities, forgetting with a half-life of face time.

    `observe()` is on the hot path: a handful of 7-element operations into preallocated arrays.
    """

    def __init__(self, model_sha256: str, labels: Sequence[str], half_life: float, min_seconds: float) -> None:
        self.model_sha256, self.labels = model_sha256, tuple(labels)
        self.half_life, self.min_seconds = float(half_life), float(min_seconds)
        k = len(self.labels)
        self.sum = np.zeros(k, np.float64)   # decayed sum of dt * log p
        self.weight = 0.0                    # decayed sum of dt
        self.face_seconds = 0.0              # all face time seen (not decayed): when it is ready
        self.started = time.time()
        self._last_t: float | None = None
        self._z = np.empty(k, np.float64)

    @property
    def ready(self) -> bool:
        return self.face_seconds >= self.min_seconds and self.weight > 0

    def observe(self, t: float, probs: np.ndarray) -> None:
        """One classification of the largest face at frame time t (raw, uncalibrated probabilities)."""
        dt = MAX_GAP if self._last_t is None else min(max(t - self._last_t, 0.0), MAX_GAP)
        self._last_t = t
        if dt <= 0.0:
            return
        decay = math.exp(-dt * math.log(2.0) / self.half_life)
        z = self._z
        np.maximum(probs, PROB_FLOOR, out=z)
        np.log(z, out=z)
        z *= dt
        self.sum *= decay
        self.sum += z
        self.weight = self.weight * decay + dt
        self.face_seconds += dt

    def baseline(self) -> np.ndarray:
        return self.sum / self.weight

    def calibration(self) -> Calibration:
        """The baseline as a calibration for this model (frames: whole seconds of face time)."""
        return Calibration(self.model_sha256, self.labels, self.baseline(), self.started,
                           max(1, int(self.face_seconds)), SOURCE)

    def to_json(self) -> dict[str, Any]:
        return {"kind": KIND, "version": VERSION, "model_sha256": self.model_sha256, "labels": list(self.labels),
                "sum": [round(float(v), 6) for v in self.sum], "weight": round(self.weight, 6),
                "face_seconds": round(self.face_seconds, 3), "started_unix": round(self.started, 3),
                "half_life": self.half_life, "saved_unix": round(time.time(), 3)}


class BaselineFileError(ValueError):
    """A learned-baseline file that cannot be used (the learner then starts afresh)."""


def parse(data: Any, where: str, model_sha256: str, labels: Sequence[str], half_life: float,
          min_seconds: float) -> LearnedBaseline:
    """Validate a decoded state file for this model; BaselineFileError (one line) names the problem."""
    if not isinstance(data, dict) or data.get("kind") != KIND or data.get("version") != VERSION:
        raise BaselineFileError(f"{where}: not an emotion-edge learned-baseline file (version {VERSION})")
    if data.get("model_sha256") != model_sha256 or data.get("labels") != list(labels):
        raise BaselineFileError(f"{where}: learned with another model; learning afresh for this one")
    s, w, fs, st = data.get("sum"), data.get("weight"), data.get("face_seconds"), data.get("started_unix")
    num = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)  # noqa: E731
    if not isinstance(s, list) or len(s) != len(labels) or not all(num(v) for v in s):
        raise BaselineFileError(f"{where}: 'sum' must be {len(labels)} finite numbers")
    if not (num(w) and w > 0 and num(fs) and fs >= 0 and num(st)):
        raise BaselineFileError(f"{where}: 'weight', 'face_seconds' and 'started_unix' must be numbers (weight > 0)")
    b = LearnedBaseline(model_sha256, labels, half_life, min_seconds)
    b.sum[:] = s
    b.weight, b.face_seconds, b.started = float(w), float(fs), float(st)
    if not np.all(b.baseline() <= 1e-6) or not np.all(b.baseline() >= math.log(PROB_FLOOR) - 1e-6):
        raise BaselineFileError(f"{where}: 'sum' / 'weight' is not a mean of log-probabilities")
    return b


def load(path: Path, model_sha256: str, labels: Sequence[str], half_life: float, min_seconds: float) -> LearnedBaseline:
    data = read_json(path, MAX_FILE_BYTES, BaselineFileError, missing=None,  # FileNotFoundError: nothing learned yet
                     not_regular="not a regular file of at most 64 KiB", unreadable="cannot read", not_json="not valid JSON")
    return parse(data, str(path), model_sha256, labels, half_life, min_seconds)


class Learner:
    """The calibration stage's learning part: learns from each classification of the largest face and,
    every REFRESH_SECONDS once ready, hands the baseline to `apply` (the stage, where an explicit
    calibration still wins).

    `path` None: learn for this run only (a `run` on a clip); a path: load it at start, save it every
    SAVE_SECONDS and at close (the service).
    """

    def __init__(self, model_sha256: str, labels: Sequence[str], *, half_life: float, min_seconds: float,
                 apply: Callable[[Calibration], None], path: Path | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.path = None if path is None else Path(path)
        self._apply, self._clock = apply, clock
        self._args = (model_sha256, tuple(labels), float(half_life), float(min_seconds))
        self.state = LearnedBaseline(*self._args)
        if self.path is not None:
            try:
                self.state = load(self.path, *self._args)
                log.info("learned resting face loaded: %s of faces (%s)", face_time(self.state.face_seconds), self.path)
            except FileNotFoundError:
                pass
            except BaselineFileError as e:
                log.warning("%s", e)
        self._next_refresh: float | None = None
        self._next_save = clock() + SAVE_SECONDS
        self._dirty = False

    def feed(self, t: float, pred: Prediction) -> None:
        """Per classification of the largest face, the model's own answer (cheap; the baseline is handed
        over every 10 s)."""
        self.state.observe(t, pred.probs)
        self._dirty = True
        # the first hand-over as soon as it is ready (a mood read before it is read uncalibrated), then every 10 s
        if self.state.ready and (self._next_refresh is None or t >= self._next_refresh):
            self._next_refresh = t + REFRESH_SECONDS
            self._apply(self.state.calibration())
        if self.path is not None and self._clock() >= self._next_save:
            self.save()

    def reapply(self) -> None:
        """Hand the baseline over now (after a reload, the one read back for the new model)."""
        if self.state.ready:
            self._apply(self.state.calibration())

    def forget(self) -> None:
        """`calibrate --reset`: start learning afresh and remove the file."""
        self.state = LearnedBaseline(*self._args)
        self._dirty = False
        if self.path is not None:
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass
            except OSError as e:
                log.warning("cannot remove %s: %s", self.path, e.strerror or e)
        log.info("learned resting face forgotten")

    def save(self) -> None:
        self._next_save = self._clock() + SAVE_SECONDS
        if self.path is None or not self._dirty or self.state.weight <= 0:
            return
        try:
            write_atomic(self.path, (json.dumps(self.state.to_json()) + "\n").encode("utf-8"), 0o644, exact=True)
            self._dirty = False
        except OSError as e:  # the mood light keeps running; it only forgets more on a restart
            log.warning("cannot save the learned resting face to %s: %s", self.path, e.strerror or e)

    def describe(self) -> dict[str, Any]:
        """What `status` shows: face time learned and whether it is ready."""
        return {"face_seconds": round(self.state.face_seconds, 1), "ready": self.state.ready,
                "min_seconds": self.state.min_seconds, "since": self.state.started,
                "file": str(self.path) if self.path is not None else ""}

    def close(self) -> None:
        self.save()


def face_time(seconds: float) -> str:
    """'40 s' / '12 min' / '3.5 h': face time as `status`, `check` and the journal say it."""
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"
