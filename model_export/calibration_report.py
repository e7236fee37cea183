"""`emotion-export calibration-report`: per-person calibration measured on photos of known people.

The data is a folder with `labels.csv` (`file,label,subject`; file relative to the folder). For each
subject, the first `--calib N` neutral photos (by file name) make a calibration exactly as
`emotion-edge calibrate --photos` does; every other photo of that subject is then classified as
`emotion-edge photo` does (Haar, largest face), without and with that calibration, and with the
resting face the device learns while watching when no calibration is in use ("learned"): here the mean
over all of that subject's other photos, every expression equally often (the worst case for it; a
person in front of a mood light is mostly at rest), applied with no neutral head start.

With `--teach`, each subject also teaches an expression profile as `emotion-edge calibrate --photos F
--as E` does (edge.calibration.teach): the first photo of each expression by file name teaches, on its
exact Haar box; the subject's other photos are read as `emotion-edge photo --calibration` reads them,
with all the model's expressions taught and with four (neutral, happy, sad, surprise), beside the resting
face alone (from that same first neutral photo) and no calibration, on the same photos per setting (with
four taught, the other expressions' first photos are read too).
"""
from __future__ import annotations

import argparse
import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from edge.argtypes import float_in, int_in
from edge.config import NEUTRAL_MARGIN_RANGE, STRENGTH_RANGE, CalibrateConfig
from edge.contract import CROP_MARGIN_RANGE
from edge.errors import DataError
from model_export.paired import mcnemar_p, only_right, paired_shares


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, type=Path, help="folder with labels.csv (file,label,subject) and the photos")
    p.add_argument("--model", default="", help="NAME.tflite (default: the bundled model)")
    p.add_argument("--calib", type=int_in(1), default=2, help="neutral photos per subject used for the calibration (first by file name)")
    p.add_argument("--strength", type=float_in(*STRENGTH_RANGE), default=None, help="calibration strength (default: [calibrate] strength)")
    p.add_argument("--neutral-margin", type=float_in(*NEUTRAL_MARGIN_RANGE), default=None, help="neutral head start (default: [calibrate] neutral_margin)")
    p.add_argument("--flip-average", action="store_true", help="classify the mirror image too and average")
    p.add_argument("--single-crop", action="store_true",
                   help="only the model's own crop of each face (default: four framings averaged, as `photo` does)")
    p.add_argument("--crop-margin", type=float_in(*CROP_MARGIN_RANGE), default=None, metavar="M",
                   help="crop this share of the box around each face instead of the model's input.crop_margin "
                        "(to choose one before exporting; applies to --compare too)")
    p.add_argument("--compare", default="", metavar="MODEL",
                   help="a second .tflite on the same photos: its numbers and a paired test (which photos each gets right)")
    p.add_argument("--jitter", type=int_in(0, 1000), default=0, metavar="N",
                   help="also repeat it N times with each face box moved and resized a little, as Haar's box wanders "
                        "between frames: mean and spread, and (with --compare) a paired test over photos")
    p.add_argument("--teach", action="store_true",
                   help="also teach each subject's expressions as `emotion-edge calibrate --photos --as` does (their first "
                        "photo of each by file name) and read their other photos with the profile: all expressions taught "
                        "and four (neutral, happy, sad, surprise), beside the resting face alone and no calibration")
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
    margins: tuple[float, ...] = ()  # the crop margins each face was read at (averaged when several)


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


JITTER_SHIFT = 0.05
"""Jittered boxes move by up to this share of their size, in x and in y ..."""
JITTER_SIZE = 0.10
"""... and grow or shrink by up to this share: Haar tries sizes 10 % apart (scale factor 1.1)."""


def jitter_box(box, rng: np.random.Generator, frame_w: int, frame_h: int) -> tuple[int, int, int, int]:
    """The box moved and resized at random within the JITTER_* bounds, kept inside the frame."""
    x, y, w, h = box
    dx, dy = rng.uniform(-JITTER_SHIFT, JITTER_SHIFT, 2)
    k = rng.uniform(1 - JITTER_SIZE, 1 + JITTER_SIZE)
    nw, nh = max(8, round(w * k)), max(8, round(h * k))
    cx, cy = x + w / 2 + dx * w, y + h / 2 + dy * h
    nx = int(min(max(0, round(cx - nw / 2)), max(0, frame_w - nw)))
    ny = int(min(max(0, round(cy - nh / 2)), max(0, frame_h - nh)))
    return nx, ny, int(min(nw, frame_w)), int(min(nh, frame_h))


