"""emotion-export evaluate: numpy metrics checked against direct computation, on real TFLite models."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.classify import EmotionClassifier
from model_export.cli import main
from model_export.data import load_dataset
from edge.contract import FER_LABELS
from model_export.evaluate import agreement, map_labels, metrics

ROOT = Path(__file__).resolve().parents[1]
FIX = ROOT / "tests" / "fixtures"
FOLDER = FIX / "export" / "folder"
INT8 = FIX / "models" / "tiny_int8.tflite"
FLOAT = FIX / "models" / "tiny_float32.tflite"


def _direct(y: np.ndarray, probs: np.ndarray, k: int) -> dict:
    """Plain-loop reference implementation of the reported numbers."""
    pred = [int(np.argmax(p)) for p in probs]
    n = len(y)
    acc = sum(int(a == b) for a, b in zip(y, pred)) / n
    f1s = []
    for c in range(k):
        tp = sum(1 for a, b in zip(y, pred) if a == c and b == c)
        fp = sum(1 for a, b in zip(y, pred) if a != c and b == c)
        fn = sum(1 for a, b in zip(y, pred) if a == c and b != c)
        if tp + fp + fn == 0:
            continue  # class absent from truth and predictions
        prec = tp / (tp + fp) if tp + fp else 0.0
        rec = tp / (tp + fn) if tp + fn else 0.0
        f1s.append(2 * prec * rec / (prec + rec) if prec + rec else 0.0)
    ll = -sum(np.log(max(p[t] / p.sum(), 1e-7)) for p, t in zip(probs, y)) / n
    top2 = sum(1 for p, t in zip(probs, y) if t in sorted(range(k), key=lambda j: -p[j])[:2]) / n
    return {"accuracy": acc, "macro_f1": sum(f1s) / len(f1s), "log_loss": ll, "top2_accuracy": top2}


def test_metrics_match_direct_computation():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 6, size=300)  # class 6 never occurs in the truth
    probs = rng.dirichlet(np.ones(7), size=300).astype(np.float32)
    probs[y == 2] += np.eye(7, dtype=np.float32)[2]  # some signal
    m = metrics(y, probs, tuple("abcdefg"))
    ref = _direct(y, probs, 7)
    for key, v in ref.items():
        assert getattr(m, key) == pytest.approx(v, rel=1e-6), key
    cm = np.array(m.confusion["matrix"])
    assert cm.sum() == 300 and cm[2, 2] == (y == 2).sum()
    assert m.per_class["c"]["recall"] == pytest.approx(1.0)
    assert m.per_class["g"]["support"] == 0


def test_label_mapping_and_agreement():
    y, keep = map_labels(np.array([0, 3, 6, 1]), ("happy", "sad", "angry"))
    assert y.tolist() == [2, 0, -1, -1] and keep.tolist() == [True, True, False, False]
    a = np.eye(3)[[0, 1, 2, 2]]
    b = np.eye(3)[[0, 1, 1, 2]]
    assert agreement(a, b) == 0.75


def _edge_probs(model: Path, images: np.ndarray) -> np.ndarray:
    """Predictions through the edge's own classifier, face by face."""
    with EmotionClassifier(model) as clf:
        return np.stack([clf.classify_face(im).probs for im in images])


def test_evaluate_json_equals_direct_computation(tmp_path, capsys):
    rc = main(["evaluate", "--model", str(INT8), "--data", str(FOLDER), "--split", "PublicTest", "--json",
               "--report-dir", str(tmp_path)])
    assert rc == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1
    got = json.loads(out[0])
    x, y = load_dataset(FOLDER).split("PublicTest")
    ref = _direct(y, _edge_probs(INT8, x), 7)
    assert got["split"] == "PublicTest" and got["n"] == len(y) == 7
    for key, v in ref.items():
        assert got[key] == pytest.approx(v, rel=1e-5, abs=1e-6), key
    # reports next to --report-dir, named after the split (another split does not overwrite them)
    md = (tmp_path / "tiny_int8.report.PublicTest.md").read_text()
    assert "PublicTest" in md and "| angry |" in md
    png = cv2.imread(str(tmp_path / "tiny_int8.confusion.PublicTest.png"))
    assert png is not None and png.shape[0] > 100
    cm = json.loads((tmp_path / "tiny_int8.confusion.PublicTest.json").read_text())
    assert np.array(cm["matrix"]).sum() == 7


