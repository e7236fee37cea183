"""The calibration file: one person's expression profile for one model, as small readable JSON bound to
the model it was made with (its sha256): its numbers are in that model's output space and mean nothing
for another model. The profile is the resting face (the *baseline*, mean log-probabilities of their
neutral face) and, for any other labels the person taught (`calibrate --as`), what the model read in
that expression and how the face looked (profile.py). A resting face alone is written as `VERSION` 1,
exactly as before profiles existed, and every version-1 file reads as a resting face alone; a file
with taught expressions or looks is version 2. How it is applied: edge.calibration.apply.
"""
from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edge.errors import EdgeError
from edge.calibration.look import LOOK_KIND, decode, encode
from edge.calibration.profile import Taught, parse_taught
from edge.safeio import UnsafeFileError, read_bytes, read_json, write_atomic

log = logging.getLogger("emotion-edge")

KIND = "emotion-edge calibration"
VERSION = 1
PROFILE_VERSION = 2
"""A file with taught expressions or looks; version 1 is the resting face alone (still written so)."""
PROB_FLOOR = 1e-3
"""Probabilities are floored before the log: an int8 output reads 0 for anything below 1/256."""
MAX_FILE_BYTES = 64 * 1024
SMILE_MIN = 0.5
"""A face read happy at least this strongly is smiling, not at rest: calibrating on it would make the
person's smiles read neutral. (Resting faces that read sad, angry or fearful are what calibration is
for.) Where real resting faces and smiles part: docs/CALIBRATION.md, "Use it"."""


class CalibrationError(EdgeError):
    """A calibration file that cannot be used, or a calibration that could not be made."""


@dataclass(frozen=True)
class Calibration:
    """One person's expression profile for one model: the resting face and any taught expressions."""

    model_sha256: str
    labels: tuple[str, ...]
    baseline: np.ndarray | None   # mean natural-log probabilities of the resting face, model label order;
                                  # None: only other expressions taught so far
    created: float                # unix time (of the resting face)
    frames: int                   # faces averaged (0: no resting face)
    source: str                   # "camera" or "photos"
    look: np.ndarray | None = None  # the resting face's look (look.py), when it was taken with one
    expressions: dict[str, Taught] = field(default_factory=dict)  # other labels taught, model label order
    spread: np.ndarray | None = None  # standard deviation of the resting samples' log-probabilities, per label
                                      # (None: one sample, or a file from before 2026-12-07)

    def to_json(self) -> dict[str, Any]:
        profile = self.look is not None or bool(self.expressions)
        d: dict[str, Any] = {
            "kind": KIND, "version": PROFILE_VERSION if profile else VERSION, "model_sha256": self.model_sha256,
            "labels": list(self.labels),
            "baseline": None if self.baseline is None else
            {lab: round(float(v), 5) for lab, v in zip(self.labels, self.baseline)},
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.created)),
            "created_unix": round(self.created, 3), "frames": self.frames, "source": self.source,
        }
        if self.baseline is not None and self.spread is not None:
            d["spread"] = {lab: round(float(v), 5) for lab, v in zip(self.labels, self.spread)}
        if profile:
            d["look_kind"] = LOOK_KIND
            if self.look is not None:
                d["look"] = encode(self.look)
            d["expressions"] = {lab: t.to_json(self.labels) for lab, t in self.expressions.items()}
        return d

    @property
    def has_rest(self) -> bool:
        return self.baseline is not None

    def taught(self) -> list[str]:
        """The labels this profile holds, in the model's order: 'neutral' for the resting face, then the others."""
        have = set(self.expressions) | ({"neutral"} if self.has_rest else set())
        return [lab for lab in self.labels if lab in have] + (["(resting face)"] if self.has_rest and "neutral" not in self.labels else [])

    def with_rest(self, rest: Calibration) -> Calibration:
        """This profile with its resting face replaced by `rest`'s (same model), expressions kept."""
        return replace(self, baseline=rest.baseline, created=rest.created, frames=rest.frames, source=rest.source,
                       look=rest.look, spread=rest.spread)

    def with_expression(self, label: str, taught: Taught) -> Calibration:
        """This profile with `label` taught (added or replaced)."""
        if label not in self.labels:
            raise CalibrationError(f"'{label}' is not one of the model's labels ({', '.join(self.labels)})")
        ex = dict(self.expressions)
        ex[label] = taught
        return replace(self, expressions={lab: ex[lab] for lab in self.labels if lab in ex})

    def describe_taught(self) -> str:
        """'resting face (2 photos, 2026-12-06 23:40); happy, sad, surprise taught (photos)'"""
        parts = []
        if self.has_rest:
            what = "camera frame" if self.source == "camera" else "photo"
            parts.append(f"resting face ({self.frames} {what}{'s' if self.frames != 1 else ''}, {self.created_text})")
        else:
            parts.append("no resting face")
        if self.expressions:
            newest = max(t.created for t in self.expressions.values())
            parts.append(f"{', '.join(self.expressions)} taught (latest {time.strftime('%Y-%m-%d %H:%M', time.localtime(newest))})")
        return "; ".join(parts)

    @property
    def created_text(self) -> str:
        return time.strftime("%Y-%m-%d %H:%M", time.localtime(self.created))

    def resting(self) -> str:
        """What the model read in the resting face, which from now on reads neutral: 'sad 48%, neutral 30%'."""
        if self.baseline is None:
            return ""
        p = np.exp(self.baseline - self.baseline.max())
        p /= p.sum()
        top = np.argsort(-p, kind="stable")[:2]
        return ", ".join(f"{self.labels[i]} {p[i]:.0%}" for i in top)

    def moved_at_rest(self, n: int = 3) -> str:
        """The emotions that moved most while the resting face was taken: 'fear 0.93, surprise 0.61' ('' without a spread)."""
        if self.spread is None:
            return ""
        order = [i for i in np.argsort(-self.spread, kind="stable") if self.labels[i] != "neutral"][:n]
        return ", ".join(f"{self.labels[i]} {self.spread[i]:.2f}" for i in order)

    def describe(self) -> str:
        """'from 2026-11-25 12:40, 42 camera frames' / '..., 2 photos' (and what else the profile holds)"""
        if self.expressions or not self.has_rest:
            return self.describe_taught()
        what = "camera frame" if self.source == "camera" else "photo"
        return f"from {self.created_text}, {self.frames} {what}{'s' if self.frames != 1 else ''}"


