"""emotion-export rehead: nets' features (face and mirror image averaged, concatenated) under a new fitted head."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.tf, pytest.mark.slow]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from model_export.arch import build_model  # noqa: E402
from model_export.cli import main  # noqa: E402
from model_export.heads import fit_softmax  # noqa: E402

from .test_average import _npz  # noqa: E402


def _net(path: Path, seed: int, size: int = 48) -> Path:
    keras.utils.set_random_seed(seed)
    build_model(size, width=0.25).save(path)
    (path.parent / "state.json").write_text(json.dumps({"args": {}, "labels": ["angry", "disgust", "fear", "happy", "sad",
                                                                                "surprise", "neutral"], "input_range": [0, 1]}))
    return path


def _features(net_path: Path, x: np.ndarray) -> np.ndarray:
    """By hand: the net up to its head, on the faces and on their mirror images, averaged."""
    m = keras.saving.load_model(net_path, compile=False)
    f = keras.Model(m.input, m.layers[-1].input)
    return (f.predict(x, verbose=0) + f.predict(x[:, :, ::-1], verbose=0)) / 2


def test_the_new_head_reads_both_nets_mirror_averaged_features(tmp_path, capsys):
    data = _npz(tmp_path / "d.npz")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a, b = _net(tmp_path / "a" / "a.keras", 1), _net(tmp_path / "b" / "b.keras", 2)
    out = tmp_path / "r" / "new.keras"
    assert main(["rehead", str(a), str(b), "--data", str(data), "--out", str(out), "--l2", "0.3", "1"]) == 0
    printed = capsys.readouterr().out
    z = np.load(data)
    x = z["images"].astype(np.float32)[..., None] / 255
    feats = np.concatenate([_features(a, x), _features(b, x)], 1)
    tr, pu = z["usage"] == 0, z["usage"] == 1
    for l2 in (0.3, 1.0):
        w, bias = fit_softmax(feats[tr], z["labels"][tr], 7, l2, steps=600)
        acc = ((feats[pu] @ w + bias).argmax(1) == z["labels"][pu]).mean()
        assert f"l2 {l2:g}: PublicTest {acc:.4f}" in printed
    w, bias = fit_softmax(feats[tr], z["labels"][tr], 7, 0.3, steps=600)  # the first --l2 is the one written
    logits = feats @ w + bias
    want = np.exp(logits - logits.max(1, keepdims=True))
    want /= want.sum(1, keepdims=True)
    got = keras.saving.load_model(out, compile=False).predict(x, verbose=0)
    np.testing.assert_allclose(got, want, atol=2e-4)
    state = json.loads((out.parent / "state.json").read_text())  # so export and evaluate need no --input-range
    assert state["input_range"] == [0, 1] and state["labels"][-1] == "neutral" and state["args"]["l2"] == 0.3
    assert "export it with: emotion-export export" in printed and "--input-range 0,1" in printed


def test_nets_that_cannot_share_a_head_are_refused_in_one_line(tmp_path, capsys):
    data = _npz(tmp_path / "d.npz")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a, b = _net(tmp_path / "a" / "a.keras", 1), _net(tmp_path / "b" / "b.keras", 2, size=64)
    assert main(["rehead", str(a), str(b), "--data", str(data), "--out", str(tmp_path / "n.keras")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "input (64, 64, 1) / 7 outputs, but" in err and "they must match" in err
    assert main(["ensemble", str(a), "--mirror", "--out", str(tmp_path / "e" / "ens.keras")]) == 0
    capsys.readouterr()
    assert main(["rehead", str(tmp_path / "e" / "ens.keras"), "--data", str(data), "--out", str(tmp_path / "n.keras")]) == 2
    assert "its last layer is a Average, not the softmax head" in capsys.readouterr().err
    assert main(["rehead", str(a), "--data", str(data), "--out", str(tmp_path / "n.h5")]) == 2
    assert "must end in .keras" in capsys.readouterr().err
    assert not (tmp_path / "n.keras").exists()


def test_no_mirror_reads_the_face_alone_in_one_pass_of_the_net(tmp_path, capsys):
    data = _npz(tmp_path / "d.npz")
    (tmp_path / "a").mkdir()
    a = _net(tmp_path / "a" / "a.keras", 1)
    out = tmp_path / "r" / "one.keras"
    assert main(["rehead", str(a), "--no-mirror", "--data", str(data), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "(1 backbone, head l2 0.3)" in printed and "also mirrored" not in printed, printed
    z = np.load(data)
    x = z["images"].astype(np.float32)[..., None] / 255
    m = keras.saving.load_model(a, compile=False)
    feats = keras.Model(m.input, m.layers[-1].input).predict(x, verbose=0)  # the face only
    tr = z["usage"] == 0
    w, bias = fit_softmax(feats[tr], z["labels"][tr], 7, 0.3, steps=600)
    logits = feats @ w + bias
    want = np.exp(logits - logits.max(1, keepdims=True))
    want /= want.sum(1, keepdims=True)
    new = keras.saving.load_model(out, compile=False)
    np.testing.assert_allclose(new.predict(x, verbose=0), want, atol=2e-4)
    assert "mirror" not in [layer.name for layer in new.layers]  # no second view to pay for
    assert json.loads((out.parent / "state.json").read_text())["args"]["mirror"] is False