def test_compare_float_and_int8(tmp_path, capsys):
    """Two models that disagree (the bundled one and the tiny random one, which says 'neutral' to
    everything): agreement and gap are checked against numbers computed here from each model's answers."""
    bundled = ROOT / "edge" / "models" / "emotion.tflite"
    rc = main(["evaluate", "--model", str(bundled), "--compare", str(INT8), "--data", str(FOLDER),
               "--split", "Training", "--json", "--latency", "--latency-n", "5", "--no-report"])
    assert rc == 0
    got = json.loads(capsys.readouterr().out)
    x, y = load_dataset(FOLDER).split("Training")
    pb, pi = _edge_probs(bundled, x), _edge_probs(INT8, x)
    agree = float(np.mean(pb.argmax(1) == pi.argmax(1)))
    assert 0.0 < agree < 1.0, "the fixture must make the two models disagree on some faces"
    c = got["compare"]
    assert c["agreement"] == pytest.approx(agree)
    acc_b, acc_i = float(np.mean(pb.argmax(1) == y)), float(np.mean(pi.argmax(1) == y))
    assert got["accuracy"] == pytest.approx(acc_b)
    assert c["accuracy_gap"] == pytest.approx(acc_b - acc_i)
    assert set(got["latency"]) == {"tflite:emotion.tflite", "tflite:tiny_int8.tflite"}
    assert all(v["n"] == 5 and 0 < v["p50_ms"] <= v["p95_ms"] for v in got["latency"].values())
    assert "report" not in got



def test_degrade_gives_each_face_its_own_fixed_damage():
    """Paired comparisons need every model shown the same damaged faces, and --limit must not change a
    face's damage; the damage must be real (most faces changed) and keep the image's form."""
    from model_export.degrade import degrade

    x, _ = load_dataset(FOLDER).split("Training")
    d = degrade(x, 0)
    assert d.shape == x.shape and d.dtype == np.uint8
    assert np.array_equal(degrade(x, 0), d) and np.array_equal(degrade(x[:3], 0), d[:3])
    changed = np.abs(d.astype(int) - x.astype(int)).mean(axis=(1, 2)) > 2
    assert changed.mean() > 0.7, changed
    assert not np.array_equal(degrade(x, 1), d)


def test_evaluate_degrade_scores_the_damaged_faces_and_pairs_the_compare(tmp_path, capsys):
    """--degrade scores the faces degrade() gives (checked face by face through the edge classifier), keeps
    its report apart from the clean one, and --compare says which faces only one model reads right."""
    from model_export.degrade import degrade

    bundled = ROOT / "edge" / "models" / "emotion.tflite"
    rc = main(["evaluate", "--model", str(bundled), "--compare", str(INT8), "--data", str(FOLDER), "--split",
               "Training", "--degrade", "3", "--json", "--report-dir", str(tmp_path)])
    assert rc == 0
    got = json.loads(capsys.readouterr().out)
    x, y = load_dataset(FOLDER).split("Training")
    damaged = degrade(x, 3)
    pb, pi = _edge_probs(bundled, damaged), _edge_probs(INT8, damaged)
    assert got["degrade_seed"] == 3
    assert got["accuracy"] == pytest.approx(float(np.mean(pb.argmax(1) == y)))
    assert got["accuracy"] != pytest.approx(float(np.mean(_edge_probs(bundled, x).argmax(1) == y))), \
        "the fixture must read differently once damaged, or this test could not tell"
    right_b, right_i = pb.argmax(1) == y, pi.argmax(1) == y
    c = got["compare"]
    assert (c["only_first"], c["only_second"]) == (int((right_b & ~right_i).sum()), int((right_i & ~right_b).sum()))
    assert 0 < c["mcnemar_p"] <= 1
    md = (tmp_path / "emotion.report.Training.degraded.md").read_text()
    assert "seed 3" in md and f"only this one is right on {c['only_first']}" in md
    assert not (tmp_path / "emotion.report.Training.md").exists()


