"""The event log's writer: what becomes a row (SQLite, WAL) on mood changes plus a periodic summary,
never per frame, and the buffer that writes them.

Writes are buffered and committed in batches; I/O trouble (disk full, read-only, locked) is
reported once and retried, so the mood light keeps running; a bug raises like anywhere else. The
file itself (opening, a damaged or foreign file, retention) is store.py's; the table's format is
schema.py; reading (the CLI, the chart, the MQTT follower) is reader.py and follower.py.
"""
from __future__ import annotations

import json
import logging
import time
from collections import deque
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from edge.service import notices
from edge.affect import Affect, affect_of
from edge.config import LogConfig
from edge.eventlog.schema import row_values
from edge.eventlog.store import LogStore
from edge.types import Box, Mood, Prediction

log = logging.getLogger(__package__)  # edge.eventlog: one name for the log's lines, whichever module writes them

BUFFER_CAP = 10_000  # rows kept in memory while the disk refuses writes (oldest dropped beyond)
RETENTION_EVERY = 3600.0  # seconds between retention passes (plus one at open)
FaceList = Sequence[tuple[Box, Prediction]]


def _faces_json(faces: FaceList | None) -> str | None:
    """Each classified face of the frame: its box, top emotion and confidence."""
    if not faces:
        return None
    return json.dumps([{"box": [int(v) for v in box], "emotion": p.top, "confidence": round(p.confidence, 4)}
                       for box, p in faces])


def _probs_json(labels: tuple[str, ...], probs: np.ndarray | None) -> str | None:
    if probs is None:
        return None
    return json.dumps({lab: round(float(p), 4) for lab, p in zip(labels, probs)})


