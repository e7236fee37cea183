"""emotion-export average (model soup): the mean of the checkpoints' weights, BatchNorm re-estimated, refusals in one line."""
from __future__ import annotations

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

FIX = Path(__file__).resolve().parent / "fixtures"


def _npz(path: Path) -> Path:
    """The committed 140 FER faces, split 100 Training / 40 PublicTest."""
    z = np.load(FIX / "fer_sample.npz")
    usage = np.r_[np.zeros(100), np.ones(40)].astype(np.int8)
    np.savez(path, images=z["images"], labels=z["labels"].astype(np.int8), usage=usage)
    return path


def _checkpoint(path: Path, seed: int, width: float = 0.25) -> Path:
    keras.utils.set_random_seed(seed)
    m = build_model(48, width=width)
    # Moving statistics differ per checkpoint too, so a test can see they were re-estimated, not averaged.
    for w in m.weights:
        if "moving_mean" in w.path:
            w.assign(np.full(w.shape, float(seed), "float32"))
    m.save(path)
    return path


def _is_bn_statistic(w) -> bool:
    return "moving_mean" in w.path or "moving_variance" in w.path


def test_average_is_the_mean_of_the_weights_with_batchnorm_re_estimated(tmp_path, capsys):
    data = _npz(tmp_path / "d.npz")
    a, b, c = (_checkpoint(tmp_path / f"{n}.keras", s) for n, s in (("a", 1), ("b", 2), ("c", 3)))
    out = tmp_path / "soup" / "avg.keras"
    assert main(["average", str(a), str(b), str(c), "--data", str(data), "--out", str(out), "--bn-images", "64"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("PublicTest") == 4 and "average of 3: PublicTest" in printed
    assert "--input-range LO,HI" in printed  # no run folders: the range must be given at export
    avg = keras.models.load_model(out, compile=False)
    inputs = [keras.models.load_model(p, compile=False) for p in (a, b, c)]
    checked = 0
    for i, w in enumerate(avg.weights):
        if _is_bn_statistic(w):
            continue
        expect = np.mean([m.weights[i].numpy() for m in inputs], axis=0)
        np.testing.assert_allclose(w.numpy(), expect, rtol=1e-6, atol=1e-7)
        checked += 1
    assert checked > 20
    means = [w.numpy() for w in avg.weights if "moving_mean" in w.path]
    assert means and not any(np.allclose(m, 2.0) for m in means)  # re-estimated from faces, not the mean 2.0


@pytest.mark.parametrize("case, words", [
    ("other-width", "not the same architecture"),
    ("one", "at least two checkpoints"),
    ("out-is-input", "is one of the checkpoints"),
    ("missing", "no such model file"),
])
def test_refusals_are_one_line_and_write_nothing(tmp_path, capsys, case, words):
    data = _npz(tmp_path / "d.npz")
    a = _checkpoint(tmp_path / "a.keras", 1)
    b = {"other-width": lambda: _checkpoint(tmp_path / "b.keras", 2, width=0.5),
         "one": lambda: None, "out-is-input": lambda: _checkpoint(tmp_path / "b.keras", 2),
         "missing": lambda: tmp_path / "nothing.keras"}[case]()
    out = a if case == "out-is-input" else tmp_path / "avg.keras"
    before = a.read_bytes()
    argv = ["average", str(a), *([str(b)] if b else []), "--data", str(data), "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and words in err and "Traceback" not in err, err
    assert a.read_bytes() == before
    assert not (tmp_path / "avg.keras").exists()