def test_evaluate_errors_are_one_line_exit_2(tmp_path):
    def cli(*args):
        return subprocess.run([sys.executable, "-m", "model_export.cli", "evaluate", *args],
                              capture_output=True, text=True, cwd=ROOT, timeout=60)

    keras_file = tmp_path / "m.keras"
    keras_file.write_bytes(b"")
    r = cli("--model", str(keras_file), "--data", str(FOLDER), "--json")
    assert r.returncode == 2 and r.stdout == ""
    assert _one_error_line(r.stderr) and "--input-range" in r.stderr
    r = cli("--model", str(INT8), "--data", str(tmp_path / "nope.csv"))
    assert r.returncode == 2 and "nope.csv: no such file" in r.stderr and _one_error_line(r.stderr)
    r = cli("--model", str(INT8), "--data", str(FOLDER), "--input-range", "0,2")
    assert r.returncode == 2 and "--input-range '0,2': must be one of" in r.stderr


def _one_error_line(stderr: str) -> bool:
    """The error is the last line and one line; before it only the timed progress lines ('[  0.1s] ...')."""
    lines = stderr.strip().splitlines()
    return lines[-1].startswith("emotion-export: error: ") and all(line.lstrip().startswith("[") for line in lines[:-1])


def _relabelled(tmp_path: Path, labels: list[str]) -> Path:
    """The tiny int8 model with other label names in its metadata (the sha256 is the .tflite's)."""
    model = tmp_path / "own.tflite"
    model.write_bytes(INT8.read_bytes())
    meta = json.loads(INT8.with_suffix(".json").read_text())
    meta["labels"] = labels
    model.with_suffix(".json").write_text(json.dumps(meta))
    return model


def test_label_synonyms_are_mapped_and_drops_are_told(tmp_path, capsys):
    """Issue 12 (4): a model saying anger/happiness/sadness lost those faces silently."""
    y, keep = map_labels(np.arange(7), ("anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral"))
    assert y.tolist() == list(range(7)) and keep.all()
    model = _relabelled(tmp_path, ["anger", "disgust", "fear", "happiness", "sadness", "surprise", "contempt"])
    rc = main(["evaluate", "--model", str(model), "--data", str(FOLDER), "--split", "PublicTest", "--json",
               "--no-report"])
    captured = capsys.readouterr()
    got = json.loads(captured.out)
    assert rc == 0 and got["n"] == 6 and got["dropped"] == 1  # only neutral, which the model lacks
    assert "left out 1 of 7 faces: the model has no label for neutral (1)" in captured.err
    # the same numbers as the edge classifier on the faces it can name
    x, y_fer = load_dataset(FOLDER).split("PublicTest")
    keep = y_fer != 6
    ref = _direct(y_fer[keep], _edge_probs(model, x[keep]), 7)
    assert got["accuracy"] == pytest.approx(ref["accuracy"])