class EventLog(LogStore):
    """Buffered writer; `record()` is called every frame and never raises for disk trouble (reported
    once, retried); a bug in this module (TypeError, sqlite3 misuse, ...) raises like any other."""

    def __init__(self, path: str | Path, cfg: LogConfig, clock: Callable[[], float] = time.time,
                 owned: bool | None = None) -> None:
        self._buf: deque[tuple] = deque(maxlen=BUFFER_CAP)
        self.dropped = 0  # rows lost because the buffer overflowed while writes failed
        self.written = 0  # rows committed by this instance
        self._failing = False
        self._last_error = ""  # the latest write failure, for the one line at exit
        self._closed = False
        # running state for change detection and the summary interval
        self._label: str | None = None
        self._labels: tuple[str, ...] = ()
        self._psum = np.zeros(0, dtype=np.float64)
        self._nprobs = 0
        self._face_sum = 0  # faces over the summary's frames: its `faces` is their mean per frame
        self._frames = 0
        self._box: Box | None = None
        self._last_mood: Mood | None = None
        self._detail: FaceList | None = None
        self._summary_t0: float | None = None
        self._commit_t0: float | None = None
        self._retention_t0: float | None = None
        super().__init__(path, cfg, clock, owned)  # opens the file: a failure there is reported as a write's

    # -- context manager ------------------------------------------------------------------
    def __enter__(self) -> "EventLog":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def failing(self) -> bool:
        return self._failing

    @property
    def pending(self) -> int:
        return len(self._buf)

    # -- hot path -------------------------------------------------------------------------
    def record(self, mood: Mood, n_faces: int, box: Box | None, now: float, detail: FaceList | None = None) -> None:
        """Account one loop iteration; `now` is monotonic seconds (rows carry UTC wall time).

        `detail` (the loop's `faces`): the latest (box, prediction) of each classified face, for the
        faces_detail column; kept by reference and only serialised when a row is written, so passing
        it every frame costs nothing. The `faces` column is the count (a summary's mean per frame).
        """
        if self._closed:
            return
        self._account(mood, n_faces, box)
        if detail is not None:
            self._detail = detail
        if mood.label != self._label:
            self._label = mood.label
            self._append("change", mood.label, mood.confidence, _probs_json(mood.labels, mood.probs), n_faces, box,
                         _faces_json(self._detail) if n_faces else None, affect_of(mood.labels, mood.probs))
        if self._summary_t0 is None:
            self._summary_t0 = self._commit_t0 = now
            if self._retention_t0 is None:
                self._retention_t0 = now
        elif now - self._summary_t0 >= self.cfg.summary_interval:
            self._summary_t0 = now
            self._append_summary()
        if now - self._commit_t0 >= self.cfg.commit_interval:  # type: ignore[operator]
            self._commit_t0 = now
            self.flush()  # flush and retention report disk trouble themselves: nothing to catch here
            if now - self._retention_t0 >= RETENTION_EVERY:  # type: ignore[operator]
                self._retention_t0 = now
                self._retention()

    def _account(self, mood: Mood, n_faces: int, box: Box | None) -> None:
        self._last_mood = mood
        self._frames += 1
        self._face_sum += n_faces
        if box is not None and (self._box is None or box[2] * box[3] > self._box[2] * self._box[3]):
            self._box = box
        if mood.probs is not None:
            if mood.labels != self._labels:
                self._labels = mood.labels
                self._psum = np.zeros(len(mood.labels), dtype=np.float64)
                self._nprobs = 0
            np.add(self._psum, mood.probs, out=self._psum)
            self._nprobs += 1

    def _append(self, kind: str, mood: str, conf: float, probs: str | None, face_count: float, box: Box | None,
                detail: str | None = None, va: Affect | None = None) -> None:
        if len(self._buf) == self._buf.maxlen:
            self.dropped += 1
        bx = box if box is not None else (None, None, None, None)
        v, a = (va.valence, va.arousal) if va is not None else (None, None)
        self._buf.append(row_values(time=self._clock(), kind=kind, mood=mood, confidence=float(conf), probs=probs,
                                    faces=face_count, box_x=bx[0], box_y=bx[1], box_w=bx[2], box_h=bx[3],
                                    faces_detail=detail, valence=v, arousal=a))

    def _append_summary(self) -> None:
        m = self._last_mood
        if m is None or self._frames == 0:
            return
        mean = self._psum / self._nprobs if self._nprobs else None
        self._append("summary", m.label, m.confidence, _probs_json(self._labels, mean),
                     round(self._face_sum / self._frames, 3), self._box,
                     _faces_json(self._detail) if self._face_sum else None, affect_of(self._labels, mean))
        self._psum[:] = 0
        self._nprobs = self._face_sum = self._frames = 0
        self._box = None

    # -- writing --------------------------------------------------------------------------
    def flush(self) -> bool:
        """Commit the buffered rows in one transaction; False (rows kept) if the disk refuses."""
        if not self._buf:
            return True
        rows = list(self._buf)
        if not self._insert(rows):
            return False
        for _ in range(len(rows)):
            self._buf.popleft()
        self.written += len(rows)
        if self._failing:
            self._failing = False
            log.warning("event log %s: writing again (%d rows dropped while it failed)", self.path, self.dropped)
            if self.dropped:
                notices.note("log", f"event log {self.path}: writing again; {self.dropped} rows were dropped while "
                                    f"it failed ({self._last_error})")
            else:
                notices.clear("log")
        return True

    def _note_failing(self) -> None:
        """For `status`: the rows waiting and dropped while the log cannot be written (cheap: every commit interval)."""
        notices.note("log", f"event log {self.path}: cannot write ({self._last_error}); {len(self._buf)} rows waiting, "
                            f"{self.dropped} dropped")

    def _report(self, e: BaseException) -> None:
        """One error line per failure episode, with the path; the next success says so. At exit,
        close() says it instead, in one line: nothing will retry."""
        self._last_error = f"{type(e).__name__}: {e}"
        if not self._failing and not self._closed:
            self._failing = True
            log.error("event log %s: cannot write (%s: %s); keeping up to %d rows in memory and retrying",
                      self.path, type(e).__name__, e, BUFFER_CAP)

    # -- shutdown -------------------------------------------------------------------------
    def close(self) -> None:
        """Write the partial summary and the buffer; safe to call twice. A failure is one line: the
        rows lost and why (no traceback, no "retrying": nothing retries after exit)."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._frames:
                self._append_summary()
            if not self.flush() and self._buf:
                log.error("event log %s: %d rows could not be written at exit (%s)", self.path, len(self._buf),
                          self._last_error)
        finally:
            self._drop_conn()
