"""Softmax heads on a trained net's features: fit one (plain NumPy), and build a net around a new one.

`headroom` fits heads on real people's features to bound what any rule could read; `rehead` fits one
on FER2013 for the features of one or more trained backbones, each shown the face and its mirror image.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edge.errors import ModelError


def fit_softmax(x: np.ndarray, y: np.ndarray, n_cls: int, l2: float, steps: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression (mean cross-entropy + l2/2 |W|^2) by Nesterov's accelerated gradient
    on features standardised here; returns (W, b) for the raw features. Convex: no seed, no tuning."""
    mu, sd = x.mean(0), x.std(0) + 1e-6
    z = (x - mu) / sd
    n, d = z.shape
    onehot = np.eye(n_cls)[y]
    lip = 0.5 * np.linalg.norm(z, 2) ** 2 / n + l2  # the loss's gradient is Lipschitz with at most this
    w = np.zeros((d + 1, n_cls))
    v = w.copy()
    za = np.hstack([z, np.ones((n, 1))])
    for k in range(steps):
        logits = za @ v
        logits -= logits.max(1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(1, keepdims=True)
        grad = za.T @ (p - onehot) / n
        grad[:-1] += l2 * v[:-1]
        w_new = v - grad / lip
        v = w_new + (k / (k + 3)) * (w_new - w)
        w = w_new
    weights = w[:-1] / sd[:, None]
    return weights, w[-1] - mu @ weights


def same_io(models: list, paths: list, need: str) -> tuple[tuple[int, ...], int]:
    """(input shape, outputs) shared by all the models, or one line naming the first that differs."""
    shape, n_out = tuple(models[0].input_shape[1:]), int(models[0].output_shape[-1])
    for m, p in zip(models[1:], paths[1:]):
        if tuple(m.input_shape[1:]) != shape or int(m.output_shape[-1]) != n_out:
            raise ModelError(f"{p}: input {tuple(m.input_shape[1:])} / {m.output_shape[-1]} outputs, but {paths[0]} has "
                             f"{shape} / {n_out}; {need}")
    return shape, n_out


def backbone(model, where: str | Path):
    """The net up to its softmax head's input (the penultimate features): `train`'s checkpoints end in
    one Dense softmax layer; an ensemble or a foreign model is refused in one line."""
    import keras

    head = model.layers[-1]
    if not isinstance(head, keras.layers.Dense):
        raise ModelError(f"{where}: its last layer is a {type(head).__name__}, not the softmax head: give a "
                         "trained checkpoint (train's best.keras), not an ensemble")
    return keras.Model(model.inputs, head.input, name=f"{model.name}_features")


def mirror_view(inp, width: int):
    """The input's mirror image from standard layers only (a fixed anti-identity Dense over the width axis,
    weights 0 and 1), so the graph loads without custom code and quantizes exactly. Returns (view, layer):
    set the layer's weights with `set_mirror` once the model is built."""
    from keras import layers

    flip = layers.Dense(width, use_bias=False, trainable=False, name="mirror")
    t = layers.Permute((1, 3, 2), name="width_last")(inp)
    return layers.Permute((1, 3, 2), name="mirrored")(flip(t)), flip


def set_mirror(flip, width: int) -> None:
    flip.set_weights([np.eye(width, dtype=np.float32)[::-1]])


def with_new_head(backbones: list, shape: tuple[int, ...], n_out: int, mirror: bool = True):
    """face -> each backbone's features (averaged over the face and its mirror image unless mirror is
    False: one pass per net, half the cost) -> concatenated -> one Dense softmax head (weights to be set).
    Returns (model, features model, head layer)."""
    import keras
    from keras import layers

    inp = keras.Input(shape, name="face")
    if mirror:
        mirrored, flip = mirror_view(inp, shape[1])
    feats = []
    for i, b in enumerate(backbones):
        b.name = f"backbone{i}_{b.name}"  # two runs of one architecture would otherwise share a name
        feats.append(layers.Average(name=f"views{i}")([b(inp), b(mirrored)]) if mirror else b(inp))
    f = layers.Concatenate(name="features")(feats) if len(feats) > 1 else feats[0]
    head = layers.Dense(n_out, activation="softmax", name="probs")
    model = keras.Model(inp, head(f), name=f"rehead{len(backbones)}" + ("_mirror" if mirror else ""))
    if mirror:
        set_mirror(flip, shape[1])
    return model, keras.Model(inp, f, name="features"), head
