"""`emotion-export calibration-report`: per-person calibration measured on photos of known people.

The data is a folder with `labels.csv` (`file,label,subject`; file relative to the folder). For each
subject, the first `--calib N` neutral photos (by file name) make a calibration exactly as
`emotion-edge calibrate --photos` does; every other photo of that subject is then classified as
`emotion-edge photo` does (Haar, largest face), without and with that calibration, and with the
resting face the device learns while watching when no calibration is in use ("learned"): here the mean
over all of that subject's other photos, every expression equally often (the worst case for it; a
person in front of a mood light is mostly at rest), applied with no neutral head start.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge.errors import DataError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, type=Path, help="folder with labels.csv (file,label,subject) and the photos")
    p.add_argument("--model", default="", help="NAME.tflite (default: the bundled model)")
    p.add_argument("--calib", type=int, default=2, help="neutral photos per subject used for the calibration (first by file name)")
    p.add_argument("--strength", type=float, default=None, help="calibration strength (default: [calibrate] strength)")
    p.add_argument("--neutral-margin", type=float, default=None, help="neutral head start (default: [calibrate] neutral_margin)")
    p.add_argument("--flip-average", action="store_true", help="classify the mirror image too and average")
    p.add_argument("--compare", default="", metavar="MODEL",
                   help="a second .tflite on the same photos: its numbers and a paired test (which photos each gets right)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")


@dataclass(frozen=True)
class Photo:
    """One evaluated photo: its true class and the predicted ones (-1: no face found, counted wrong)."""

    path: Path
    subject: str
    truth: int
    uncalibrated: int
    calibrated: int
    learned: int = -1


@dataclass
class Measurement:
    subjects: list["SubjectResult"]
    confusion_uncalibrated: np.ndarray  # true x predicted
    confusion_calibrated: np.ndarray
    confusion_learned: np.ndarray
    labels: tuple[str, ...]
    photos: list[Photo]


@dataclass
class SubjectResult:
    subject: str
    n: int = 0
    uncalibrated: int = 0
    calibrated: int = 0
    learned: int = 0
    calibration_photos: list[str] = field(default_factory=list)


def read_labels(root: Path) -> list[tuple[Path, str, str]]:
    path = root / "labels.csv"
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except FileNotFoundError:
        raise DataError(f"{path}: not found (the folder needs labels.csv with file,label,subject)") from None
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"{path}: cannot read ({e})") from None
    out = []
    for i, r in enumerate(rows, start=2):
        if not r.get("file") or not r.get("label") or not r.get("subject"):
            raise DataError(f"{path}: line {i}: needs file, label and subject")
        out.append((root / r["file"], r["label"].strip().lower(), r["subject"].strip()))
    if not out:
        raise DataError(f"{path}: no rows")
    return out


def measure(rows: list[tuple[Path, str, str]], model: str = "", calib: int = 2, strength: float = 1.0,
            neutral_margin: float = 1.0, flip_average: bool = False) -> Measurement:
    """Per-subject counts, the uncalibrated and calibrated confusion matrices, and each photo's outcome."""
    from edge.calibration import CalibrationApplier, make_calibration
    from edge.classify import EmotionClassifier, resolve_model
    from edge.config import DetectConfig
    from edge.detect import FaceDetector
    from edge.photo import read_image

    clf = EmotionClassifier(resolve_model(model), flip_average=flip_average)
    det = FaceDetector(DetectConfig())
    labels = clf.labels
    k = len(labels)
    cm_u, cm_c, cm_l = np.zeros((k, k), int), np.zeros((k, k), int), np.zeros((k, k), int)
    results, photos = [], []
    for subject in sorted({s for _, _, s in rows}):
        mine = sorted((r for r in rows if r[2] == subject), key=lambda r: r[0].name)
        cal_rows = [r for r in mine if r[1] == "neutral"][:calib]
        res = SubjectResult(subject, calibration_photos=[r[0].name for r in cal_rows])
        probs = {}
        for path, _, _ in mine:
            gray = read_image(path).gray
            boxes = det.detect(gray)
            probs[path] = None if not boxes else clf.classify(gray, boxes[0]).probs.copy()
        samples = [probs[r[0]] for r in cal_rows if probs[r[0]] is not None]
        applier = CalibrationApplier(make_calibration(samples, clf.info.sha256, labels, "photos"), strength,
                                     neutral_margin) if samples else None
        for path, label, _ in mine:
            if any(path == r[0] for r in cal_rows) or label not in labels:
                continue
            res.n += 1
            p = probs[path]
            t = labels.index(label)
            if p is None:
                photos.append(Photo(path, subject, t, -1, -1))
                continue  # no face found: counts as wrong
            u = int(np.argmax(p))
            c = int(np.argmax(applier.apply(p.copy()))) if applier else u
            seen = [q for other, q in probs.items() if other != path and q is not None]
            lrn = CalibrationApplier(make_calibration(seen, clf.info.sha256, labels, "camera"), strength, 0.0) if seen else None
            g = int(np.argmax(lrn.apply(p.copy()))) if lrn else u
            cm_u[t, u] += 1
            cm_c[t, c] += 1
            cm_l[t, g] += 1
            res.uncalibrated += u == t
            res.calibrated += c == t
            res.learned += g == t
            photos.append(Photo(path, subject, t, u, c, g))
        results.append(res)
    clf.close()
    return Measurement(results, cm_u, cm_c, cm_l, labels, photos)


