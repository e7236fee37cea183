"""`emotion-export headroom`: how far could anything built on this net's features read real people?

A calibration (or any rule on the model's answer) can only use what the net's last features hold. This
fits a new head on those features for all but one person of a labelled people set (`labels.csv`:
`file,label,subject`, as `calibration-report` reads), tests it on the one left out, and does so for
each person: an upper bound for calibration rules and heads, measured on people the head never saw.
Each face's features are taken relative to that person's resting face (the first `--calib` neutral
photos, by file name, as `calibrate --photos` does), and also as they are (no calibration). Beside it,
the model's own head with the device's calibration rule on the very same crops (what it found:
docs/CALIBRATION.md, "Headroom").

Takes a trained checkpoint (`train`'s best.keras: its last layer is the softmax head); the mirror image
is averaged in as the bundled model does, and each face is read in the four framings `photo` uses.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.argtypes import float_in, int_in
from edge.calibration import PROB_FLOOR
from edge.config import CalibrateConfig
from edge.contract import CROP_MARGIN_RANGE, FER_LABELS
from edge.errors import DataError
from model_export.heads import backbone, fit_softmax

L2_DEFAULT = 3.0
"""Weight of the squared weights beside the mean cross-entropy (standardised features): a strong pull
towards the class means suits a few people (chosen on jaffe-tune: docs/CALIBRATION.md, "Headroom")."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    lo, hi = CROP_MARGIN_RANGE
    p.add_argument("model", type=Path, help="a trained checkpoint (train's best.keras; not an ensemble)")
    p.add_argument("--data", required=True, type=Path, help="folder with labels.csv (file,label,subject) and the photos")
    p.add_argument("--calib", type=int_in(1, 100), default=2, help="neutral photos per person for the resting face (first by file name)")
    p.add_argument("--crop-margin", type=float_in(lo, hi), default=0.05, metavar="M",
                   help="the crop margin the model would be exported with (the bundled model's)")
    p.add_argument("--jitter", type=int_in(0, 1000), default=6,
                   help="also repeat it N times with each face box moved and resized a little (as calibration-report)")
    p.add_argument("--l2", type=float_in(0, 100, above=True), default=L2_DEFAULT,
                   help="regularisation of the fitted head")
    p.add_argument("--seed", type=int_in(0, 2**32 - 1), default=0, help="seed of the jittered boxes")


@dataclass
class Faces:
    """Per photo (in labels.csv order) and repeat (0 = Haar's own box): mean features and probabilities."""

    names: list[str]
    labels: np.ndarray       # class index per photo
    subjects: list[str]
    feats: np.ndarray        # (photos, repeats, d); NaN where no face was found
    probs: np.ndarray        # (photos, repeats, classes)


def read_faces(model, where: str | Path, rows: list[tuple[Path, str, str]], labels: tuple[str, ...], crop_margin: float, jitter: int,
               seed: int, input_range: tuple[float, float]) -> Faces:
    """Haar's largest face in each photo (and `jitter` moved boxes), four framings, face and mirror image."""
    import keras

    from edge.classify import multi_crop_margins
    from edge.config import DetectConfig
    from edge.detect import StillDetector
    from edge.photo import read_image
    from edge.preprocess import crop_face, resize_face, to_float
    from model_export.calibration_report import jitter_box

    features = keras.Model(model.inputs, [backbone(model, where).output, model.outputs[0]])
    size = int(model.inputs[0].shape[1])
    margins = multi_crop_margins(crop_margin)
    det = StillDetector(DetectConfig())
    crops, slots = [], []  # slots: (photo, repeat) of each crop
    for i, (path, _, _) in enumerate(rows):
        gray = read_image(path).gray
        boxes = det.detect(gray)
        if not boxes:
            print(f"{path.name}: no face found (counts as wrong)")
            continue
        rng = np.random.default_rng([seed, i])
        for r, box in enumerate([tuple(boxes[0])] + [jitter_box(boxes[0], rng, gray.shape[1], gray.shape[0])
                                                   for _ in range(jitter)]):
            for m in margins:
                crops.append(resize_face(np.ascontiguousarray(crop_face(gray, box, m)), size, size).copy())
                slots.append((i, r))
    n_cls = len(labels)
    feats = np.full((len(rows), jitter + 1, int(features.outputs[0].shape[-1])), np.nan)
    probs = np.full((len(rows), jitter + 1, n_cls), np.nan)
    if crops:
        x = to_float(np.stack(crops), input_range)[..., None]
        f1, p1 = features.predict(x, batch_size=256, verbose=0)
        f2, p2 = features.predict(x[:, :, ::-1], batch_size=256, verbose=0)
        f, p = (f1 + f2) / 2, (p1 + p2) / 2
        idx = np.array(slots)
        k = len(margins)  # the framings of one box are consecutive
        feats[idx[::k, 0], idx[::k, 1]] = f.reshape(-1, k, f.shape[-1]).mean(1)
        probs[idx[::k, 0], idx[::k, 1]] = p.reshape(-1, k, n_cls).mean(1)
    return Faces([r[0].name for r in rows], np.array([labels.index(r[1]) for r in rows]), [r[2] for r in rows],
                 feats, probs)


