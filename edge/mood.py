"""Mood smoothing: time-based EMA of the probabilities plus hysteresis, so the light neither flickers nor freezes.

Everything is in seconds, not frames, so the behaviour is the same at 5 fps and 60 fps:
- EMA: each new reading moves the smoothed probabilities by alpha = 1 - 2**(-dt / half_life).
- First mood: adopted at once when a face appears (the light answers someone walking up);
  after that a challenger must lead the current mood by `margin` continuously for `hold` seconds.
- Stale: an emotion that other moods have led, by any amount, for `stale` seconds in a row fades to
  neutral (no labels "neutral": to the leader); readings with no clear leader never pass the margin.
- `none` once no face has been seen for `no_face_timeout` seconds; the history is then dropped.
"""
from __future__ import annotations

import numpy as np

from edge.config import MoodConfig
from edge.types import NO_MOOD, Mood, Prediction


class MoodSmoother:
    """Feed `update(t, pred, face_seen)` every loop iteration; `.mood` is the current Mood."""

    def __init__(self, cfg: MoodConfig, labels: tuple[str, ...] | list[str]) -> None:
        self.cfg = cfg
        self.labels = tuple(labels)
        self._p: np.ndarray | None = None  # smoothed probabilities, None while there is no mood
        self._t_pred = 0.0
        self._last_face: float | None = None
        self._current = -1  # index into labels; -1 = none
        self._chal = -1
        self._chal_since = 0.0
        self._rest = self.labels.index("neutral") if "neutral" in self.labels else -1
        self._lost_since: float | None = None  # since when another mood leads the current one (by any amount)
        self.mood = Mood(NO_MOOD, 0.0, None, self.labels, 0.0)

    def reset(self) -> None:
        """Forget everything (e.g. after a source or model change)."""
        self._p, self._last_face, self._current, self._chal, self._lost_since = None, None, -1, -1, None

    def update(self, t: float, pred: Prediction | None, face_seen: bool) -> Mood:
        """One step at time t (seconds). pred=None, face_seen=True: face still there, no new reading."""
        if pred is not None:
            if pred.labels != self.labels:
                raise ValueError(f"prediction labels {pred.labels} differ from the smoother's {self.labels}")
            face_seen = True
        if face_seen:
            self._last_face = t
        if self._last_face is None or t - self._last_face >= self.cfg.no_face_timeout:
            self.reset()
            self.mood = Mood(NO_MOOD, 0.0, None, self.labels, t)
            return self.mood
        if pred is not None:
            self._smooth(t, pred.probs)
        p = self._p
        if p is None:  # face seen but never classified yet
            self.mood = Mood(NO_MOOD, 0.0, None, self.labels, t)
            return self.mood
        top = int(np.argmax(p))
        if self._current < 0 or top == self._current:
            self._current, self._chal, self._lost_since = top, -1, None
        else:
            if self._lost_since is None:  # the current mood stopped leading (any other leads, by any amount)
                self._lost_since = t
            if p[top] - p[self._current] >= self.cfg.margin:
                if top != self._chal:
                    self._chal, self._chal_since = top, t
            else:
                self._chal = -1
            by_margin = self._chal == top and t - self._chal_since >= self.cfg.hold
            if by_margin:
                self._current, self._chal, self._lost_since = top, -1, None
            # readings with no clear leader (a calibration that took the person's look out, speech) rarely
            # lead by the margin: an emotion they stopped favouring fades to the resting face, not to
            # whichever leads by a little
            elif self.cfg.stale > 0 and t - self._lost_since >= self.cfg.stale:
                rest = self._rest if self._rest >= 0 else top
                if self._current != rest:
                    self._current, self._chal, self._lost_since = rest, -1, None
        cur = self._current
        self.mood = Mood(self.labels[cur], float(p[cur]), p.copy(), self.labels, t)
        return self.mood

    def _smooth(self, t: float, probs: np.ndarray) -> None:
        if self._p is None:
            self._p = np.asarray(probs, np.float32).copy()
        else:
            dt = max(0.0, t - self._t_pred)
            hl = self.cfg.half_life
            alpha = 1.0 if hl <= 0 else 1.0 - 2.0 ** (-dt / hl)
            self._p += np.float32(alpha) * (np.asarray(probs, np.float32) - self._p)
        self._t_pred = t
