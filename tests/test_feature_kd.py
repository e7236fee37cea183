"""Feature distillation: `teacher --features` writes the members' features, `train --feature-weight` learns
them through a map that best.keras leaves out, and a run resumes with it."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.tf, pytest.mark.slow]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from model_export import feature_kd, teacher  # noqa: E402
from model_export.cli import main  # noqa: E402
from model_export.data import FER_LABELS, load_dataset  # noqa: E402
from tests.test_teacher import TINY, tiny  # noqa: E402,F401 - the module's tiny data set and one-epoch run


def _faces(data: Path) -> np.ndarray:
    x_tr, _ = load_dataset(data).split("Training")
    return x_tr.astype(np.float32)[..., None] / 255.0


def test_teacher_features_are_each_members_head_input_mirror_averaged_side_by_side(tiny, tmp_path, capsys):
    data, run = tiny
    out = tmp_path / "t.npz"
    assert main(["teacher", str(run / "best.keras"), str(run / "last.keras"), "--features", "--data", str(data),
                 "--out", str(out)]) == 0
    assert "7 classes and 256 features" in capsys.readouterr().out
    t = teacher.load(out)
    x = _faces(data)
    want = []
    for name in ("best.keras", "last.keras"):
        m = keras.models.load_model(run / name, compile=False)
        b = keras.Model(m.inputs, m.layers[-1].input)
        want.append((b.predict(x, verbose=0) + b.predict(x[:, :, ::-1], verbose=0)) / 2)
    assert t.features.shape == (len(x), 256)  # 128 per width-0.5 member
    np.testing.assert_allclose(t.features, np.concatenate(want, axis=1), atol=1e-4)
    assert main(["teacher", str(run / "best.keras"), str(run / "last.keras"), "--data", str(data), "--out", str(out)]) == 0
    plain = teacher.load(out)
    assert plain.features is None  # probabilities only, as before
    np.testing.assert_allclose(t.probs, plain.probs, atol=1e-6)  # read in the same pass as the features


def _feature_teacher(data: Path, path: Path) -> np.ndarray:
    """A teacher whose 'features' are easy functions of the face (brightness of the whole, the top, the
    left half): a net can learn them, a map that learned nothing cannot predict them."""
    x_tr, _ = load_dataset(data).split("Training")
    x = x_tr.astype(np.float32) / 255.0
    f = np.stack([x.mean((1, 2)), x[:, :24].mean((1, 2)), x[:, :, :24].mean((1, 2))], axis=1)
    probs = np.full((len(x), 7), 1 / 7, np.float32)
    teacher.save(teacher.Teacher(probs, FER_LABELS, teacher.fingerprint(x_tr), f), path, ["made up"], False)
    return f


def test_train_learns_the_teachers_features_and_best_keras_is_the_classifier_alone(tiny, tmp_path, capsys):
    data, _ = tiny
    tfile = tmp_path / "feat.npz"
    f = _feature_teacher(data, tfile)
    run = tmp_path / "fkd"
    args = ["train", "--data", str(data), "--out", str(run), "--epochs", "6", "--lr", "1e-2", "--seed", "5",
            "--teacher", str(tfile), "--teacher-weight", "0", "--feature-weight", "1"] + TINY
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "distilling 3 features too" in out and "model edgenet_48_w0.5: " in out  # the classifier's name
    best = keras.models.load_model(run / "best.keras", compile=False)
    assert best.output_shape == (None, 7) and feature_kd.FEATURE_MAP not in [layer.name for layer in best.layers]
    last = keras.models.load_model(run / "last.keras")  # the loss and metric load by name (registered)
    assert last.output_shape == (None, 7 + 3)
    # batch statistics: a tiny run's BN moving averages lag its weights (recalibrate_bn's reason)
    pred = keras.ops.convert_to_numpy(last(_faces(data), training=True))
    assert np.allclose(pred[:, :7].sum(axis=1), 1.0, atol=1e-4)
    mse = float(np.mean((pred[:, 7:] - feature_kd.standardise(f)) ** 2))
    assert mse < 0.5, mse  # predicting nothing (zeros) scores 1.0 on standardised features


def test_a_feature_run_interrupted_resumes_with_its_map(tiny, tmp_path, capsys, monkeypatch):
    import model_export.train as train_mod

    data, _ = tiny
    tfile = tmp_path / "feat.npz"
    _feature_teacher(data, tfile)
    run = tmp_path / "fkd"
    args = ["train", "--data", str(data), "--out", str(run), "--epochs", "2", "--teacher", str(tfile),
            "--feature-weight", "0.5", "--mixup", "0.2"] + TINY
    real_plot = train_mod._plot

    def plot_then_stop(log_csv, png):
        real_plot(log_csv, png)
        raise KeyboardInterrupt

    monkeypatch.setattr(train_mod, "_plot", plot_then_stop)
    assert main(args) == 130
    monkeypatch.setattr(train_mod, "_plot", real_plot)
    capsys.readouterr()
    assert main(args) == 0
    assert "resuming" in capsys.readouterr().out
    last = keras.models.load_model(run / "last.keras")
    assert last.optimizer.iterations.numpy() == 10 and last.output_shape == (None, 10)
    # another feature weight would make it another run
    assert main(args[:-len(TINY) - 4] + ["--feature-weight", "2", "--mixup", "0.2"] + TINY) == 2
    assert "--feature-weight 0.5" in capsys.readouterr().err


def test_feature_weight_needs_a_teacher_with_features(tiny, tmp_path, capsys):
    data, run = tiny
    base = ["train", "--data", str(data), "--out", str(tmp_path / "r"), "--epochs", "1", "--feature-weight", "1"] + TINY
    assert main(base) == 2
    assert "--feature-weight needs --teacher" in capsys.readouterr().err
    plain = tmp_path / "plain.npz"
    assert main(["teacher", str(run / "best.keras"), "--data", str(data), "--out", str(plain)]) == 0
    capsys.readouterr()
    assert main(base + ["--teacher", str(plain)]) == 2
    err = capsys.readouterr().err.strip()
    assert "holds no features for --feature-weight" in err and "teacher --features" in err and "\n" not in err
    assert not (tmp_path / "r").exists()


def test_the_loss_is_cross_entropy_plus_weighted_feature_error_with_class_weights():
    y_true = np.array([[1, 0, 0.5, -1.0], [0, 1, 2.0, 0.0]], np.float32)
    y_pred = np.array([[0.8, 0.2, 0.5, 1.0], [0.4, 0.6, 0.0, 0.0]], np.float32)
    loss = feature_kd.FeatureDistillLoss(2, 0.5, class_weights=[1.0, 3.0], reduction=None)
    got = keras.ops.convert_to_numpy(loss(y_true, y_pred))
    ce = -np.log([0.8, 0.6]) * [1.0, 3.0]
    mse = np.array([(0 + 4) / 2, (4 + 0) / 2])
    np.testing.assert_allclose(got, ce + 0.5 * mse, rtol=1e-5)
    again = feature_kd.FeatureDistillLoss.from_config(loss.get_config())
    np.testing.assert_allclose(keras.ops.convert_to_numpy(again(y_true, y_pred)), got, rtol=1e-6)
    acc = feature_kd.ClassAccuracy(2)
    acc.update_state(y_true, y_pred)
    assert float(acc.result()) == 1.0
    acc.update_state(y_true, y_pred[:, [1, 0, 2, 3]])
    assert float(acc.result()) == 0.5
    f = feature_kd.standardise(np.array([[1.0, 5.0], [3.0, 5.0]]))
    np.testing.assert_allclose(f, [[-1.0, 0.0], [1.0, 0.0]])