def measure(rows: list[tuple[Path, str, str]], model: str = "", calib: int = 2, strength: float | None = None,
            neutral_margin: float | None = None, flip_average: bool = False, jitter_seed: int | None = None,
            multi_crop: bool = True, found: dict | None = None, crop_margin: float | None = None) -> Measurement:
    """Per-subject counts, the uncalibrated and calibrated confusion matrices, and each photo's outcome.
    With `jitter_seed`, every face box (calibration photos' too) is jittered, reproducibly for that seed.
    `found` caches each photo's Haar boxes between calls (jittered repeats detect once)."""
    from edge.calibration import CalibrationApplier, make_calibration
    from edge.calibration.look import Looker
    from edge.calibration.teach import rest_from, teach_from_image
    from edge.classify import EmotionClassifier, resolve_model
    from edge.config import DetectConfig
    from edge.detect import StillDetector
    from edge.photo import own_face, read_image

    d = CalibrateConfig()  # None: the device's defaults
    strength = d.strength if strength is None else strength
    neutral_margin = d.neutral_margin if neutral_margin is None else neutral_margin
    clf = EmotionClassifier(resolve_model(model), flip_average=flip_average, multi_crop=multi_crop, crop_margin=crop_margin)
    det = StillDetector(DetectConfig())  # as `photo` finds faces
    labels = clf.labels
    looker = Looker(clf.info.input.crop_margin)
    k = len(labels)
    cm_u, cm_c, cm_l = np.zeros((k, k), int), np.zeros((k, k), int), np.zeros((k, k), int)
    results, photos = [], []
    rng = None if jitter_seed is None else np.random.default_rng(jitter_seed)
    for subject in sorted({s for _, _, s in rows}):
        mine = sorted((r for r in rows if r[2] == subject), key=lambda r: r[0].name)
        cal_rows = [r for r in mine if r[1] == "neutral"][:calib]
        res = SubjectResult(subject, calibration_photos=[r[0].name for r in cal_rows])
        probs, ambiguous = {}, set()  # ambiguous: no face of the person's own, as `calibrate --photos` decides
        lessons = []  # the calibration photos' resting faces, as `calibrate --photos` takes them
        for path, _, _ in mine:
            gray = read_image(path).gray
            boxes = found.get(path) if found is not None else None
            if boxes is None:
                boxes = det.detect(gray)
                if found is not None:
                    found[path] = boxes
            if own_face(boxes) is None:
                ambiguous.add(path)
            if boxes and rng is not None:
                boxes = [jitter_box(boxes[0], rng, gray.shape[1], gray.shape[0])]
            if boxes and path not in ambiguous and any(path == r[0] for r in cal_rows):
                lesson = teach_from_image(clf, looker, gray, boxes[0], rest=True)  # reads the exact box too
                probs[path] = lesson.probs
                if not lesson.smile:
                    lessons.append(lesson)
            else:
                probs[path] = None if not boxes else clf.classify(gray, boxes[0]).probs.copy()
        applier = CalibrationApplier(rest_from(lessons, clf.info.sha256, labels), strength,
                                     neutral_margin, d.rest_spread) if lessons else None
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
    return Measurement(results, cm_u, cm_c, cm_l, labels, photos, clf.margins)


# -- taught expression profiles (--teach) -------------------------------------------------------
TEACH_SETTINGS: dict[str, tuple[str, ...] | None] = {"seven": None, "four": ("neutral", "happy", "sad", "surprise")}
"""Which expressions each setting teaches (None: all the model's labels)."""
TEACH_WAYS = ("uncalibrated", "resting", "taught")
"""How each test photo is read: no calibration, the resting face alone, the taught profile."""


@dataclass(frozen=True)
class TeachPhoto:
    """One test photo of one setting: its true class and the class read each way (-1: no face found, wrong)."""

    path: Path
    subject: str
    truth: int
    uncalibrated: int
    resting: int
    taught: int


@dataclass
class TeachSubject:
    subject: str
    n: int = 0
    uncalibrated: int = 0
    resting: int = 0
    taught: int = 0
    teaching_photos: dict[str, str] = field(default_factory=dict)  # label -> file name
    not_taught: list[str] = field(default_factory=list)  # labels whose teaching photo had no usable face


