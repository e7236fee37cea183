"""Teaching from still photos: what one photo of a face teaches, and the profile parts made from them.

`emotion-edge calibrate --photos` and `emotion-export calibration-report --teach` both teach through
these functions, so the measured profile is the one the command writes. A photo's one Haar box is
exact, the loop's boxes wander: each photo is read at `teach_framings` (profile.py) and averaged, the
resting face's too, so that it is the face as the loop's wandering boxes see it (a baseline from the exact
box alone can be off for one rare class by more than neutral's head start: docs/CALIBRATION.md).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from edge.calibration.file import Calibration, calibration_from_logps, log_probs, smiling
from edge.calibration.look import Looker
from edge.calibration.profile import Taught, teach_framings
from edge.types import Box


@dataclass(frozen=True)
class Lesson:
    """What one photo teaches."""

    probs: np.ndarray                                         # the model's own reading of the exact box
    looks: list[np.ndarray] = field(default_factory=list)     # the look at each framing
    logps: list[np.ndarray] = field(default_factory=list)     # log-probabilities at each framing
    smile: str = ""                                           # a resting face that smiles ('happy (72%)'): not usable


def teach_from_image(clf: Any, looker: Looker, gray: np.ndarray, box: Box, rest: bool) -> Lesson:
    """The lesson of the face in `box` of a grey photo, for the resting face (`rest`) or an expression.
    `clf`: an EmotionClassifier (the model's own answers). A resting face that reads as a smile is
    returned with `smile` set and nothing else taken."""
    probs = clf.classify(gray, box).probs.copy()
    if rest and (smile := smiling(probs, clf.labels)):
        return Lesson(probs, smile=smile)
    framings = teach_framings(box, gray.shape[1], gray.shape[0])
    looks = [looker.of(gray, b) for b in framings]
    own = tuple(int(v) for v in box)  # the box itself (first of the framings when inside the frame) is read above
    logps = [log_probs(probs if b == own else clf.classify(gray, b).probs) for b in framings]
    return Lesson(probs, looks, logps)


def rest_from(lessons: Sequence[Lesson], model_sha256: str, labels: Sequence[str]) -> Calibration:
    """The resting face taught by usable lessons (at least one): each photo's mean log-probabilities over its
    framings, and every framing's look."""
    return calibration_from_logps([np.mean(x.logps, axis=0) for x in lessons], model_sha256, labels, "photos",
                                  looks=[v for x in lessons for v in x.looks])


def taught_from(lessons: Sequence[Lesson]) -> Taught:
    """One taught expression from usable lessons (at least one): the mean over all their framings."""
    return Taught(np.mean([v for x in lessons for v in x.logps], axis=0),
                  np.mean(np.asarray([v for x in lessons for v in x.looks], np.float32), axis=0), time.time(),
                  len(lessons), "photos")
