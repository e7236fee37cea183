"""emotion-export train (the lead's model_export/train.py) through the CLI: a tiny run saves and resumes."""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.tf, pytest.mark.slow]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from model_export.cli import main  # noqa: E402
from model_export.data import FER_LABELS, load_dataset  # noqa: E402

FIX = Path(__file__).resolve().parent / "fixtures" / "export"


def _tiny_npz(path: Path, drop: tuple[int, ...] = ()) -> Path:
    """300 Training + 80 PublicTest faces: the committed real faces with small random shifts
    (classes in `drop` left out, as in a folder that lacks them)."""
    base = load_dataset(FIX / "folder")
    keep = ~np.isin(base.labels, drop)
    faces, labels = base.images[keep], base.labels[keep]
    rng = np.random.default_rng(0)
    n = 380
    pick = rng.integers(0, len(faces), n)
    images = np.empty((n, 48, 48), np.uint8)
    for i, k in enumerate(pick):
        dy, dx = rng.integers(-3, 4, 2)
        images[i] = np.roll(faces[k], (dy, dx), axis=(0, 1))
    usage = np.r_[np.zeros(300), np.ones(80)].astype(np.int8)
    np.savez(path, images=images, labels=labels[pick].astype(np.int8), usage=usage)
    return path


def _epochs(log_csv: Path) -> list[int]:
    with open(log_csv) as f:
        return [int(r["epoch"]) for r in csv.DictReader(f)]


def test_tiny_run_interrupted_resumes_refuses_a_longer_schedule_and_restarts_warm(tmp_path, capsys, monkeypatch):
    import model_export.train as train_mod

    data = _tiny_npz(tmp_path / "tiny.npz")
    run = tmp_path / "run"
    common = ["train", "--data", str(data), "--out", str(run), "--limit", "300", "--batch-size", "64",
              "--width", "0.5", "--verbose", "0", "--epochs", "2"]
    # Ctrl-C after the first epoch's checkpoint; every plot must see the epoch it was drawn for
    plotted: list[list[int]] = []
    real_plot = train_mod._plot

    def plot(log_csv, png):
        plotted.append(_epochs(log_csv))
        real_plot(log_csv, png)
        if len(plotted) == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(train_mod, "_plot", plot)
    assert main(common) == 130
    out = capsys.readouterr().out
    # the opening summary: counts, selection split, classes in order, model size
    assert "data " in out and "Training 300, PublicTest 80" in out and "selection split" in out
    assert "classes (7, in this order = the model's outputs and labels): angry " in out
    assert "parameters" in out and "batch size 64" in out
    assert "epoch 1/2:" in out and "ETA" in out
    # issue 30 item 11: Ctrl-C says what was kept and the command that resumes
    assert f"interrupted: {run} keeps epoch 1 (last.keras, best.keras); resume with the same command: " \
           f"emotion-export train --data {data} --out {run} --epochs 2 --batch-size 64 --width 0.5 --limit 300" in out
    state = json.loads((run / "state.json").read_text())
    assert state["epoch"] == 1 and state["labels"] == list(FER_LABELS) and state["input_range"] == [0.0, 1.0]
    first = keras.models.load_model(run / "last.keras")
    assert first.optimizer.iterations.numpy() == 5  # ceil(300 / 64) steps

    assert main(common) == 0
    out = capsys.readouterr().out
    assert "resuming" in out and "after epoch 1" in out
    assert "best PublicTest accuracy" in out and "next: emotion-export export " in out
    state = json.loads((run / "state.json").read_text())
    assert state["epoch"] == 2
    # issue 12 (3): one row per epoch counted from 1 like the console, and each plot includes its own epoch
    assert _epochs(run / "log.csv") == [1, 2]
    with open(run / "log.csv") as f:  # issue 30 item 11: the learning-rate column was empty
        lrs = [float(r["learning_rate"]) for r in csv.DictReader(f)]
    assert all(0 < lr <= 3e-3 for lr in lrs) and lrs[0] != lrs[1]  # warm-up: the schedule moves
    assert plotted == [[1], [1, 2]]
    assert (run / "curves.png").is_file()
    resumed = keras.models.load_model(run / "last.keras")
    assert resumed.optimizer.iterations.numpy() == 10  # optimizer state carried over
    assert resumed.input_shape == (None, 48, 48, 1) and resumed.output_shape == (None, 7)

    # issue 12 (2): more epochs on the same run would train at the floor learning rate: refused, with the way on
    assert main(common[:-1] + ["4"]) == 2
    err = capsys.readouterr().err
    assert "planned for 2 epochs (finished)" in err and "--init-from" in err and str(run / "best.keras") in err
    assert json.loads((run / "state.json").read_text())["epoch"] == 2  # nothing trained

    assert main(common) == 0  # finished: nothing to do
    assert "nothing to do" in capsys.readouterr().out

    # the warm restart the refusal points to: a new run folder from that run's weights, a fresh schedule
    warm = tmp_path / "warm"
    assert main(["train", "--data", str(data), "--out", str(warm), "--limit", "300", "--batch-size", "64",
                 "--epochs", "1", "--lr", "1e-9", "--bn-images", "0", "--verbose", "0",
                 "--init-from", str(run / "last.keras")]) == 0
    assert "new run from the weights of" in capsys.readouterr().out
    restarted = keras.models.load_model(warm / "last.keras")
    assert restarted.optimizer.iterations.numpy() == 5  # fresh schedule, not the old run's 10 steps
    conv = next(w for w in resumed.weights if "stem_conv" in w.path)
    conv2 = next(w for w in restarted.weights if w.path == conv.path)
    assert np.allclose(conv.numpy(), conv2.numpy(), atol=1e-4)  # lr ~0: the weights came over


