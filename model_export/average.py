"""Average the weights of the last few checkpoints of one run (SWA-style), then re-estimate BatchNorm.

Checkpoints along the tail of a cosine schedule sit around one wide minimum; their average often
generalises a little better than any of them. The result is kept only if PublicTest says so.
Usage: python -m model_export.average --data fer2013.npz --out avg.keras ep21.keras ep22.keras ...
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from model_export.data import FER_LABELS, load_dataset


def _public_accuracy(model, x: np.ndarray, y: np.ndarray) -> float:
    p = model.predict(x, batch_size=256, verbose=0)
    return float((p.argmax(1) == y).mean())


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoints", nargs="+", type=Path)
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--bn-images", type=int, default=4096)
    p.add_argument("--seed", type=int, default=1234)
    a = p.parse_args(argv)

    import keras

    from model_export.train import _prepare, recalibrate_bn

    ds = load_dataset(a.data)
    x_tr, _ = ds.split("Training")
    x_va, y_va = ds.split("PublicTest")
    size = keras.models.load_model(a.checkpoints[0], compile=False).input_shape[1]
    x_va = _prepare(x_va, size)
    bn_x = _prepare(x_tr[np.random.default_rng(a.seed).permutation(len(x_tr))[:a.bn_images]], size)

    models = [keras.models.load_model(c, compile=False) for c in a.checkpoints]
    for c, m in zip(a.checkpoints, models):
        print(f"{c.name}: PublicTest {_public_accuracy(m, x_va, y_va):.4f}", flush=True)
    avg = models[-1]
    weights = [np.mean([m.get_weights()[i] for m in models], axis=0) for i in range(len(avg.get_weights()))]
    avg.set_weights(weights)
    recalibrate_bn(avg, bn_x)
    acc = _public_accuracy(avg, x_va, y_va)
    print(f"average of {len(models)}: PublicTest {acc:.4f} ({len(FER_LABELS)} classes)", flush=True)
    avg.save(a.out)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