@dataclass
class TeachMeasurement:
    """Per setting ("seven", "four"): the labels taught, per-subject counts and each test photo's outcome."""

    labels: tuple[str, ...]
    taught_labels: dict[str, tuple[str, ...]]
    subjects: dict[str, list[TeachSubject]]
    photos: dict[str, list[TeachPhoto]]

    def totals(self, setting: str) -> dict[str, int]:
        subs = self.subjects[setting]
        return {"n": sum(r.n for r in subs), **{w: sum(getattr(r, w) for r in subs) for w in TEACH_WAYS}}


def measure_teach(rows: list[tuple[Path, str, str]], model: str = "", strength: float | None = None,
                  neutral_margin: float | None = None, flip_average: bool = False, jitter_seed: int | None = None,
                  multi_crop: bool = True, found: dict | None = None, crop_margin: float | None = None,
                  lessons: dict | None = None) -> TeachMeasurement:
    """Each subject's expressions taught from their first photo of each (exact Haar box, as `calibrate
    --photos` teaches) and their other photos read with and without the profile. With `jitter_seed`, the
    test photos' boxes are jittered as `measure` jitters them for that seed (the same boxes). `found`
    caches Haar boxes, `lessons` what each teaching photo taught (both the same in every repeat)."""
    from edge.calibration import Calibration, CalibrationApplier
    from edge.calibration.look import Looker
    from edge.calibration.teach import rest_from, taught_from, teach_from_image
    from edge.classify import EmotionClassifier, resolve_model
    from edge.config import DetectConfig
    from edge.detect import StillDetector
    from edge.photo import own_face, read_image

    d = CalibrateConfig()
    strength = d.strength if strength is None else strength
    neutral_margin = d.neutral_margin if neutral_margin is None else neutral_margin
    clf = EmotionClassifier(resolve_model(model), flip_average=flip_average, multi_crop=multi_crop, crop_margin=crop_margin)
    det = StillDetector(DetectConfig())
    # the looks at the crop margin the faces are read at (the model's own unless --crop-margin says otherwise)
    looker = Looker(clf.info.input.crop_margin if crop_margin is None else crop_margin)
    labels, sha = clf.labels, clf.info.sha256
    lessons = {} if lessons is None else lessons
    rng = None if jitter_seed is None else np.random.default_rng(jitter_seed)
    taught_labels = {k: tuple(lab for lab in labels if v is None or lab in v) for k, v in TEACH_SETTINGS.items()}
    out = TeachMeasurement(labels, taught_labels, {k: [] for k in TEACH_SETTINGS}, {k: [] for k in TEACH_SETTINGS})

    def boxes_of(path: Path, gray: np.ndarray) -> list:
        boxes = found.get(path) if found is not None else None
        if boxes is None:
            boxes = det.detect(gray)
            if found is not None:
                found[path] = boxes
        return boxes

    def lesson(path: Path, rest: bool):
        """What the photo teaches (None: no usable face, as `calibrate --photos` would skip it)."""
        key = (path, rest)
        if key not in lessons:
            gray = read_image(path).gray
            box = own_face(boxes_of(path, gray))
            got = None if box is None else teach_from_image(clf, looker, gray, box, rest)
            lessons[key] = None if got is None or got.smile else got
        return lessons[key]

    for subject in sorted({s for _, _, s in rows}):
        mine = sorted((r for r in rows if r[2] == subject), key=lambda r: r[0].name)
        read = {}  # path -> (probs, look) of its (jittered) box, or None: no face
        for path, _, _ in mine:  # in measure's order, so a seed jitters each box alike
            gray = read_image(path).gray
            boxes = boxes_of(path, gray)
            if boxes and rng is not None:
                boxes = [jitter_box(boxes[0], rng, gray.shape[1], gray.shape[0])]
            read[path] = None if not boxes else (clf.classify(gray, boxes[0]).probs.copy(), looker.of(gray, boxes[0]))
        first: dict[str, Path] = {}
        for path, label, _ in mine:
            first.setdefault(label, path)
        neutral = first.get("neutral")
        rest_lesson = lesson(neutral, True) if neutral is not None else None
        rest = rest_from([rest_lesson], sha, labels) if rest_lesson is not None else None
        resting = CalibrationApplier(rest, strength, neutral_margin, d.rest_spread) if rest is not None else None
        for setting, chosen in taught_labels.items():
            teach = {lab: first[lab] for lab in chosen if lab in first}
            res = TeachSubject(subject, teaching_photos={lab: p.name for lab, p in teach.items()})
            profile = rest if rest is not None else Calibration(sha, labels, None, 0.0, 0, "photos")
            if "neutral" in teach and rest is None:
                res.not_taught.append("neutral")
            for lab, path in teach.items():
                if lab == "neutral":
                    continue
                got = lesson(path, False)
                if got is None:
                    res.not_taught.append(lab)
                else:
                    profile = profile.with_expression(lab, taught_from([got]))
            reader = CalibrationApplier(profile, strength, neutral_margin, d.rest_spread) if profile.has_rest or profile.expressions else None
            for path, label, _ in mine:
                if path in teach.values() or label not in labels:
                    continue
                res.n += 1
                t = labels.index(label)
                if read[path] is None:
                    out.photos[setting].append(TeachPhoto(path, subject, t, -1, -1, -1))
                    continue  # no face found: counts as wrong
                p, look = read[path]
                u = int(np.argmax(p))
                r = int(np.argmax(resting.apply(p.copy()))) if resting else u
                k = int(np.argmax(reader.apply(p.copy(), look))) if reader else u
                res.uncalibrated += u == t
                res.resting += r == t
                res.taught += k == t
                out.photos[setting].append(TeachPhoto(path, subject, t, u, r, k))
            out.subjects[setting].append(res)
    clf.close()
    return out


