"""`emotion-export teacher`: soft targets for distillation, from an ensemble of trained checkpoints.

The edge model has to stay small (one int8 net, < 1 MB, ~1 ms per face); an average of several
runs, each also shown the mirror image, reads FER2013 better than any one of them. Writing that
ensemble's probabilities for every Training face lets `train --teacher` teach one small net what
the ensemble knows (knowledge distillation). PublicTest scores are printed to choose members;
PrivateTest stays untouched.
"""
from __future__ import annotations

import argparse
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.errors import ConfigError, DataError, ModelError

KIND = "emotion-export teacher"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoints", nargs="+", type=Path, help="one or more .keras files trained on the same labels and input range")
    p.add_argument("--data", required=True, help="FER2013 .npz, fer2013.csv or image folder (Training is labelled, PublicTest scored)")
    p.add_argument("--out", required=True, type=Path, help="TEACHER.npz with the probabilities for `train --teacher`")
    p.add_argument("--no-flip", action="store_true", help="do not average in each face's mirror image")
    p.add_argument("--features", action="store_true",
                   help="also write each face's features (the input of each member's softmax head, mirror averaged, "
                        "members side by side) for `train --feature-weight`")


def fingerprint(images: np.ndarray) -> str:
    """sha256 of the Training faces' pixels: a teacher file only fits the data it was made from."""
    return hashlib.sha256(np.ascontiguousarray(images, np.uint8).tobytes()).hexdigest()


@dataclass(frozen=True)
class Teacher:
    probs: np.ndarray           # (Training faces, classes) float32, rows sum to 1
    labels: tuple[str, ...]     # the model's output order
    fingerprint: str            # of the Training faces it was computed on
    features: np.ndarray | None = None  # (Training faces, features) float32, or None: probabilities only


def save(t: Teacher, path: Path, members: list[str], flip: bool) -> None:
    extra = {} if t.features is None else {"features": t.features.astype(np.float32)}
    np.savez_compressed(path, kind=KIND, probs=t.probs.astype(np.float32), labels=np.array(t.labels),
                        fingerprint=t.fingerprint, members=np.array(members), flip=flip, **extra)