@dataclass
class Outcome:
    """Right (True) / wrong per test photo and repeat, for each way of reading it."""

    subjects: list[str]
    rule_uncalibrated: np.ndarray
    rule_calibrated: np.ndarray
    head_absolute: np.ndarray
    head_relative: np.ndarray


def leave_one_person_out(faces: Faces, calib: int, l2: float, strength: float, neutral_margin: float,
                         neutral: int) -> Outcome:
    """For each person: fit heads on everyone else's photos (less their resting-face photos), test on theirs."""
    order = sorted(range(len(faces.names)), key=lambda i: faces.names[i])
    rest, test = {}, []
    for s in sorted(set(faces.subjects)):
        mine = [i for i in order if faces.subjects[i] == s]
        rest[s] = [i for i in mine if faces.labels[i] == neutral][:calib]
        test += [i for i in mine if i not in rest[s]]
    found = ~np.isnan(faces.feats[:, :, 0])

    def baseline(arr, s):
        return np.nanmean(arr[rest[s]], axis=0)  # (repeats, d): mean over the resting photos

    rel = np.full_like(faces.feats, np.nan)
    lp = np.log(np.maximum(faces.probs, PROB_FLOOR))  # as the device's calibration floors them
    cal = np.full_like(lp, np.nan)
    for i in test:
        s = faces.subjects[i]
        rel[i] = faces.feats[i] - baseline(faces.feats, s)
        b = baseline(lp, s)
        z = lp[i] - strength * (b - b.mean(-1, keepdims=True))
        z[:, neutral] += neutral_margin
        cal[i] = z
    y = faces.labels
    test = np.array(test)
    n_cls = faces.probs.shape[-1]
    out = {k: np.zeros((len(test), faces.feats.shape[1]), bool) for k in ("abs", "rel")}
    for s in sorted(set(faces.subjects)):
        tr = [i for i in test if faces.subjects[i] != s]
        te = np.flatnonzero([faces.subjects[i] == s for i in test])
        for key, arr in (("abs", faces.feats), ("rel", rel)):
            ok = [(i, r) for i in tr for r in range(arr.shape[1]) if np.isfinite(arr[i, r]).all()]  # no face, or no resting face
            w, b = fit_softmax(np.array([arr[i, r] for i, r in ok]), np.array([y[i] for i, _ in ok]), n_cls, l2)
            pred = np.nan_to_num(arr[test[te]]) @ w + b
            out[key][te] = (pred.argmax(-1) == y[test[te], None]) & found[test[te]]
    right = lambda a: (np.nan_to_num(a, nan=-np.inf).argmax(-1) == y[test, None]) & found[test]  # noqa: E731
    return Outcome([faces.subjects[i] for i in test], right(lp[test]), right(cal[test]), out["abs"], out["rel"])


def run(args: argparse.Namespace) -> int:
    from model_export.calibration_report import read_labels
    from model_export.predictors import load_keras, run_info

    rows = read_labels(args.data)
    model = load_keras(args.model)
    info = run_info(args.model)
    labels = info.labels if info else FER_LABELS
    unknown = sorted({r[1] for r in rows} - set(labels))
    if unknown:
        raise DataError(f"{args.data / 'labels.csv'}: labels the model does not have: {', '.join(unknown)}")
    if "neutral" not in labels:
        raise DataError(f"{args.model}: the model has no neutral class to take a resting face from")
    faces = read_faces(model, args.model, rows, labels, args.crop_margin, args.jitter, args.seed,
                       info.input_range if info else (0.0, 1.0))
    d = CalibrateConfig()
    o = leave_one_person_out(faces, args.calib, args.l2, d.strength, d.neutral_margin, labels.index("neutral"))
    _print(o, args)
    return 0


def _print(o: Outcome, args: argparse.Namespace) -> None:
    ways = (("model + rule: uncalibrated", o.rule_uncalibrated), ("calibrated", o.rule_calibrated),
            ("fitted head: absolute", o.head_absolute), ("relative to rest", o.head_relative))
    subj = np.array(o.subjects)
    print(f"{args.model}: each person read by a head fitted on the others (leave one person out, l2 {args.l2:g}); "
          "Haar's box / mean of the jittered boxes")
    print(f"{'person':8s}{'photos':>7s}" + "".join(f"{w:>28s}" for w, _ in ways))
    for s in [*sorted(set(o.subjects)), "all"]:
        m = np.ones(len(subj), bool) if s == "all" else subj == s
        cells = []
        for _, a in ways:
            jit = f"{a[m, 1:].mean():6.1%}" if a.shape[1] > 1 else "     -"
            cells.append(f"{a[m, 0].mean():.1%} / {jit}")
        print(f"{s:8s}{int(m.sum()):7d}" + "".join(f"{c:>28s}" for c in cells))
