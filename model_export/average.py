"""`emotion-export average`: average the weights of checkpoints of one architecture, then re-estimate BatchNorm.

Checkpoints along the tail of a cosine schedule, or a warm restart and the run it started from, sit
around one wide minimum; their average ("model soup") often generalises a little better than any of
them and costs nothing on the device. Each input and the average are scored on PublicTest, so the
result is kept only if that says so; PrivateTest stays untouched.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from edge.argtypes import random_seed
from edge.errors import ConfigError, ModelError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoints", nargs="+", type=Path, help="two or more .keras files of the same architecture")
    p.add_argument("--data", required=True, help="FER2013 .npz, fer2013.csv or image folder (Training for BatchNorm, PublicTest to score)")
    p.add_argument("--out", required=True, type=Path, help="OUT.keras for the averaged model")
    p.add_argument("--bn-images", type=int, default=4096, help="clean training faces used to re-estimate BatchNorm statistics")
    p.add_argument("--seed", type=random_seed, default=1234)


def check_request(args: argparse.Namespace) -> None:
    """Refuse what cannot work before anything heavy loads."""
    if len(args.checkpoints) < 2:
        raise ConfigError("average needs at least two checkpoints")
    from model_export.predictors import check_keras_out

    check_keras_out(args.out, args.checkpoints, "average")
    if args.bn_images < 1:
        raise ConfigError(f"--bn-images must be at least 1 (got {args.bn_images})")


def same_architecture(models: list, paths: list[Path]) -> None:
    """The same weights in the same shapes, or averaging means nothing."""
    ref = [w.shape for w in models[0].get_weights()]
    for m, p in zip(models[1:], paths[1:]):
        shapes = [w.shape for w in m.get_weights()]
        if shapes != ref:
            raise ModelError(f"{p}: not the same architecture as {paths[0]} "
                             f"({len(shapes)} weight arrays vs {len(ref)}, or other shapes); only checkpoints of one model can be averaged")


def mean_weights(models: list) -> list[np.ndarray]:
    per_model = [m.get_weights() for m in models]
    return [np.mean([w[i] for w in per_model], axis=0).astype(per_model[0][i].dtype) for i in range(len(per_model[0]))]


def run(args: argparse.Namespace) -> int:
    from model_export.data import load_dataset
    from model_export.predictors import load_keras, run_info, same_run_inputs
    from model_export.inputs import train_inputs
    from model_export.train import recalibrate_bn

    check_request(args)
    infos = [run_info(c) for c in args.checkpoints]
    known = [(c, i) for c, i in zip(args.checkpoints, infos) if i is not None]
    same_run_inputs(known)
    models = [load_keras(c) for c in args.checkpoints]
    same_architecture(models, list(args.checkpoints))
    ds = load_dataset(args.data)
    x_tr, _ = ds.split("Training")
    x_va, y_va = ds.split("PublicTest")
    if len(x_tr) == 0 or len(x_va) == 0:
        raise ConfigError(f"{args.data}: needs Training faces (for BatchNorm) and PublicTest faces (to score); "
                          f"has {len(x_tr)} and {len(x_va)}")
    size = models[0].input_shape[1]
    x_va = train_inputs(x_va, size)
    pick = np.random.default_rng(args.seed).permutation(len(x_tr))[:args.bn_images]
    bn_x = train_inputs(x_tr[pick], size)

    for c, m in zip(args.checkpoints, models):
        print(f"{c}: PublicTest {_accuracy(m, x_va, y_va):.4f}", flush=True)
    avg = models[-1]  # the architecture; its weights are replaced
    avg.set_weights(mean_weights(models))
    recalibrate_bn(avg, bn_x)
    print(f"average of {len(models)}: PublicTest {_accuracy(avg, x_va, y_va):.4f}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    avg.save(args.out)
    rng = f"{known[0][1].input_range[0]:g},{known[0][1].input_range[1]:g}" if known else "LO,HI"
    print(f"wrote {args.out}; export it with: emotion-export export {args.out} --input-range {rng} "
          f"--representative-data {args.data} --out NAME.tflite")
    return 0


def _accuracy(model, x: np.ndarray, y: np.ndarray) -> float:
    p = model.predict(x, batch_size=256, verbose=0)
    return float((p.argmax(1) == y).mean())