def load(path: Path) -> Teacher:
    """Read and check a teacher file; DataError names what is wrong."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z.get("kind", "")) != KIND:
                raise DataError(f"{path}: not a teacher file (make one with `emotion-export teacher`)")
            probs, labels, fp = z["probs"], tuple(str(v) for v in z["labels"]), str(z["fingerprint"])
            features = z["features"] if "features" in z.files else None
    except FileNotFoundError:
        raise DataError(f"{path}: no such teacher file") from None
    except (OSError, ValueError, KeyError) as e:
        raise DataError(f"{path}: not a readable teacher file ({e})") from None
    if probs.ndim != 2 or probs.shape[1] != len(labels) or probs.dtype.kind != "f":
        raise DataError(f"{path}: 'probs' must be a float table with one column per label")
    if not np.all(np.isfinite(probs)) or probs.min() < 0 or not np.allclose(probs.sum(axis=1), 1.0, atol=1e-3):
        raise DataError(f"{path}: 'probs' rows must be probabilities (finite, >= 0, summing to 1)")
    if features is not None and (features.ndim != 2 or len(features) != len(probs) or features.dtype.kind != "f"
                                 or not np.all(np.isfinite(features))):
        raise DataError(f"{path}: 'features' must be a finite float table with one row per face of 'probs'")
    return Teacher(probs.astype(np.float32), labels, fp, None if features is None else features.astype(np.float32))


def check_fits(t: Teacher, where: Path, labels: tuple[str, ...], n: int, fp: str) -> None:
    """Refuse a teacher made for other classes or other Training faces (its rows would be someone else's)."""
    if t.labels != labels:
        raise DataError(f"{where}: the teacher's classes ({','.join(t.labels)}) are not the model's ({','.join(labels)})")
    if len(t.probs) != n or t.fingerprint != fp:
        raise DataError(f"{where}: made from other Training faces ({len(t.probs)} rows) than --data has ({n}); "
                        f"make it again from the same data")


def _views(x: np.ndarray, flip: bool) -> list[np.ndarray]:
    return [x, x[:, :, ::-1]] if flip else [x]


def _mean_probs(parts: list[np.ndarray]) -> np.ndarray:
    """The mean of softmax outputs (one per member and view), renormalised."""
    p = sum(a.astype(np.float64) for a in parts) / len(parts)
    return (p / p.sum(axis=1, keepdims=True)).astype(np.float32)


def ensemble_probs(models: list, x: np.ndarray, flip: bool) -> np.ndarray:
    """Mean softmax over the models (and the mirror image of each face)."""
    return _mean_probs([m.predict(v, batch_size=512, verbose=0) for m in models for v in _views(x, flip)])


def ensemble_probs_and_features(pairs: list, x: np.ndarray, flip: bool) -> tuple[np.ndarray, np.ndarray]:
    """ensemble_probs, and each member's features (its softmax head's input) averaged over the face and
    its mirror image, the members' side by side; pairs: models with outputs [softmax, head input], so each
    member reads each view once for both."""
    outs = [[m.predict(v, batch_size=512, verbose=0) for v in _views(x, flip)] for m in pairs]
    probs = _mean_probs([probs for member in outs for probs, _ in member])
    features = np.concatenate([np.mean([f for _, f in member], axis=0) for member in outs], axis=1)
    return probs, features.astype(np.float32)


def run(args: argparse.Namespace) -> int:
    from model_export.data import load_dataset
    from model_export.predictors import load_keras, run_info, same_run_inputs
    from model_export.inputs import train_inputs

    if args.out.suffix != ".npz" or args.out.is_dir():
        raise ConfigError(f"--out {args.out}: must be a file name ending in .npz")
    infos = [run_info(c) for c in args.checkpoints]
    if any(i is None for i in infos):
        bad = args.checkpoints[infos.index(None)]
        raise ModelError(f"{bad}: no run folder (state.json) beside it says its labels and input range; "
                         f"use checkpoints made by `emotion-export train`")
    same_run_inputs(list(zip(args.checkpoints, infos)))
    if infos[0].input_range != (0.0, 1.0):
        raise ModelError(f"{args.checkpoints[0]}: trained on input range {infos[0].input_range}; train feeds [0, 1]")
    models = [load_keras(c) for c in args.checkpoints]
    if args.features:  # a member without a softmax head is refused now, not after minutes of work
        import keras

        from model_export.heads import backbone

        pairs = [keras.Model(m.inputs, [m.output, backbone(m, c).output]) for m, c in zip(models, args.checkpoints)]
    ds = load_dataset(args.data)
    x_tr, _ = ds.split("Training")
    x_va, y_va = ds.split("PublicTest")
    if len(x_tr) == 0:
        raise DataError(f"{args.data}: no Training faces")
    size = models[0].input_shape[1]
    flip = not args.no_flip
    labels = infos[0].labels
    if len(x_va):
        from model_export.evaluate import map_labels

        yv, keep = map_labels(y_va, labels, ds.names)  # the data's classes (FER's or its own) -> the model's outputs
        xv, yv = train_inputs(x_va[keep], size), yv[keep]
        member = [ensemble_probs([m], xv, flip) for m in models]  # once each: the ensemble is their mean
        for c, p in zip(args.checkpoints, member):
            print(f"{c}: PublicTest {np.mean(p.argmax(1) == yv):.4f}", flush=True)
        print(f"teacher ({len(models)} model{'s' if len(models) > 1 else ''}{', mirror averaged' if flip else ''}): "
              f"PublicTest {np.mean(np.mean(member, axis=0).argmax(1) == yv):.4f}", flush=True)
    xt = train_inputs(x_tr, size)
    probs, features = ensemble_probs_and_features(pairs, xt, flip) if args.features else (ensemble_probs(models, xt, flip), None)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save(Teacher(probs, labels, fingerprint(x_tr), features), args.out, [str(c) for c in args.checkpoints], flip)
    held = "" if features is None else f" and {features.shape[1]} features"
    more = "" if features is None else " [--feature-weight 1]"
    print(f"wrote {args.out}: {len(probs)} Training faces x {len(labels)} classes{held}; "
          f"train with: emotion-export train --data {args.data} --teacher {args.out} --teacher-weight 0.7{more} ...", flush=True)
    return 0