def jittered_teach(rows: list[tuple[Path, str, str]], model: str, repeats: int, **kw) -> dict:
    """measure_teach repeated with seeds 0..N-1: per setting and way, the mean and sd of accuracy."""
    acc: dict[str, dict[str, list[float]]] = {k: {w: [] for w in TEACH_WAYS} for k in TEACH_SETTINGS}
    kw.setdefault("lessons", {})
    for seed in range(repeats):
        m = measure_teach(rows, model, jitter_seed=seed, **kw)
        for k in TEACH_SETTINGS:
            t = m.totals(k)
            for w in TEACH_WAYS:
                acc[k][w].append(t[w] / max(1, t["n"]))
    return {"repeats": repeats, **{k: {w: {"mean": float(np.mean(a)), "sd": float(np.std(a))} for w, a in v.items()}
                                   for k, v in acc.items()}}


def paired_teach(a: TeachMeasurement, b: TeachMeasurement, setting: str, which: str) -> dict:
    """As `paired`, for one setting and way of two models' teach measurements."""
    return _paired_photos(a.photos[setting], b.photos[setting], which, "the two models did not read the same photos")


def _teach_json(m: TeachMeasurement) -> dict:
    out = {}
    for k in TEACH_SETTINGS:
        t = m.totals(k)
        n = max(1, t["n"])
        out[k] = {"taught_labels": list(m.taught_labels[k]), "n": t["n"], "right": {w: t[w] for w in TEACH_WAYS},
                  **{w: t[w] / n for w in TEACH_WAYS},
                  "subjects": [{"subject": r.subject, "n": r.n, "right": {w: getattr(r, w) for w in TEACH_WAYS},
                                **{w: getattr(r, w) / r.n for w in TEACH_WAYS},
                                "teaching_photos": r.teaching_photos, "not_taught": r.not_taught}
                               for r in m.subjects[k] if r.n]}
    return out


SETTING_TITLES = {"seven": "all expressions taught", "four": "four taught"}


def _print_teach(m: TeachMeasurement) -> None:
    print("\ntaught profiles (per subject, the first photo of each expression by file name teaches, as `calibrate --photos "
          "--as` does; the other photos are read as `photo --calibration` reads them; resting only: the same first neutral photo):")
    for k in TEACH_SETTINGS:
        t = m.totals(k)
        print(f"{SETTING_TITLES[k]} ({', '.join(m.taught_labels[k])}):")
        print(f"  {'subject':8s} {'photos':>6s} {'uncalibrated':>14s} {'resting only':>14s} {'taught':>14s}")
        rows = [(r.subject, r.n, {w: getattr(r, w) for w in TEACH_WAYS}, r.not_taught) for r in m.subjects[k] if r.n]
        rows.append(("all", t["n"], t, []))
        for name, n, right, missing in rows:
            cells = " ".join(f"{f'{right[w]}/{n} {right[w] / n:.1%}':>14s}" for w in TEACH_WAYS)
            print(f"  {name:8s} {n:6d} {cells}" + (f"   not taught (no usable face): {', '.join(missing)}" if missing else ""))