def test_six_class_data_gives_a_six_output_model_and_its_labels(tmp_path, capsys):
    """Issue 12 (5): a folder without disgust used to give 7 outputs, one never trained."""
    from model_export.export import export_model

    data = _tiny_npz(tmp_path / "six.npz", drop=(1,))
    run = tmp_path / "run"
    assert main(["train", "--data", str(data), "--out", str(run), "--limit", "300", "--batch-size", "100",
                 "--width", "0.5", "--stem", "single", "--verbose", "1", "--epochs", "1", "--bn-images", "0"]
                + _tensorboard(tmp_path)) == 0
    if _tensorboard(tmp_path):
        assert list((tmp_path / "tb").rglob("events.out.tfevents.*"))  # the TensorBoard log option
    out = capsys.readouterr().out
    assert "\nepoch 1/1: loss " in out  # its own line, not glued to the end of Keras' progress bar
    six = ["angry", "fear", "happy", "sad", "surprise", "neutral"]
    assert f"classes (6, in this order = the model's outputs and labels): {six[0]} " in out
    assert "not in the data, so not in the model: disgust" in out
    assert json.loads((run / "state.json").read_text())["labels"] == six
    best = keras.models.load_model(run / "best.keras")
    assert best.output_shape == (None, 6)
    assert best.name == "edgenet_48_w0.5_single" and "stem_conv2" not in [layer.name for layer in best.layers]
    # export takes the run folder (its best.keras), labels and input range from it (issue 30 item 10)
    res = export_model(run, tmp_path / "six.tflite", representative_data=data, representative_size=100,
                       min_representative=100, eval_split="PublicTest", log=lambda m: None)
    assert res.info.labels == tuple(six) and res.info.input.range == (0.0, 1.0)


def _tensorboard(tmp_path: Path) -> list[str]:
    """--tensorboard where the tensorboard package is installed (tensorflow-cpu does not bring it)."""
    import importlib.util

    return ["--tensorboard", str(tmp_path / "tb")] if importlib.util.find_spec("tensorboard") else []