def log_probs(probs: np.ndarray) -> np.ndarray:
    """Floored natural-log probabilities (float64)."""
    return np.log(np.maximum(np.asarray(probs, np.float64), PROB_FLOOR))


def smiling(probs: np.ndarray, labels: Sequence[str]) -> str:
    """'happy (72%)' when the face reads as a smile rather than at rest, else ''."""
    if "happy" not in labels:
        return ""
    p = float(probs[list(labels).index("happy")])
    return f"happy ({p:.0%})" if p >= SMILE_MIN else ""


def make_calibration(samples: Sequence[np.ndarray], model_sha256: str, labels: Sequence[str], source: str,
                     created: float | None = None, looks: Sequence[np.ndarray] = ()) -> Calibration:
    """Average the raw (uncalibrated) probabilities of resting-face samples into a baseline (and their
    looks, when given, into the resting face's look)."""
    return calibration_from_logps([log_probs(p) for p in samples], model_sha256, labels, source, created, looks)


def calibration_from_logps(samples: Sequence[np.ndarray], model_sha256: str, labels: Sequence[str], source: str,
                           created: float | None = None, looks: Sequence[np.ndarray] = ()) -> Calibration:
    """The resting face from each sample's (floored) log-probabilities: their mean is the baseline, their
    spread (from two samples on) how much each class moves while the face is at rest (talking, say)."""
    if not len(samples):
        raise CalibrationError("no faces to calibrate from")
    lp = np.mean(samples, axis=0)
    if lp.shape != (len(labels),) or not np.all(np.isfinite(lp)):
        raise CalibrationError("calibration samples do not match the model's labels")
    spread = np.std(samples, axis=0) if len(samples) > 1 else None
    return Calibration(model_sha256, tuple(labels), lp, time.time() if created is None else created,
                       len(samples), source, look=mean_look(looks), spread=spread)


def make_taught(samples: Sequence[np.ndarray], looks: Sequence[np.ndarray], labels: Sequence[str], source: str,
                created: float | None = None) -> Taught:
    """Average one taught expression's raw probabilities and looks."""
    if not samples:
        raise CalibrationError("no faces to learn the expression from")
    lp = np.mean([log_probs(p) for p in samples], axis=0)
    if lp.shape != (len(labels),) or not np.all(np.isfinite(lp)):
        raise CalibrationError("expression samples do not match the model's labels")
    return Taught(lp, mean_look(looks), time.time() if created is None else created, len(samples), source)


def mean_look(looks: Sequence[np.ndarray]) -> np.ndarray | None:
    return np.mean(np.asarray(looks, np.float32), axis=0) if len(looks) else None