def test_no_matching_label_says_why(tmp_path):
    model = _relabelled(tmp_path, list("abcdefg"))
    r = subprocess.run([sys.executable, "-m", "model_export.cli", "evaluate", "--model", str(model), "--data",
                        str(FOLDER), "--no-report"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 2 and _one_error_line(r.stderr)
    assert "none of the model's labels (a,b,c,d,e,f,g) names a class of folder" in r.stderr
    assert "pass --labels" in r.stderr


def test_one_class_warning_and_confusion_title(tmp_path):
    from model_export.evaluate import one_class_warning

    probs = np.tile(np.eye(7, dtype=np.float32)[3], (20, 1))
    assert "predicts happy for 100% of faces" in one_class_warning(probs, FER_LABELS)
    probs[:3] = np.eye(7, dtype=np.float32)[0]
    assert one_class_warning(probs, FER_LABELS) == ""  # 85 %: a skewed model, not a broken one
    from model_export.evaluate import evaluate

    titles = []
    import model_export.evaluate as ev

    orig = ev.plot_confusion
    ev.plot_confusion = lambda cm, labels, title, png: titles.append(title) or orig(cm, labels, title, png)
    try:
        evaluate(INT8, FOLDER, "PrivateTest", report_dir=tmp_path)
    finally:
        ev.plot_confusion = orig
    assert titles == [f"tiny_int8.tflite on folder PrivateTest, n=7 (accuracy {titles[0].split()[-1]}"]
    assert "n=7" in titles[0] and (tmp_path / "tiny_int8.report.PrivateTest.md").is_file()


def test_quiet_stderr_drops_only_tensorflow_noise(capfd):
    import os

    from model_export.quiet import quiet_stderr

    with quiet_stderr():
        os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n")
        os.write(2, b"I0000 00:00:1 port.cc:153] oneDNN custom operations are on. You may see ...\n")
        os.write(2, b"F0000 converter.cc:1] something real went wrong\n")
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "F0000 converter.cc:1] something real went wrong\nafter\n"


def test_latency_reports_the_threads_keras_really_used(tmp_path):
    """Keras can be held to one thread only before TensorFlow starts: the figure says what it ran on."""
    import keras

    from model_export.evaluate import latency
    from model_export.predictors import open_predictor

    inp = keras.Input((48, 48, 1))
    m = keras.Model(inp, keras.layers.Dense(7, activation="softmax")(keras.layers.Flatten()(inp)))
    m.save(tmp_path / "m.keras")
    x, _ = load_dataset(FOLDER).split("Training")
    lat_k = latency(open_predictor(tmp_path / "m.keras", (0.0, 1.0)), x[:3])
    import tensorflow as tf

    n = tf.config.threading.get_intra_op_parallelism_threads()
    assert lat_k.threads == (n if n > 0 else len(os.sched_getaffinity(0)))
    assert latency(open_predictor(INT8), x[:3]).threads == 1


def test_cli_latency_holds_keras_to_one_thread(tmp_path):
    """`evaluate --latency` sets one TensorFlow thread before TensorFlow starts, so the Keras row is
    timed on one thread like LiteRT's, and the report says 1 (not the machine's core count)."""
    import keras

    inp = keras.Input((48, 48, 1))
    keras.Model(inp, keras.layers.Dense(7, activation="softmax")(keras.layers.Flatten()(inp))).save(tmp_path / "m.keras")
    r = subprocess.run([sys.executable, "-m", "model_export.cli", "evaluate", "--model", str(tmp_path / "m.keras"),
                        "--input-range", "0,1", "--data", str(FOLDER), "--latency", "--latency-n", "3", "--json",
                        "--no-report"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr[-500:]
    assert json.loads(r.stdout)["latency"]["keras:m.keras"]["threads"] == 1


def test_reports_are_written_atomically_and_never_through_a_planted_link(tmp_path, capsys):
    """Issue 29 P: a symlink named like a report (-> precious.txt) was written through."""
    precious = tmp_path / "precious.txt"
    precious.write_text("keep me")
    reports = tmp_path / "reports"
    reports.mkdir()
    link = reports / "tiny_int8.report.PublicTest.md"
    link.symlink_to(precious)
    rc = main(["evaluate", "--model", str(INT8), "--data", str(FOLDER), "--split", "PublicTest",
               "--report-dir", str(reports)])
    err = capsys.readouterr().err
    assert rc == 2 and precious.read_text() == "keep me" and link.is_symlink()
    assert f"{link}: cannot write the report (a symbolic link is in the way; not replacing it)" in err
    assert not [p for p in reports.iterdir() if p.name.endswith(".tmp")]  # no temporary left
    link.unlink()  # the same call writes its three files once the way is clear
    assert main(["evaluate", "--model", str(INT8), "--data", str(FOLDER), "--split", "PublicTest",
                 "--report-dir", str(reports)]) == 0
    assert sorted(p.name for p in reports.iterdir()) == ["tiny_int8.confusion.PublicTest.json",
                                                        "tiny_int8.confusion.PublicTest.png",
                                                        "tiny_int8.report.PublicTest.md"]


def test_error_lines_escape_what_a_path_or_file_can_smuggle_into_the_terminal(tmp_path, capsys):
    """Issue 29 H: emotion-export printed paths raw in its error lines (an escape sequence in a file name
    could recolour or rewrite the terminal)."""
    evil = tmp_path / "\x1b[2J\x1b[32mdone\x1b[0m.csv"
    assert main(["evaluate", "--model", str(INT8), "--data", str(evil)]) == 2
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\\x1b[2J\\x1b[32mdone\\x1b[0m.csv: no such file" in err


def test_evaluate_tells_its_steps_and_what_to_do_next(tmp_path, capsys, monkeypatch):
    """Issue 30 item 11: evaluate was silent for 70 s and ended without a next step."""
    import re

    assert main(["evaluate", "--model", str(INT8), "--data", str(FOLDER), "--no-report"]) == 0
    err = capsys.readouterr().err
    steps = re.findall(r"^\[ *\d+\.\ds\] (.*)$", err, re.M)
    assert steps == [f"loading the PrivateTest faces of {FOLDER}", f"loading {INT8}",
                     "predicting 7 PrivateTest faces with tiny_int8.tflite (tflite)"]
    assert err.strip().splitlines()[-1] == f"next: emotion-export deploy {INT8} pi@HOST --dry-run   (then without --dry-run to copy it to the Pi)"
    from model_export.evaluate import next_command

    monkeypatch.chdir(tmp_path)
    assert next_command("run/best.keras", "faces/") == \
        "next: emotion-export export run/best.keras --representative-data faces/ --out models/emotion.tflite"
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "emotion.tflite").write_bytes(b"an earlier model")
    assert next_command("run/best.keras", "faces/").endswith(
        "; models/emotion.tflite exists and this replaces it: choose another --out to keep it")


def test_a_model_of_ones_own_labels_is_evaluated_on_the_matching_folders(tmp_path, capsys):
    """Issue 30 item 7: a model with labels smile,frown,calm failed with 'no faces to evaluate'."""
    from tests.test_export_data import own_label_folder

    data = own_label_folder(tmp_path / "mine")
    model = _relabelled(tmp_path, ["angry", "disgust", "fear", "smile", "frown", "surprised", "calm"])
    assert main(["evaluate", "--model", str(model), "--data", str(data), "--json", "--no-report"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["n"] == 4 and got["dropped"] == 0  # one test face per folder, each named by a label
    x, _ = load_dataset(data).split("PrivateTest")
    names = load_dataset(data).names
    truth = np.array([["angry", "disgust", "fear", "smile", "frown", "surprise", "calm"].index(names[i])
                      for i in load_dataset(data).split("PrivateTest")[1]])
    assert got["accuracy"] == pytest.approx(float(np.mean(_edge_probs(model, x).argmax(1) == truth)))
    # a model whose labels no folder has: the error says what to pass
    other = _relabelled(tmp_path, list("abcdefg"))
    assert main(["evaluate", "--model", str(other), "--data", str(data), "--no-report"]) == 2
    assert "a class folder per label (train/smile, test/smile, ...)" in capsys.readouterr().err


def test_a_compared_model_of_the_same_file_name_is_named_by_its_path():
    """Run folders all export emotion.tflite: 'compared with `emotion.tflite`' would not say which."""
    from model_export.evaluate import Comparison, Evaluation, markdown

    m = metrics(np.array([0, 1]), np.eye(7, dtype=np.float32)[[0, 1]], FER_LABELS)
    c = Comparison(model="edge/models/emotion.tflite", kind="tflite", accuracy=0.5, macro_f1=0.5, log_loss=1.0,
                   accuracy_gap=0.5, agreement=0.5, only_first=1, only_second=0, mcnemar_p=1.0)
    ev = Evaluation(model="runs/a/emotion.tflite", kind="tflite", data="d", split="PrivateTest", dropped=0,
                    dropped_note="", metrics=m, compare=c)
    assert "Compared with `edge/models/emotion.tflite`" in markdown(ev)
    c.model = "runs/b/other.tflite"
    assert "Compared with `other.tflite`" in markdown(ev)