def test_failed_train_leaves_no_run_folder(tmp_path, capsys):
    import importlib.util

    run = tmp_path / "run"
    assert main(["train", "--data", str(tmp_path / "missing.npz"), "--out", str(run)]) == 2
    assert "missing.npz: no such file" in capsys.readouterr().err
    assert not run.exists()
    if importlib.util.find_spec("tensorboard") is None:  # refused before anything starts, not after an epoch
        assert main(["train", "--data", str(tmp_path / "missing.npz"), "--out", str(run), "--tensorboard",
                     str(tmp_path / "tb")]) == 2
        assert "pip install tensorboard" in capsys.readouterr().err and not run.exists()


def test_a_finished_run_that_kept_only_best_keras_is_not_overwritten(tmp_path, capsys):
    """The committed runs keep best.keras (weights only) and state.json but no last.keras: training into
    such a folder again would start afresh and replace best.keras with its first epoch, so it is refused."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "state.json").write_text(json.dumps({"epoch": 3, "best_val_accuracy": 0.5, "best_epoch": 2, "wait": 1, "args": {"epochs": 3}}))
    (run / "best.keras").write_bytes(b"the weights someone chose")
    data = _tiny_npz(tmp_path / "tiny.npz")
    assert main(["train", "--data", str(data), "--out", str(run), "--epochs", "1", "--batch-size", "64"]) == 2
    err = capsys.readouterr().err
    assert "has state.json but no last.keras to resume from" in err and f"--init-from {run / 'best.keras'}" in err
    assert "--no-resume" in err and (run / "best.keras").read_bytes() == b"the weights someone chose"
    # the schedule it finished (as recipe.sh re-runs it): nothing to train, nothing touched
    assert main(["train", "--data", str(data), "--out", str(run), "--epochs", "3", "--batch-size", "64"]) == 0
    assert "finished after epoch 3 of 3 (best PublicTest 0.5000 at epoch 2); nothing to train" in capsys.readouterr().out
    assert (run / "best.keras").read_bytes() == b"the weights someone chose"
    # stopped early (patience spent) counts as finished; still patient does not
    for wait, finished in ((2, True), (1, False)):
        (run / "state.json").write_text(json.dumps({"epoch": 2, "best_val_accuracy": 0.5, "best_epoch": 1, "wait": wait,
                                                    "args": {"epochs": 3, "patience": 2}}))
        assert main(["train", "--data", str(data), "--out", str(run), "--epochs", "3", "--batch-size", "64"]) == (0 if finished else 2)
        out, err = capsys.readouterr()
        assert ("finished after epoch 2 of 3" in out) is finished and ("no last.keras to resume from" in err) is not finished
    # a last.keras means resume; a damaged one is named in one line, with the ways on
    (run / "last.keras").write_bytes(b"not a keras file")
    assert main(["train", "--data", str(data), "--out", str(run), "--epochs", "3", "--batch-size", "64"]) == 2
    err = capsys.readouterr().err
    assert "no last.keras to resume from" not in err and len(err.strip().splitlines()) == 1
    assert f"{run / 'last.keras'}: not a readable Keras model" in err and "cannot resume: start over with --no-resume" in err
    (run / "last.keras").unlink()
    # --no-resume starts over here, as asked
    assert main(["train", "--data", str(data), "--out", str(run), "--epochs", "1", "--batch-size", "64", "--no-resume",
                 "--verbose", "0"]) == 0
    assert (run / "best.keras").read_bytes() != b"the weights someone chose" and (run / "last.keras").is_file()


def test_targets_for_a_class_subset_and_old_logs_renumbered(tmp_path):
    from model_export.data import FERPLUS_COLUMNS
    from model_export.train import _plot, _renumber_old_log, class_targets

    classes = np.array([0, 2, 3, 4, 5, 6])  # no disgust
    votes = np.zeros((2, len(FERPLUS_COLUMNS)), np.uint8)
    votes[0, FERPLUS_COLUMNS.index("happiness")] = 5
    votes[0, FERPLUS_COLUMNS.index("disgust")] = 5  # half the votes name the class the model lacks
    t = class_targets(np.array([3, 0]), votes, classes, 0.5)
    np.testing.assert_allclose(t.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(t[0], [0, 0, 1, 0, 0, 0], atol=1e-6)  # happy: label + the happy votes
    np.testing.assert_allclose(t[1], [1, 0, 0, 0, 0, 0], atol=1e-6)  # no votes: the one-hot label
    # a run made before epochs were counted from 1 is renumbered once when it resumes
    log = tmp_path / "log.csv"
    log.write_text("epoch,accuracy,loss,val_accuracy,val_loss\n0,0.2,2.0,0.3,1.9\n1,0.3,1.8,0.35,1.7\n")
    _renumber_old_log(log, 2)
    assert _epochs(log) == [1, 2]
    _renumber_old_log(log, 2)  # already 1-based: left alone
    assert _epochs(log) == [1, 2]
    _plot(log, tmp_path / "curves.png")
    assert (tmp_path / "curves.png").stat().st_size > 1000


def test_mixup_blends_faces_and_targets_alike():
    from model_export.train import mixup

    rng = np.random.default_rng(0)
    x = rng.random((64, 48, 48, 1), dtype=np.float32)
    y = np.eye(7, dtype=np.float32)[rng.integers(0, 7, 64)]
    assert mixup(x, y, 0.0, rng)[0] is x  # off: untouched
    bx, by = mixup(x, y, 0.4, np.random.default_rng(1))
    assert bx.shape == x.shape and by.shape == y.shape and bx.dtype == by.dtype == np.float32
    np.testing.assert_allclose(by.sum(1), 1.0, rtol=1e-6)
    assert np.all(bx >= 0) and np.all(bx <= 1) and not np.allclose(bx, x) and (by.max(1) < 0.999).mean() > 0.3
    # each face is lam * itself + (1 - lam) * a partner, with the same lam in its target
    r2 = np.random.default_rng(1)
    lam = r2.beta(0.4, 0.4, size=64).astype(np.float32)
    perm = r2.permutation(64)
    np.testing.assert_allclose(bx[5], lam[5] * x[5] + (1 - lam[5]) * x[perm[5]], rtol=1e-5)
    np.testing.assert_allclose(by[5], lam[5] * y[5] + (1 - lam[5]) * y[perm[5]], rtol=1e-5)


def test_random_erasing_replaces_one_rectangle_of_the_chosen_faces_with_noise():
    from model_export.train import ERASE_AREA, erase

    x = np.full((2000, 48, 48, 1), 0.5, np.float32)
    assert erase(x, 0.0, np.random.default_rng(0)) is x  # off: untouched
    e = erase(x, 1.0, np.random.default_rng(0))
    assert np.all(x == 0.5) and e.dtype == np.float32 and e.shape == x.shape  # a copy, the input kept
    assert np.all(e >= 0) and np.all(e <= 1)
    changed = e[..., 0] != 0.5
    share = changed.reshape(len(x), -1).mean(1)
    lo, hi = ERASE_AREA
    assert share.min() >= lo * 0.8 and share.max() <= hi * 1.15  # area within bounds (rounded to whole pixels)
    assert share.mean() == pytest.approx((lo + hi) / 2, abs=0.02)
    for face in changed[:50]:  # one solid rectangle: its bounding box is all noise
        ys, xs = np.nonzero(face)
        assert face[ys.min():ys.max() + 1, xs.min():xs.max() + 1].all()
    assert len({(np.nonzero(f)[0].min(), np.nonzero(f)[1].min()) for f in changed[:50]}) > 25  # it moves around
    half = erase(x, 0.5, np.random.default_rng(1))
    assert (half != 0.5).reshape(len(x), -1).any(1).mean() == pytest.approx(0.5, abs=0.04)


def test_erasing_without_mixup_changes_the_faces_not_the_targets():
    from model_export.train import TrainOptions, _batch_extras

    x = np.full((8, 48, 48, 1), 0.5, np.float32)
    y = np.eye(7, dtype=np.float32)[np.arange(8) % 7]
    bx, by = _batch_extras(x, y, TrainOptions(data="", out=Path("r"), erase=1.0), np.random.default_rng(0))
    assert by is y and (bx != 0.5).reshape(8, -1).any(1).all()


@pytest.mark.parametrize("flag, good, bad, refusal", [
    ("--mixup", "0.2", "-1", "must be a finite number at least 0"),
    ("--erase", "0.5", "1.5", "must be a finite number at least 0 and at most 1"),
])
def test_a_tiny_run_trains_with_host_side_augmentation(tmp_path, capsys, flag, good, bad, refusal):
    data = _tiny_npz(tmp_path / "tiny.npz")
    run = tmp_path / "run"
    assert main(["train", "--data", str(data), "--out", str(run), "--limit", "300", "--batch-size", "64",
                 "--width", "0.5", "--verbose", "0", "--epochs", "1", flag, good]) == 0
    assert json.loads((run / "state.json").read_text())["args"][flag[2:]] == float(good)
    assert (run / "best.keras").is_file()
    with pytest.raises(SystemExit) as e:
        main(["train", "--data", str(data), "--out", str(tmp_path / "r2"), flag, bad])
    assert e.value.code == 2 and f"argument {flag}: {refusal}" in capsys.readouterr().err


@pytest.mark.parametrize("command", [["train", "--data", "D", "--out", "R"], ["average", "a.keras", "b.keras", "--data", "D", "--out", "o.keras"]])
def test_a_seed_numpy_cannot_take_is_refused_before_any_work(tmp_path, capsys, command):
    """NumPy wants 0..2**32-1; anything else used to end in its traceback after the data had loaded."""
    for bad in ("-1", str(2**32)):
        with pytest.raises(SystemExit) as e:
            main(command + ["--seed", bad])
        assert e.value.code == 2 and f"argument --seed: must be between 0 and {2**32 - 1} (got {bad})" in capsys.readouterr().err


def test_labels_of_ones_own_train_export_and_evaluate(tmp_path, capsys):
    """Issue 30 item 7: train/smile, train/frown, train/calm was refused; a model with such labels then failed
    with 'no faces to evaluate'. Now the run's labels are the folder's classes, export evaluates on the
    matching folders, and --no-evaluate exports where no data has them."""
    from edge.errors import DataError
    from model_export.export import export_model
    from tests.test_export_data import FOLDER, own_label_folder

    data = own_label_folder(tmp_path / "mine", copies=40, shift=3)
    run = tmp_path / "run"
    assert main(["train", "--data", str(data), "--out", str(run), "--batch-size", "64", "--width", "0.5",
                 "--epochs", "1", "--bn-images", "0"]) == 0
    out = capsys.readouterr().out
    assert "classes (4, in this order = the model's outputs and labels): surprise 40, calm 40, frown 40, smile 40" in out
    assert json.loads((run / "state.json").read_text())["labels"] == ["surprise", "calm", "frown", "smile"]
    res = export_model(run, tmp_path / "mine.tflite", representative_data=data, representative_size=100, min_representative=100,
                       log=lambda m: None)
    assert res.info.labels == ("surprise", "calm", "frown", "smile") and res.info.metrics["n"] == 4
    import shutil

    angry = tmp_path / "angry"  # evaluation data with none of the model's classes
    for part in ("train", "test"):
        shutil.copytree(FOLDER / part / "angry", angry / part / "angry")
    with pytest.raises(DataError, match="or export with --no-evaluate"):
        export_model(run, tmp_path / "fer.tflite", representative_data=data, representative_size=100, min_representative=100,
                     eval_data=angry, log=lambda m: None)
    said: list[str] = []
    res = export_model(run, tmp_path / "fer.tflite", representative_data=data, representative_size=100, min_representative=100,
                       eval_data=angry, evaluate=False, log=said.append)
    assert res.info.metrics == {} and any("--no-evaluate: the metadata will have no accuracy numbers" in m for m in said)
