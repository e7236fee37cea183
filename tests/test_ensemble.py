"""emotion-export ensemble: one Keras graph = the mean of its members (and their mirror images), exported to int8."""
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

from .test_average import _npz  # noqa: E402


def _member(path: Path, seed: int, width: float = 0.25, size: int = 48) -> Path:
    keras.utils.set_random_seed(seed)
    build_model(size, width=width).save(path)
    return path


def _faces(n: int = 6) -> np.ndarray:
    return np.random.default_rng(0).random((n, 48, 48, 1)).astype(np.float32)


def test_the_ensemble_is_the_mean_of_its_members_and_of_their_mirror_images(tmp_path, capsys):
    data = _npz(tmp_path / "d.npz")
    a, b = _member(tmp_path / "a.keras", 1), _member(tmp_path / "b.keras", 2, width=0.5)
    out = tmp_path / "e" / "ens.keras"
    assert main(["ensemble", str(a), str(b), "--mirror", "--data", str(data), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.count("PublicTest") == 3 and "ensemble: PublicTest" in printed and "mirror averaged" in printed
    x = _faces()
    ms = [keras.models.load_model(p, compile=False) for p in (a, b)]
    expect = np.mean([m.predict(v, verbose=0) for m in ms for v in (x, x[:, :, ::-1])], axis=0)
    got = keras.models.load_model(out, compile=False).predict(x, verbose=0)  # loads with no custom code
    np.testing.assert_allclose(got, expect, atol=1e-6)
    plain = np.mean([m.predict(x, verbose=0) for m in ms], axis=0)
    assert np.abs(got - plain).max() > 1e-4, "the mirror image changed the answer (random nets are not symmetric)"


def _representative_npz(path: Path) -> Path:
    """The committed fixture faces, tiled (with mirror images and shifts) to the 300 that export needs."""
    z = np.load(_npz(path))
    x = z["images"][z["usage"] == 0]
    tiles = [x, x[:, :, ::-1], np.roll(x, 2, axis=1), np.roll(x, -2, axis=2)]
    images = np.concatenate(tiles)
    labels = np.tile(z["labels"][z["usage"] == 0], 4)
    np.savez(path, images=images, labels=labels, usage=np.zeros(len(images), np.int8))
    return path


def test_one_member_with_mirror_is_flip_averaging_and_exports_to_int8(tmp_path):
    from edge.classify import EmotionClassifier

    data = _representative_npz(tmp_path / "d.npz")
    a = _member(tmp_path / "a.keras", 3)
    out = tmp_path / "mirror.keras"
    assert main(["ensemble", str(a), "--mirror", "--out", str(out)]) == 0
    tfl = tmp_path / "m.tflite"
    assert main(["export", str(out), "--input-range", "0,1", "--representative-data", str(data), "--representative-size", "300", "--eval-split", "Training", "--eval-limit", "50",
                 "--out", str(tfl)]) == 0
    assert json.loads(tfl.with_suffix(".json").read_text())["input"]["dtype"] == "int8"
    x = (_faces(4)[..., 0] * 255).astype(np.uint8)
    m = keras.models.load_model(a, compile=False)
    with EmotionClassifier(tfl) as clf:
        for face in x:
            p = clf.classify_face(face).probs
            f = face.astype(np.float32)[None, ..., None] / 255
            ref = (m.predict(f, verbose=0) + m.predict(f[:, :, ::-1], verbose=0))[0] / 2
            assert np.abs(p - ref).max() < 0.06  # int8 of the same mean


@pytest.mark.parametrize("case,expect", [
    ("one", "at least two checkpoints"),
    ("suffix", "must end in .keras"),
    ("same", "is one of the checkpoints"),
    ("size", "an ensemble needs the same input"),
])
def test_refusals_are_one_line_and_write_nothing(tmp_path, capsys, case, expect):
    a = _member(tmp_path / "a.keras", 1)
    b = _member(tmp_path / "b.keras", 2, size=64 if case == "size" else 48)
    out = {"suffix": tmp_path / "e.h5", "same": a}.get(case, tmp_path / "e.keras")
    argv = ["ensemble", str(a)] + ([] if case == "one" else [str(b)]) + ["--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert expect in err and "\n" not in err and "Traceback" not in err
    assert not (tmp_path / "e.keras").exists() and not (tmp_path / "e.h5").exists()