def _print_teach_jittered(a: dict, b: dict | None) -> None:
    print(f"\ntaught profiles, test boxes jittered, {a['repeats']} repeats (teaching on the exact boxes; mean and sd over repeats):")
    for tag, j in (("first" if b else "model", a), ("second", b)):
        if j is None:
            continue
        for k in TEACH_SETTINGS:
            print(f"  {tag:7s} {SETTING_TITLES[k]}: " + ", ".join(
                f"{w} {j[k][w]['mean']:.1%} (sd {j[k][w]['sd']:.1%})" for w in TEACH_WAYS))


def paired(a: Measurement, b: Measurement, which: str) -> dict:
    """Photos only A / only B gets right (`which`: 'uncalibrated', 'calibrated' or 'learned') and the exact p."""
    return _paired_photos(a.photos, b.photos, which, "the two models did not see the same photos")


def _paired_photos(pa: Sequence[Photo | TeachPhoto], pb: Sequence[Photo | TeachPhoto], which: str, mismatch: str) -> dict:
    """Photos only A / only B reads right `which` way and McNemar's p; DataError(mismatch) unless both read the same photos."""
    if [p.path for p in pa] != [p.path for p in pb]:
        raise DataError(mismatch)
    only_a, only_b = only_right([getattr(p, which) == p.truth for p in pa], [getattr(p, which) == p.truth for p in pb])
    return {"only_first": only_a, "only_second": only_b, "p": mcnemar_p(only_a, only_b)}


@dataclass
class Jittered:
    """N jittered repeats of one model: accuracy per repeat and each photo's share of repeats right, per way."""

    repeats: int
    accuracy: dict[str, list[float]]
    per_photo: dict[str, np.ndarray]
    mean_recall: dict[str, list[float]]

    def summary(self) -> dict:
        return {w: {"mean": float(np.mean(a)), "sd": float(np.std(a)), "mean_recall": float(np.mean(self.mean_recall[w]))}
                for w, a in self.accuracy.items()}


def mean_recall(photos: list[Photo], which: str) -> float:
    """Recall averaged over the classes present: a test set with few neutral photos should not reward
    settings that stop reading neutral."""
    classes = sorted({p.truth for p in photos})
    return float(np.mean([np.mean([getattr(p, which) == c for p in photos if p.truth == c]) for c in classes]))


def jittered(rows: list[tuple[Path, str, str]], model: str, repeats: int, **kw) -> Jittered:
    """The measurement repeated with seeds 0..N-1, so two models see the very same jittered boxes."""
    acc: dict[str, list[float]] = {w: [] for w in WAYS}
    rec: dict[str, list[float]] = {w: [] for w in WAYS}
    right: dict[str, list[list[bool]]] = {w: [] for w in WAYS}
    kw.setdefault("found", {})
    for seed in range(repeats):
        m = measure(rows, model, jitter_seed=seed, **kw)
        for w in WAYS:
            r = [getattr(ph, w) == ph.truth for ph in m.photos]
            right[w].append(r)
            acc[w].append(float(np.mean(r)))
            rec[w].append(mean_recall(m.photos, w))
    return Jittered(repeats, acc, {w: np.mean(right[w], axis=0) for w in WAYS}, rec)


