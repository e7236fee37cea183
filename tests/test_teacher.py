"""Distillation: `emotion-export teacher` writes an ensemble's probabilities, `train --teacher` learns from them."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.tf, pytest.mark.slow]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from model_export import teacher  # noqa: E402
from model_export.cli import main  # noqa: E402
from model_export.data import FER_LABELS, load_dataset  # noqa: E402
from tests.test_train import _tiny_npz  # noqa: E402

TINY = ["--limit", "300", "--batch-size", "64", "--width", "0.5", "--verbose", "0", "--bn-images", "0"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, Path]:
    """The tiny data set and a one-epoch run on it (the teacher's members)."""
    d = tmp_path_factory.mktemp("teacher")
    data = _tiny_npz(d / "tiny.npz")
    assert main(["train", "--data", str(data), "--out", str(d / "run"), "--epochs", "1"] + TINY) == 0
    return data, d / "run"


def test_teacher_file_holds_the_mirror_averaged_ensemble_of_its_members(tiny, tmp_path, capsys):
    data, run = tiny
    out = tmp_path / "t.npz"
    assert main(["teacher", str(run / "best.keras"), str(run / "last.keras"), "--data", str(data), "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert "teacher (2 models, mirror averaged): PublicTest 0." in said and f"--teacher {out} --teacher-weight" in said
    t = teacher.load(out)
    x_tr, _ = load_dataset(data).split("Training")
    assert t.probs.shape == (len(x_tr), 7) and t.labels == FER_LABELS
    assert t.fingerprint == teacher.fingerprint(x_tr)
    x = x_tr.astype(np.float32)[..., None] / 255.0
    models = [keras.models.load_model(run / n, compile=False) for n in ("best.keras", "last.keras")]
    want = np.mean([m.predict(v, verbose=0) for m in models for v in (x, x[:, :, ::-1])], axis=0)
    np.testing.assert_allclose(t.probs, want, atol=1e-5)
    assert main(["teacher", str(run / "best.keras"), "--no-flip", "--data", str(data), "--out", str(out)]) == 0
    np.testing.assert_allclose(teacher.load(out).probs, models[0].predict(x, verbose=0), atol=1e-5)


def test_train_learns_what_the_teacher_says(tiny, tmp_path, capsys):
    """A teacher that calls every face 'happy' at full weight makes a model that says happy;
    the same run without it does not: the targets really come from the file."""
    data, _ = tiny
    x_tr, y_tr = load_dataset(data).split("Training")
    happy = np.zeros((len(x_tr), 7), np.float32)
    happy[:, FER_LABELS.index("happy")] = 1.0
    tfile = tmp_path / "happy.npz"
    teacher.save(teacher.Teacher(happy, FER_LABELS, teacher.fingerprint(x_tr)), tfile, ["made up"], False)
    args = ["--epochs", "3", "--lr", "3e-3", "--class-weight-power", "0", "--label-smoothing", "0", "--seed", "5"] + TINY
    share = {}
    for name, extra in (("taught", ["--teacher", str(tfile), "--teacher-weight", "1"]), ("plain", [])):
        assert main(["train", "--data", str(data), "--out", str(tmp_path / name)] + args + extra) == 0
        m = keras.models.load_model(tmp_path / name / "last.keras", compile=False)
        pred = m.predict(x_tr[:300].astype(np.float32)[..., None] / 255.0, verbose=0).argmax(1)
        share[name] = float(np.mean(pred == FER_LABELS.index("happy")))
    assert "target = 0 x label + 1 x teacher" in capsys.readouterr().out
    assert share["taught"] > 0.95 and share["plain"] < 0.8, share
    assert np.mean(y_tr[:300] == FER_LABELS.index("happy")) < 0.5  # the labels alone do not say happy


@pytest.mark.parametrize("case, message", [
    ("missing", "no such teacher file"),
    ("not-npz", "not a readable teacher file"),
    ("other-kind", "not a teacher file"),
    ("other-labels", "the teacher's classes (angry,fear"),
    ("other-faces", "made from other Training faces (299 rows)"),
    ("changed-faces", "made from other Training faces (300 rows)"),
    ("not-probabilities", "'probs' rows must be probabilities"),
    ("nan", "'probs' rows must be probabilities"),
    ("wrong-shape", "one column per label"),
])
def test_a_teacher_that_does_not_fit_is_refused_in_one_line_before_training(tiny, tmp_path, capsys, case, message):
    data, _ = tiny
    x_tr, _ = load_dataset(data).split("Training")
    good = np.full((len(x_tr), 7), 1 / 7, np.float32)
    fp = teacher.fingerprint(x_tr)
    tfile = tmp_path / "t.npz"
    if case == "not-npz":
        tfile.write_text("hello")
    elif case == "other-kind":
        np.savez(tfile, probs=good)
    elif case == "other-labels":
        labels = tuple(v for v in FER_LABELS if v != "disgust")
        teacher.save(teacher.Teacher(np.full((len(x_tr), 6), 1 / 6, np.float32), labels, fp), tfile, [], True)
    elif case == "other-faces":
        teacher.save(teacher.Teacher(good[:-1], FER_LABELS, fp), tfile, [], True)
    elif case == "changed-faces":
        teacher.save(teacher.Teacher(good, FER_LABELS, teacher.fingerprint(x_tr[::-1])), tfile, [], True)
    elif case in ("not-probabilities", "nan", "wrong-shape"):
        bad = {"not-probabilities": good * 2, "nan": np.where(np.eye(len(x_tr), 7, dtype=bool), np.nan, good),
               "wrong-shape": good[:, :5]}[case]
        np.savez(tfile, kind=teacher.KIND, probs=bad, labels=np.array(FER_LABELS), fingerprint=fp)
    out = tmp_path / "run"
    assert main(["train", "--data", str(data), "--out", str(out), "--teacher", str(tfile), "--epochs", "1"] + TINY) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not out.exists()  # nothing left behind


def test_teacher_refuses_members_it_cannot_combine(tiny, tmp_path, capsys):
    data, run = tiny
    loose = tmp_path / "loose.keras"
    loose.write_bytes((run / "best.keras").read_bytes())  # no run folder beside it: labels unknown
    for argv, message in (
        ([str(run / "best.keras"), "--out", str(tmp_path / "t.txt")], "must be a file name ending in .npz"),
        ([str(loose), "--out", str(tmp_path / "t.npz")], "no run folder (state.json) beside it"),
    ):
        assert main(["teacher", *argv, "--data", str(data)]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    assert not (tmp_path / "t.npz").exists()
