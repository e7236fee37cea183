"""emotion-export export: Keras -> full-integer int8 TFLite that the edge classifier runs.

Needs TensorFlow (the export extra); the tests that take the int8 ranges from 300+ real faces need FER2013.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

pytestmark = pytest.mark.tf
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
keras = pytest.importorskip("keras")
pytest.importorskip("tensorflow")

from edge.classify import EmotionClassifier  # noqa: E402
from edge.contract import FER_LABELS, read_model_info  # noqa: E402
from edge.errors import DataError, ModelError  # noqa: E402
from model_export.cli import main  # noqa: E402
from model_export.cost import cpu_name  # noqa: E402
from model_export.data import load_dataset  # noqa: E402
from model_export.export import check_int8, export_model  # noqa: E402
from model_export.predictors import KerasPredictor, TFLitePredictor, keras_input_hw, load_keras  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FIX = ROOT / "tests" / "fixtures"
FOLDER = FIX / "export" / "folder"
from .conftest import FER_NPZ  # noqa: E402
if not FER_NPZ.exists():
    FER_NPZ = ROOT.parent / "shared" / "data" / "fer2013" / "fer2013.npz"
needs_fer = pytest.mark.skipif(not FER_NPZ.exists(), reason=f"FER2013 not found at {FER_NPZ}")
QUIET = lambda m: None  # noqa: E731


def _tiny(size: int = 48, channels: int = 1, n_out: int = 7, softmax: bool = True):
    keras.utils.set_random_seed(7)
    inp = keras.Input((size, size, channels))
    x = keras.layers.Conv2D(8, 3, strides=2, use_bias=False)(inp)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.SeparableConv2D(16, 3, strides=2, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(n_out, activation="softmax" if softmax else None)(x)
    return keras.Model(inp, x)


def mini_xception(size: int = 64, n_out: int = 7, base: int = 8):
    """The shape of the widely used FER mini-Xception: conv stem, 4 separable residual blocks, GAP."""
    keras.utils.set_random_seed(11)
    L = keras.layers
    inp = keras.Input((size, size, 1))
    x = L.Conv2D(base, 3, use_bias=False)(inp)
    x = L.BatchNormalization()(x)
    x = L.Activation("relu")(x)
    x = L.Conv2D(base, 3, use_bias=False)(x)
    x = L.BatchNormalization()(x)
    x = L.Activation("relu")(x)
    for filters in (16, 32, 64, 128):
        res = L.Conv2D(filters, 1, strides=2, padding="same", use_bias=False)(x)
        res = L.BatchNormalization()(res)
        x = L.SeparableConv2D(filters, 3, padding="same", use_bias=False)(x)
        x = L.BatchNormalization()(x)
        x = L.Activation("relu")(x)
        x = L.SeparableConv2D(filters, 3, padding="same", use_bias=False)(x)
        x = L.BatchNormalization()(x)
        x = L.MaxPooling2D(3, strides=2, padding="same")(x)
        x = L.add([x, res])
    x = L.Conv2D(n_out, 3, padding="same")(x)
    x = L.GlobalAveragePooling2D()(x)
    out = L.Activation("softmax", name="predictions")(x)
    return keras.Model(inp, out, name="mini_XCEPTION")


@pytest.fixture(scope="module")
def fer():
    if not FER_NPZ.exists():
        pytest.skip(f"FER2013 not found at {FER_NPZ}")
    return load_dataset(FER_NPZ)


@pytest.fixture(scope="module")
def trained(fer, tmp_path_factory):
    """A small CNN fitted briefly on class-balanced real faces, so its predictions vary."""
    x, y = fer.split("Training")
    rng = np.random.default_rng(0)
    idx = rng.permutation(np.concatenate([rng.choice(np.flatnonzero(y == c), 400, replace=False) for c in range(7)]))
    keras.utils.set_random_seed(7)
    L = keras.layers
    inp = keras.Input((48, 48, 1))
    h = L.ReLU()(L.BatchNormalization()(L.Conv2D(8, 3, strides=2, use_bias=False)(inp)))
    h = L.SeparableConv2D(16, 3, strides=2, activation="relu")(h)
    h = L.Dense(7, activation="softmax")(L.Flatten()(L.MaxPooling2D(2)(h)))
    model = keras.Model(inp, h)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    model.fit(x[idx][..., None].astype(np.float32) / 255.0, y[idx], epochs=4, batch_size=64, verbose=0)
    path = tmp_path_factory.mktemp("keras") / "tiny.keras"
    model.save(path)
    return path


@needs_fer
def test_int8_export_agrees_with_float(trained, fer, tmp_path):
    out = tmp_path / "emo.tflite"
    res = export_model(trained, out, input_range=(0.0, 1.0), representative_data=FER_NPZ, representative_size=300,
                       eval_limit=600, crop_margin=0.1, log=QUIET)
    checked = check_int8(out)
    assert checked["input"]["dtype"] == np.int8 and checked["output"]["dtype"] == np.int8
    assert not any(op.startswith("Flex") for op in checked["ops"])
    info = read_model_info(out)  # sha256 matches
    assert info.input.range == (0.0, 1.0) and info.input.crop_margin == 0.1 and info.input.dtype == "int8"
    assert info.quantization["input_zero_point"] == -128
    m = info.metrics
    assert m["split"] == "PrivateTest" and m["n"] == 600
    assert info.made_by["representative"]["n"] == 300 and info.made_by["source_model"] == "tiny.keras"
    # recompute the metadata numbers directly
    x, y = fer.split("PrivateTest")
    x, y = x[:600], y[:600]
    pf = KerasPredictor(trained, (0.0, 1.0)).predict(x)
    pi = TFLitePredictor(out).predict(x)
    assert len(np.unique(pf.argmax(1))) >= 3  # a real classifier, not a constant
    agree = float(np.mean(pf.argmax(1) == pi.argmax(1)))
    assert agree >= 0.95 and m["agreement"] == pytest.approx(agree)
    assert m["accuracy"] == pytest.approx(float(np.mean(pi.argmax(1) == y)))
    assert m["float_accuracy"] == pytest.approx(float(np.mean(pf.argmax(1) == y)))
    # the edge classifier gives the same probabilities as the tool's own runner
    with EmotionClassifier(out) as clf:
        for i in range(5):
            np.testing.assert_allclose(clf.classify_face(x[i]).probs, pi[i], atol=1e-6)
    assert res.metadata == out.with_suffix(".json")


@pytest.mark.slow
@needs_fer
def test_mini_xception_64_minus1_1_runs_on_the_edge(tmp_path):
    src = tmp_path / "mini_xception.h5"
    mini_xception().save(src)  # the legacy format these models are usually shared in
    out = tmp_path / "mx.tflite"
    rc = main(["export", str(src), "--input-range", "-1,1", "--representative-data", str(FER_NPZ),
               "--representative-size", "300", "--eval-limit", "100", "--out", str(out)])
    assert rc == 0
    info = json.loads(out.with_suffix(".json").read_text())
    assert info["input"]["height"] == info["input"]["width"] == 64 and info["input"]["range"] == [-1.0, 1.0]
    assert info["made_by"]["softmax_added"] is False
    # run it the way the edge does: Haar box on a camera-sized frame, crop, classify
    gray = cv2.imread(str(next((FIX / "faces").glob("*happy*.png"))), cv2.IMREAD_GRAYSCALE)
    from edge.detect import FaceDetector
    from edge.config import DetectConfig

    boxes = FaceDetector(DetectConfig()).detect(gray)
    assert boxes
    with EmotionClassifier(out) as clf:
        pred = clf.classify(gray, boxes[0])
    assert pred.probs.shape == (7,) and pred.probs.sum() == pytest.approx(1.0, abs=1e-5)
    ref = KerasPredictor(src, (-1.0, 1.0)).model.predict_on_batch(
        KerasPredictor(src, (-1.0, 1.0)).inputs(cv2.resize(gray[boxes[0][1]:boxes[0][1] + boxes[0][3],
                                                                   boxes[0][0]:boxes[0][0] + boxes[0][2]], (64, 64),
                                                         interpolation=cv2.INTER_AREA)[None]))[0]
    assert np.abs(pred.probs - ref).max() < 0.1  # int8 close to float on a real face
    # and the edge's own loop runs it on the committed face photos
    r = subprocess.run([sys.executable, "-m", "edge.cli", "run", "--source", str(FIX / "faces"), "--model", str(out),
                        "--led", "none", "--db", str(tmp_path / "events.db"), "--max-frames", "7"],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr[-500:]
    seen = re.search(r"faces seen (\d+)", r.stdout + r.stderr)
    assert seen and int(seen.group(1)) > 0


def test_export_without_fer_on_the_fixture_folder(tmp_path):
    """The whole path (representative faces, convert, check, evaluate, metadata) on the 21 committed faces."""
    src = tmp_path / "logits.keras"
    _tiny(softmax=False).save(src)
    out = tmp_path / "sub" / "small.tflite"
    said: list[str] = []
    res = export_model(src, out, input_range=(0.0, 255.0), representative_data=FOLDER, representative_size=10,
                       min_representative=5, log=said.append)
    said_all = "\n".join(said)
    assert "value ranges from 7 representative Training faces of folder (asked for 10; the Training split has only 7)" in said_all
    assert "evaluating float vs int8 on 7 PrivateTest faces" in said_all
    assert re.search(r"^\[ *\d+\.\ds\] converting", said_all, re.M)  # each step with the elapsed time
    assert said[-1].endswith(f"next: emotion-edge run --model {out}   (or: emotion-export deploy {out} pi@HOST --dry-run)")
    info = read_model_info(out)
    assert info.made_by["softmax_added"] is True  # logits get a Softmax so the edge sees probabilities
    assert info.metrics["n"] == 7 and 0.0 <= info.metrics["agreement"] <= 1.0
    assert info.input.range == (0.0, 255.0)
    # issue 34: what a face costs, measured on the exported model, one LiteRT thread of this CPU
    assert info.cost.threads == 1 and 0 < info.cost.ms_per_face < 1000 and info.cost.invocations == 300
    assert info.cost.cpu == cpu_name() and info.cost.measured == dt.date.today().isoformat()
    assert re.search(r"^\[ *\d+\.\ds\] cost: [\d.]+ ms per face on 1 thread of ", said_all, re.M)
    with EmotionClassifier(res.tflite) as clf:
        p = clf.classify_face(load_dataset(FOLDER).images[0])
        # issue 30 item 9: the share of faces given the most-predicted class, which deploy checks
        top = np.bincount([clf.classify_face(im).probs.argmax() for im in load_dataset(FOLDER).split("PrivateTest")[0]],
                          minlength=7)
    assert info.metrics["top_class"] == info.labels[int(top.argmax())]
    assert info.metrics["top_class_share"] == pytest.approx(top.max() / 7)
    assert p.probs.sum() == pytest.approx(1.0, abs=1e-5)
    # int8 fidelity on the fixture faces, computed here: the Keras logits + softmax on the float input
    # against the edge's int8 answer (this runs without ../shared, unlike the FER2013 fidelity tests)
    from edge.preprocess import resize_face, to_float

    x, _ = load_dataset(FOLDER).split("PrivateTest")
    keras_model = keras.models.load_model(src, compile=False)
    logits = keras_model.predict(np.stack([to_float(resize_face(im, 48, 48), (0.0, 255.0)) for im in x])[..., None],
                                 verbose=0)
    pf = np.exp(logits - logits.max(1, keepdims=True))
    pf /= pf.sum(1, keepdims=True)
    with EmotionClassifier(res.tflite) as clf:
        pq = np.stack([clf.classify_face(im).probs for im in x])
    # 7 representative faces only: a few outputs are off by up to ~0.08, the typical one by a step (1/256)
    assert np.abs(pf - pq).max() < 0.15 and np.abs(pf - pq).mean() < 0.015, np.abs(pf - pq)
    assert np.corrcoef(pf.ravel(), pq.ravel())[0, 1] > 0.95, "int8 must follow the float model's answers"
    assert info.metrics["agreement"] == pytest.approx(float(np.mean(pf.argmax(1) == pq.argmax(1))))


def test_refusals(tmp_path):
    rgb = tmp_path / "rgb.keras"
    _tiny(channels=3).save(rgb)
    with pytest.raises(ModelError, match=r"input shape \[None, 48, 48, 3\] is not \(H, W, 1\)"):
        export_model(rgb, tmp_path / "x.tflite", input_range=(0, 1), representative_data=FOLDER, representative_size=7,
                     min_representative=5, log=QUIET)
    five = tmp_path / "five.keras"
    _tiny(n_out=5).save(five)
    with pytest.raises(ModelError, match="5 outputs but 7 labels"):
        export_model(five, tmp_path / "x.tflite", input_range=(0, 1), representative_data=FOLDER, representative_size=7,
                     min_representative=5, log=QUIET)
    with pytest.raises(DataError, match="only 7 Training faces"):
        export_model(five, tmp_path / "x.tflite", input_range=(0, 1), labels=tuple("abcde"),
                     representative_data=FOLDER, log=QUIET)
    with pytest.raises(ModelError, match="input is float32, not int8"):
        check_int8(FIX / "models" / "tiny_float32.tflite")
    with pytest.raises(ModelError, match="input is uint8, not int8"):
        check_int8(FIX / "models" / "tiny_uint8.tflite")
    (tmp_path / "junk.h5").write_bytes(b"junk")
    with pytest.raises(ModelError, match="junk.h5: not a readable Keras model"):
        load_keras(tmp_path / "junk.h5")
    (tmp_path / "junk.keras").write_bytes(b"junk")  # issue 11 row 14: Keras itself says "File not found"
    with pytest.raises(ModelError, match=r"junk.keras: not a readable Keras model \(a .keras file is a zip"):
        load_keras(tmp_path / "junk.keras")
    assert not list(tmp_path.glob("*.tflite"))


def test_cli_export_error_is_one_line(tmp_path, capsys):
    src = tmp_path / "m.keras"
    _tiny().save(src)
    rc = main(["export", str(src), "--input-range", "0,1", "--representative-data", str(FOLDER),
               "--out", str(tmp_path / "m.tflite")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err[-1].startswith("emotion-export: error: ") and "only 7 Training faces" in err[-1]


def test_failed_export_leaves_no_model_behind(tmp_path):
    """Issue 12 (1): labels matching none of the data's classes used to leave a .tflite + empty .json that
    run/check/deploy accepted. Now both appear only after everything succeeded, and the error says why."""
    src = tmp_path / "m.keras"
    _tiny().save(src)
    out = tmp_path / "m.tflite"
    old = (b"the working model from before", b'{"old": true}')
    out.write_bytes(old[0])
    out.with_suffix(".json").write_bytes(old[1])
    with pytest.raises(DataError) as e:
        export_model(src, out, input_range=(0.0, 1.0), labels=tuple("abcdefg"), representative_data=FOLDER,
                     representative_size=7, min_representative=5, log=QUIET)
    msg = str(e.value)
    assert "none of the model's labels (a,b,c,d,e,f,g) names a class of folder" in msg and "--labels" in msg
    assert (out.read_bytes(), out.with_suffix(".json").read_bytes()) == old  # untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.keras", "m.tflite"]  # no temporary files
    # without an earlier model, nothing at all appears
    out.unlink()
    out.with_suffix(".json").unlink()
    with pytest.raises(DataError, match="no PrivateTest faces to evaluate the int8 model on"):
        _no_eval_split(src, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.keras"]


def _no_eval_split(src: Path, out: Path) -> None:
    """Export with evaluation data that has no PrivateTest split (only train/ and val/)."""
    import shutil

    data = out.parent / "noprivate"
    for part, to in (("train", "train"), ("test", "val")):
        shutil.copytree(FOLDER / part, data / to)
    try:
        export_model(src, out, input_range=(0.0, 1.0), representative_data=data, representative_size=7, min_representative=5,
                     log=QUIET)
    finally:
        shutil.rmtree(data)


def test_input_range_is_required_or_read_from_the_run_folder(tmp_path, capsys):
    """Issue 12 (6): export silently assumed 0,1 while evaluate refused; a Keras file records no range."""
    from edge.errors import ConfigError
    from model_export.evaluate import evaluate

    src = tmp_path / "m.keras"
    _tiny(n_out=6, softmax=False).save(src)
    rc = main(["export", str(src), "--representative-data", str(FOLDER), "--out", str(tmp_path / "m.tflite")])
    err = capsys.readouterr().err
    assert rc == 2 and "does not record the input range" in err and "--input-range 0,1 | -1,1 | 0,255" in err
    with pytest.raises(ConfigError, match="--input-range"):
        evaluate(src, FOLDER, write_report=False)
    assert not list(tmp_path.glob("*.tflite")) and not list(tmp_path.glob("*.json"))
    # a model in the run folder of `emotion-export train`: its state.json says range and labels
    run = tmp_path / "run"
    run.mkdir()
    (run / "best.keras").write_bytes(src.read_bytes())
    labels = ["angry", "fear", "happy", "sad", "surprise", "neutral"]
    (run / "state.json").write_text(json.dumps({"epoch": 1, "args": {"epochs": 1}, "labels": labels,
                                                "input_range": [-1.0, 1.0]}))
    res = export_model(run / "best.keras", tmp_path / "r.tflite", representative_data=FOLDER, representative_size=7,
                       min_representative=5, log=QUIET)
    assert res.info.labels == tuple(labels) and res.info.input.range == (-1.0, 1.0)
    assert res.info.metrics["n"] == 6  # disgust's face left out: the model has no such class
    assert "no label for disgust (1)" in res.info.metrics["dropped"]
    got = evaluate(run / "best.keras", FOLDER, write_report=False)
    assert got.metrics.n == 6 and got.dropped == 1


def test_json_only_writes_the_contract_for_an_int8_tflite(tmp_path, capsys):
    model = tmp_path / "theirs.tflite"
    model.write_bytes((FIX / "models" / "tiny_int8.tflite").read_bytes())
    rc = main(["export", str(model), "--json-only", "--input-range", "0,1", "--eval-data", str(FOLDER)])
    err = capsys.readouterr().err
    assert rc == 0, err
    info = read_model_info(model)  # sha256 matches, contract parses
    assert info.labels == tuple(FER_LABELS) and info.input.range == (0.0, 1.0) and info.metrics["n"] == 7
    assert info.made_by["json_only"] is True and "next: emotion-edge run --model" in err
    assert info.cost.threads == 1 and info.cost.ms_per_face > 0 and "cost: " in err
    assert main(["export", str(model), "--json-only", "--input-range", "0,1", "--cost-runs", "0"]) == 0
    assert read_model_info(model).cost is None and "--cost-runs 0: the metadata will have no cost" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # fewer runs than blocks would give no median
        main(["export", str(model), "--json-only", "--input-range", "0,1", "--cost-runs", "3"])
    with EmotionClassifier(model) as clf:
        assert clf.classify_face(load_dataset(FOLDER).images[0]).probs.sum() == pytest.approx(1.0, abs=1e-5)
    # FER+-style names: matched to the data's classes (all 7 faces count) and told about the LED colours
    assert main(["export", str(model), "--json-only", "--input-range", "0,1", "--eval-data", str(FOLDER),
                 "--labels", "anger,disgust,fear,happiness,sadness,surprise,neutral"]) == 0
    err = capsys.readouterr().err
    assert "note: anger is FER angry, happiness is FER happy, sadness is FER sad" in err
    assert read_model_info(model).metrics["n"] == 7
    float_model = tmp_path / "float.tflite"
    float_model.write_bytes((FIX / "models" / "tiny_float32.tflite").read_bytes())
    assert main(["export", str(float_model), "--json-only", "--input-range", "0,1"]) == 2
    assert "not int8" in capsys.readouterr().err and not float_model.with_suffix(".json").exists()


def test_model_file_problems_have_their_own_messages(tmp_path):
    saved = tmp_path / "saved"
    saved.mkdir()
    (saved / "saved_model.pb").write_bytes(b"x")
    with pytest.raises(ModelError, match="a TensorFlow SavedModel folder, not a Keras file.*save it as .keras"):
        load_keras(saved)
    with pytest.raises(ModelError, match="missing.keras: no such model file"):
        load_keras(tmp_path / "missing.keras")
    good = tmp_path / "m.keras"
    _tiny().save(good)
    bad = tmp_path / "cut.keras"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])  # a truncated download: still a zip start
    with pytest.raises(ModelError, match="cut.keras: not a readable Keras model"):
        load_keras(bad)
    (tmp_path / "text.keras").write_text("<html>404</html>")
    with pytest.raises(ModelError, match="text.keras: not a readable Keras model .*zip archive"):
        load_keras(tmp_path / "text.keras")


def test_unbuilt_model_is_refused_clearly():
    with pytest.raises(ModelError, match="no defined input; build it with keras.Input"):
        keras_input_hw(keras.Sequential([keras.layers.Dense(3)]), "seq")


def test_h5_legacy_model_loads(tmp_path):
    p = tmp_path / "legacy.h5"
    _tiny(size=40).save(p)
    assert keras_input_hw(load_keras(p), str(p)) == (40, 40)
