"""`train` on a machine without TensorFlow: a GPU box trains with KERAS_BACKEND=jax, this one exports."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.tf, pytest.mark.slow]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from model_export import feature_kd  # noqa: E402
from model_export.train import TrainOptions, _array_batches  # noqa: E402
from tests.test_feature_kd import _faces, _feature_teacher  # noqa: E402
from tests.test_train import _tiny_npz  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

NO_TENSORFLOW = """
import sys

class NoTensorFlow:  # any `import tensorflow` fails as on a machine without it (sys.modules stays clean)
    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, NoTensorFlow())
if sys.argv[1] == "load":  # what --init-from does with a checkpoint
    from model_export.predictors import load_keras
    print("output", load_keras(sys.argv[2]).output_shape)
    sys.exit(0)
from model_export.cli import main
code = main(sys.argv[1:])
assert "tensorflow" not in sys.modules
sys.exit(code)
"""


def test_jax_backend_trains_without_tensorflow_and_the_checkpoint_loads_here(tmp_path):
    pytest.importorskip("jax", reason="jax is part of the dev set-up (./install.sh --dev)")
    data = _tiny_npz(tmp_path / "tiny.npz")
    run = tmp_path / "run"
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT))
    p = subprocess.run([sys.executable, "-c", NO_TENSORFLOW, "train", "--data", str(data), "--out", str(run),
                        "--epochs", "1", "--limit", "300", "--batch-size", "100", "--width", "0.5", "--verbose", "0",
                        "--bn-images", "64", "--class-weight-power", "0.3"],
                       capture_output=True, text=True, env=env, timeout=600)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    assert "epoch 1/1: loss " in p.stdout and "PublicTest accuracy" in p.stdout
    p = subprocess.run([sys.executable, "-c", NO_TENSORFLOW, "load", str(run / "best.keras")],
                       capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0 and "output (None, 7)" in p.stdout, p.stderr[-2000:]
    m = keras.models.load_model(run / "best.keras", compile=False)  # a JAX-trained .keras, read by TensorFlow
    assert m.output_shape == (None, 7)
    out = m.predict(np.zeros((2, 48, 48, 1), np.float32), verbose=0)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)


def test_jax_backend_learns_a_teachers_features_and_tensorflow_reads_both_checkpoints(tmp_path):
    """The GPU machine trains feature-distilled students with JAX: the loss and metric must run there
    and the .keras files it writes must load here (the map in last.keras, the classifier alone in best.keras)."""
    pytest.importorskip("jax", reason="jax is part of the dev set-up (./install.sh --dev)")
    data = _tiny_npz(tmp_path / "tiny.npz")
    f = _feature_teacher(data, tmp_path / "feat.npz")
    run = tmp_path / "run"
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT))
    p = subprocess.run([sys.executable, "-c", NO_TENSORFLOW, "train", "--data", str(data), "--out", str(run),
                        "--epochs", "6", "--lr", "1e-2", "--seed", "5", "--limit", "300", "--batch-size", "64",
                        "--width", "0.5", "--verbose", "0", "--bn-images", "0", "--teacher", str(tmp_path / "feat.npz"),
                        "--teacher-weight", "0", "--feature-weight", "1"],
                       capture_output=True, text=True, env=env, timeout=600)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    assert "distilling 3 features too" in p.stdout and "epoch 6/6: loss " in p.stdout
    best = keras.models.load_model(run / "best.keras", compile=False)
    assert best.output_shape == (None, 7)
    last = keras.models.load_model(run / "last.keras")  # loss and metric by their registered names
    assert last.output_shape == (None, 7 + 3)
    pred = keras.ops.convert_to_numpy(last(_faces(data), training=True))
    mse = float(np.mean((pred[:, 7:] - feature_kd.standardise(f)) ** 2))
    assert mse < 0.5, mse  # learned under JAX: predicting nothing scores 1.0


def test_array_batches_visit_every_face_once_per_epoch_augmented_with_matching_targets_and_weights():
    n, bs = 50, 16
    x = np.random.default_rng(1).random((n, 48, 48, 1), dtype=np.float32)
    targets = np.eye(7, dtype=np.float32)[np.arange(n) % 7]
    targets[:, :] += np.arange(n, dtype=np.float32)[:, None] * 1000  # row number rides along in the targets
    weights = np.arange(n, dtype=np.float32)
    args = TrainOptions(data="", out=Path("unused"), seed=3, batch_size=bs)
    ds = _array_batches(x, targets, weights, args, epoch=0)
    assert len(ds) == 4

    def one_epoch():
        rows, changed = [], 0
        for i in range(len(ds)):
            xb, tb, wb = ds[i]
            assert xb.shape[1:] == (48, 48, 1) and len(xb) == len(tb) == len(wb)
            r = (tb[:, 0] // 1000).astype(int)
            np.testing.assert_array_equal(wb, r)  # weights stay with their faces
            changed += int(np.sum(np.abs(xb - x[r]).max(axis=(1, 2, 3)) > 1e-3))
            rows += r.tolist()
        return rows, changed

    first, changed = one_epoch()
    assert sorted(first) == list(range(n))  # every face exactly once
    assert changed > n // 2  # augmented, not the raw faces
    ds.on_epoch_end()
    second, _ = one_epoch()
    assert sorted(second) == list(range(n)) and second != first  # reshuffled each epoch
    again = _array_batches(x, targets, weights, args, epoch=0)
    assert [int(v) for i in range(len(again)) for v in again[i][1][:, 0] // 1000] == first  # the seed decides the order