def run(args: argparse.Namespace) -> int:
    d = CalibrateConfig()
    strength = d.strength if args.strength is None else args.strength
    margin = d.neutral_margin if args.neutral_margin is None else args.neutral_margin
    rows = read_labels(args.data)
    found: dict = {}  # Haar boxes per photo: the same for both models and every repeat
    kw = {"calib": args.calib, "strength": strength, "neutral_margin": margin, "flip_average": args.flip_average,
          "multi_crop": not args.single_crop, "found": found, "crop_margin": args.crop_margin}
    m = measure(rows, args.model, **kw)
    other = measure(rows, args.compare, **kw) if args.compare else None
    jm = jittered(rows, args.model, args.jitter, **kw) if args.jitter else None
    jo = jittered(rows, args.compare, args.jitter, **kw) if args.jitter and args.compare else None
    tm = to = tjm = tjo = None
    if args.teach:
        tkw = {k: v for k, v in kw.items() if k != "calib"}  # teaching takes each subject's first photo of each expression
        lessons: dict = {}  # what each teaching photo taught the first model, the same in every repeat
        tm = measure_teach(rows, args.model, lessons=lessons, **tkw)
        tjm = jittered_teach(rows, args.model, args.jitter, lessons=lessons, **tkw) if args.jitter else None
        if args.compare:
            lessons = {}
            to = measure_teach(rows, args.compare, lessons=lessons, **tkw)
            tjo = jittered_teach(rows, args.compare, args.jitter, lessons=lessons, **tkw) if args.jitter else None
    if args.json:
        out = _as_json(m, strength, margin)
        if jm is not None:
            out["jittered"] = {"repeats": jm.repeats, **jm.summary()}
        if other is not None:
            out["compare"] = _as_json(other, strength, margin) | {
                "model": args.compare, "paired": {w: paired(m, other, w) for w in WAYS}}
            if jo is not None:
                out["compare"]["jittered"] = {"repeats": jo.repeats, **jo.summary()}
                out["compare"]["paired_jittered"] = {w: _paired_jittered(jm, jo, w) for w in WAYS}
        if tm is not None:
            out["teach"] = _teach_json(tm)
            if tjm is not None:
                out["teach"]["jittered"] = tjm
            if to is not None:
                out["compare"]["teach"] = _teach_json(to) | {
                    "paired": {k: {w: paired_teach(tm, to, k, w) for w in TEACH_WAYS} for k in TEACH_SETTINGS}}
                if tjo is not None:
                    out["compare"]["teach"]["jittered"] = tjo
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
    if jm is not None:
        _print_jittered(jm, jo)
    if tm is not None:
        _print_teach(tm)
        if to is not None:
            print(f"\n--compare {args.compare}:")
            _print_teach(to)
            print("\npaired, same photos (first = --model, second = --compare):")
            for k in TEACH_SETTINGS:
                for w in TEACH_WAYS:
                    r = paired_teach(tm, to, k, w)
                    print(f"  {SETTING_TITLES[k]}, {w:12s}: only the first right {r['only_first']}, only the second right "
                          f"{r['only_second']}, exact McNemar p = {r['p']:.2f}{'' if r['p'] < 0.05 else ' (could be chance)'}")
        if tjm is not None:
            _print_teach_jittered(tjm, tjo)
    return 0


def _paired_jittered(a: Jittered, b: Jittered, which: str) -> dict:
    gap, p = paired_shares(a.per_photo[which], b.per_photo[which])
    return {"second_minus_first": gap, "p": p}


def _print_jittered(a: Jittered, b: "Jittered | None") -> None:
    print(f"\njittered boxes, {a.repeats} repeats (each face box moved up to {JITTER_SHIFT:.0%} of its size and resized up "
          f"to {JITTER_SIZE:.0%}, as Haar's box wanders between frames; mean and sd over repeats):")
    for tag, j in (("first" if b else "model", a), ("second", b)):
        if j is None:
            continue
        sm = j.summary()
        print(f"  {tag:7s}: " + ", ".join(f"{w} {sm[w]['mean']:.1%} (sd {sm[w]['sd']:.1%})" for w in WAYS))
        print(f"  {'':7s}  mean recall over classes: " + ", ".join(f"{w} {sm[w]['mean_recall']:.1%}" for w in WAYS))
    if b is not None:
        print("  paired over photos (each photo's share of repeats right):")
        for w in WAYS:
            r = _paired_jittered(a, b, w)
            print(f"  {w:12s}: second minus first {r['second_minus_first'] * 100:+.1f} points, sign-flip p = {r['p']:.2f}"
                  f"{'' if r['p'] < 0.05 else ' (could be chance)'}")


WAYS = ("uncalibrated", "calibrated", "learned")


def _totals(m: Measurement) -> tuple[int, int, int, int]:
    return (sum(r.n for r in m.subjects), sum(r.uncalibrated for r in m.subjects), sum(r.calibrated for r in m.subjects),
            sum(r.learned for r in m.subjects))


def _as_json(m: Measurement, strength: float, margin: float) -> dict:
    n, u, c, g = _totals(m)
    return {"n": n, "uncalibrated": u / n, "calibrated": c / n, "learned": g / n, "strength": strength,
            "neutral_margin": margin, "crop_margins": [round(v, 6) for v in m.margins], "labels": list(m.labels),
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