# -- files ----------------------------------------------------------------------------------
def save(cal: Calibration, path: Path) -> None:
    """Atomic write (temp file + rename), mode 0644: readable by `status`, never half-written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, (json.dumps(cal.to_json(), indent=1) + "\n").encode("utf-8"), 0o644, exact=True)


def parse(data: Any, where: str) -> Calibration:
    """Validate a decoded calibration JSON object; CalibrationError names what is wrong."""
    if not isinstance(data, dict) or data.get("kind") != KIND:
        raise CalibrationError(f"{where}: not an emotion-edge calibration file")
    version = data.get("version")
    if version not in (VERSION, PROFILE_VERSION) or isinstance(version, bool):
        raise CalibrationError(f"{where}: calibration version {version!r} is not supported (expected {VERSION} or {PROFILE_VERSION})")
    sha, labels, base = data.get("model_sha256"), data.get("labels"), data.get("baseline")
    if not isinstance(sha, str) or len(sha) != 64:
        raise CalibrationError(f"{where}: 'model_sha256' must be a sha256 hex string")
    if (not isinstance(labels, list) or not labels or len(labels) > 64
            or not all(isinstance(x, str) and x.isprintable() for x in labels) or len(set(labels)) != len(labels)):
        raise CalibrationError(f"{where}: 'labels' must be a list of distinct label names")
    expressions: dict[str, Taught] = {}
    look = None
    if version == PROFILE_VERSION:
        ours = data.get("look_kind") == LOOK_KIND  # looks made another way are left out, the rest is used
        ex = data.get("expressions", {})
        if not isinstance(ex, dict) or not set(ex) <= set(labels) - {"neutral"}:
            raise CalibrationError(f"{where}: 'expressions' must map the model's labels (other than neutral) to taught faces")
        for lab in labels:
            if lab in ex:
                t = parse_taught(ex[lab], labels, f"{where}: expression '{lab}'", CalibrationError)
                expressions[lab] = t if ours else replace(t, look=None)
        if "look" in data and ours:
            look = decode(data["look"])
            if look is None:
                raise CalibrationError(f"{where}: 'look' is not a face look of this version")
    if base is None and version == PROFILE_VERSION and expressions:
        return Calibration(sha, tuple(labels), None, 0.0, 0, "photos", look=None, expressions=expressions)
    if not isinstance(base, dict) or set(base) != set(labels):
        raise CalibrationError(f"{where}: 'baseline' must give one number for each label")
    vals = [base[k] for k in labels]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and -50 <= v <= 0 for v in vals):
        raise CalibrationError(f"{where}: 'baseline' values must be log-probabilities (finite, <= 0)")
    created, frames = data.get("created_unix", 0), data.get("frames", 0)
    if not isinstance(created, (int, float)) or isinstance(created, bool) or not math.isfinite(created):
        raise CalibrationError(f"{where}: 'created_unix' must be a number")
    if not isinstance(frames, int) or isinstance(frames, bool) or frames < 1:
        raise CalibrationError(f"{where}: 'frames' must be a positive integer")
    source = data.get("source", "camera")
    return Calibration(sha, tuple(labels), np.array(vals, np.float64), float(created), frames,
                       source if source in ("camera", "photos") else "camera", look=look, expressions=expressions,
                       spread=_spread(data.get("spread"), labels, where))


def _spread(sp: Any, labels: list[str], where: str) -> np.ndarray | None:
    """The optional 'spread': one standard deviation of log-probability (0 to 20) per label."""
    if sp is None:
        return None
    if not isinstance(sp, dict) or set(sp) != set(labels):
        raise CalibrationError(f"{where}: 'spread' must give one number for each label")
    vals = [sp[k] for k in labels]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and 0 <= v <= 20 for v in vals):
        raise CalibrationError(f"{where}: 'spread' values must be standard deviations of log-probabilities (0 to 20)")
    return np.array(vals, np.float64)


def load(path: Path) -> Calibration:
    """Read and validate a calibration file (regular file, at most 64 KiB)."""
    path = Path(path)
    data = read_json(path, MAX_FILE_BYTES, CalibrationError, missing="calibration file not found",
                     not_regular="not a calibration file (not a regular file of at most 64 KiB)",
                     unreadable="cannot read calibration", not_json="calibration file is not valid JSON")
    return parse(data, str(path))


def remove_if_ours(path: Path, kind: str = KIND) -> bool:
    """Remove `path` only if it is a file of `kind` (a calibration, or the learned resting face's):
    False when there is none; CalibrationError, and nothing removed, for anything else (a wrong
    `[calibrate] file` or `--out` must never delete someone's thesis)."""
    path = Path(path)
    if not os.path.lexists(path):
        return False
    try:
        data = json.loads(read_bytes(path, MAX_FILE_BYTES).decode("utf-8"))
    except (OSError, UnsafeFileError, UnicodeDecodeError, ValueError, RecursionError):
        data = None
    if not isinstance(data, dict) or data.get("kind") != kind:
        raise CalibrationError(f"{path}: not an emotion-edge {kind.removeprefix('emotion-edge ')} file; not removed")
    path.unlink()
    return True


def for_model(cal: Calibration, model_sha256: str, labels: Sequence[str], where: str) -> Calibration:
    """The calibration if it was made with this model; CalibrationError (one line) if not."""
    if cal.model_sha256 != model_sha256:
        raise CalibrationError(f"{where}: calibration was made for another model "
                               f"({cal.model_sha256[:12]}, running {model_sha256[:12]}); ignored, run `emotion-edge calibrate` again")
    if tuple(labels) != cal.labels:  # the same model file: the labels were edited in one or the other
        raise CalibrationError(f"{where}: calibration lists other labels than the model ({', '.join(cal.labels)[:80]}); "
                               "ignored, run `emotion-edge calibrate` again")
    return cal


def load_for(path: Path, model_sha256: str, labels: Sequence[str], *, required: bool) -> Calibration | None:
    """The calibration at `path` if it fits this model. A missing default file is fine; a file made for
    another model is ignored with one warning; an explicit path that cannot be used is an error."""
    if not required and not os.path.lexists(path):
        return None
    try:
        return for_model(load(path), model_sha256, labels, str(path))
    except CalibrationError as e:
        if required:
            raise
        log.warning("%s", e)
        return None