def mcnemar_p(only_a: int, only_b: int) -> float:
    """Exact two-sided McNemar test: how likely a split this uneven of the photos only one model gets
    right is, if both models were equally good (on ~100 photos, 5 points can be chance)."""
    n = only_a + only_b
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(only_a, only_b) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def paired(a: Measurement, b: Measurement, which: str) -> dict:
    """Photos only A / only B gets right (`which`: 'uncalibrated', 'calibrated' or 'learned') and the exact p."""
    if [p.path for p in a.photos] != [p.path for p in b.photos]:
        raise DataError("the two models did not see the same photos")
    ra = [getattr(p, which) == p.truth for p in a.photos]
    rb = [getattr(p, which) == p.truth for p in b.photos]
    only_a = sum(x and not y for x, y in zip(ra, rb))
    only_b = sum(y and not x for x, y in zip(ra, rb))
    return {"only_first": only_a, "only_second": only_b, "p": mcnemar_p(only_a, only_b)}


def run(args: argparse.Namespace) -> int:
    from edge.config import CalibrateConfig

    if args.calib < 1:
        raise DataError(f"--calib must be at least 1 (got {args.calib})")
    d = CalibrateConfig()
    strength = d.strength if args.strength is None else args.strength
    margin = d.neutral_margin if args.neutral_margin is None else args.neutral_margin
    rows = read_labels(args.data)
    m = measure(rows, args.model, args.calib, strength, margin, args.flip_average)
    other = measure(rows, args.compare, args.calib, strength, margin, args.flip_average) if args.compare else None
    if args.json:
        out = _as_json(m, strength, margin)
        if other is not None:
            out["compare"] = _as_json(other, strength, margin) | {
                "model": args.compare, "paired": {w: paired(m, other, w) for w in WAYS}}
        print(json.dumps(out, indent=1))
        return 0
    _print(m, strength, margin)
    if other is not None:
        print(f"\n--compare {args.compare}:")
        _print(other, strength, margin)
        print("\npaired, same photos (first = --model, second = --compare):")
        for w in WAYS:
            r = paired(m, other, w)
            print(f"  {w:12s}: only the first right {r['only_first']}, only the second right {r['only_second']}, "
                  f"exact McNemar p = {r['p']:.2f}{'' if r['p'] < 0.05 else ' (could be chance)'}")
    return 0


WAYS = ("uncalibrated", "calibrated", "learned")


def _totals(m: Measurement) -> tuple[int, int, int, int]:
    return (sum(r.n for r in m.subjects), sum(r.uncalibrated for r in m.subjects), sum(r.calibrated for r in m.subjects),
            sum(r.learned for r in m.subjects))


def _as_json(m: Measurement, strength: float, margin: float) -> dict:
    n, u, c, g = _totals(m)
    return {"n": n, "uncalibrated": u / n, "calibrated": c / n, "learned": g / n, "strength": strength,
            "neutral_margin": margin, "labels": list(m.labels),
            "subjects": [{"subject": r.subject, "n": r.n, "uncalibrated": r.uncalibrated / r.n,
                          "calibrated": r.calibrated / r.n, "learned": r.learned / r.n,
                          "calibration_photos": r.calibration_photos}
                         for r in m.subjects if r.n],
            "confusion_uncalibrated": m.confusion_uncalibrated.tolist(),
            "confusion_calibrated": m.confusion_calibrated.tolist(),
            "confusion_learned": m.confusion_learned.tolist()}


def _print(m: Measurement, strength: float, margin: float) -> None:
    n, u, c, g = _totals(m)
    cm_u, cm_c = m.confusion_uncalibrated, m.confusion_calibrated
    print(f"{'subject':8s} {'photos':>6s} {'uncalibrated':>13s} {'calibrated':>11s} {'learned':>8s}   calibrated from")
    for r in m.subjects:
        if r.n:
            print(f"{r.subject:8s} {r.n:6d} {r.uncalibrated / r.n:12.1%} {r.calibrated / r.n:11.1%} {r.learned / r.n:8.1%}   "
                  f"{', '.join(r.calibration_photos)}")
    print(f"{'all':8s} {n:6d} {u / n:12.1%} {c / n:11.1%} {g / n:8.1%}   (strength {strength:g}, neutral margin {margin:g}; "
          f"learned: the mean of all the subject's other photos, no neutral margin)")
    cm_l = m.confusion_learned
    print("recall per class (uncalibrated -> calibrated / learned): " + ", ".join(
        f"{lab} {cm_u[i, i] / max(1, cm_u[i].sum()):.0%}->{cm_c[i, i] / max(1, cm_c[i].sum()):.0%}"
        f"/{cm_l[i, i] / max(1, cm_l[i].sum()):.0%}"
        for i, lab in enumerate(m.labels) if cm_u[i].sum()))
