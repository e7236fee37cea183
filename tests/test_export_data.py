"""model_export.data + the int8 representative set: every input format, its splits, and a clear error per malformed file."""
from __future__ import annotations

import csv
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.errors import DataError
from model_export.inputs import prepare_float
from model_export.representative import representative_faces, stratified_indices
from model_export.data import FER_LABELS, FERPLUS_COLUMNS, load_dataset

FIX = Path(__file__).parent / "fixtures" / "export"
CSV = FIX / "fer2013_tiny.csv"
FOLDER = FIX / "folder"
from .conftest import FER_NPZ  # noqa: E402
if not FER_NPZ.exists():
    FER_NPZ = Path(__file__).resolve().parents[2] / "shared" / "data" / "fer2013" / "fer2013.npz"


def _rows() -> list[list[str]]:
    with open(CSV, newline="") as f:
        return list(csv.reader(f))


def _write(path: Path, rows: list[list[str]]) -> Path:
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(rows)
    return path


# ------------------------------------------------------------------ CSV
def test_csv_loads_images_labels_and_splits():
    ds = load_dataset(CSV)
    rows = _rows()[1:]
    assert ds.images.shape == (len(rows), 48, 48) and ds.images.dtype == np.uint8
    assert ds.counts() == {"Training": 7, "PublicTest": 1, "PrivateTest": 1}
    assert ds.labels.tolist() == [int(r[0]) for r in rows]
    assert ds.images[3].ravel().tolist() == [int(v) for v in rows[3][1].split()]
    x, y = ds.split("PrivateTest")
    assert len(x) == 1 and y[0] == int(rows[-1][0])
    assert ds.votes is None


@pytest.mark.skipif(not FER_NPZ.exists(), reason=f"FER2013 not found at {FER_NPZ}")
def test_csv_pixels_equal_the_npz_rows():
    z = np.load(FER_NPZ)
    images, labels = z["images"], z["labels"]  # each npz access decompresses: read once
    ds = load_dataset(CSV)
    # fixture rows were taken from these npz rows (see the commit that added them)
    for i, r in enumerate([27279, 16673, 19048, 25720, 16722, 22741, 23758, 29587, 32452]):
        assert np.array_equal(ds.images[i], images[r]) and ds.labels[i] == labels[r]


@pytest.mark.parametrize("mutate, expect", [
    (lambda r: r.__setitem__(0, ["label", "pixels", "Usage"]), ["line 1", "missing column", "emotion"]),
    (lambda r: r[3].__setitem__(1, " ".join(r[3][1].split()[:-1])), ["line 4", "2303 pixel values", "48x48"]),
    (lambda r: r[2].__setitem__(0, "9"), ["line 3", "emotion 9"]),
    (lambda r: r[2].__setitem__(0, "happy"), ["line 3", "not an integer"]),
    (lambda r: r[5].__setitem__(2, "Validation"), ["line 6", "Usage 'Validation'"]),
    (lambda r: r[2].__setitem__(1, r[2][1].replace(" ", " x ", 1)), ["line 3", "integers"]),
    (lambda r: r[2].__setitem__(1, "300 " + " ".join(r[2][1].split()[1:])), ["line 3", "0..255"]),
    (lambda r: r[7].__delitem__(2), ["line 8", "2 fields"]),
    (lambda r: r[1].__setitem__(1, "1 2 3"), ["line 2", "not a square"]),
    (lambda r: r.__setitem__(0, r[0] + ["neutral", "happiness"]), ["line 1", "FER+ vote columns incomplete"]),
])
def test_malformed_csv_names_file_and_line(tmp_path, mutate, expect):
    rows = _rows()
    mutate(rows)
    bad = _write(tmp_path / "bad.csv", rows)
    with pytest.raises(DataError) as e:
        load_dataset(bad)
    msg = str(e.value)
    assert str(bad) in msg and "\n" not in msg
    for part in expect:
        assert part in msg


def test_empty_and_binary_csv(tmp_path):
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match="empty file"):
        load_dataset(tmp_path / "empty.csv")
    (tmp_path / "bin.csv").write_bytes(b"\xff\xfe\x00garbage\n")
    with pytest.raises(DataError, match="bin.csv"):
        load_dataset(tmp_path / "bin.csv")


def _ferplus_csv(tmp_path: Path) -> Path:
    rows = _rows()
    rows[0] = rows[0] + list(FERPLUS_COLUMNS)
    #            neutral happy surpr sad anger disg fear contempt unknown NF
    votes = [[0, 8, 2, 0, 0, 0, 0, 0, 0, 0],   # happy
             [0, 0, 0, 0, 0, 0, 0, 0, 0, 10],  # not a face -> dropped
             [5, 5, 0, 0, 0, 0, 0, 0, 0, 0],   # tie -> dropped
             [6, 0, 0, 4, 0, 0, 0, 0, 0, 0],   # neutral
             [0, 0, 0, 0, 3, 0, 1, 6, 0, 0],   # contempt wins -> dropped
             [0, 0, 0, 0, 1, 0, 9, 0, 0, 0],   # fear
             [1, 0, 0, 9, 0, 0, 0, 0, 0, 0],   # sad
             [0, 0, 7, 0, 0, 0, 3, 0, 0, 0],   # surprise (PublicTest row)
             [0, 0, 0, 0, 2, 8, 0, 0, 0, 0]]   # disgust (PrivateTest row)
    for r, v in zip(rows[1:], votes):
        r.extend(str(x) for x in v)
    return _write(tmp_path / "fer2013_ferplus.csv", rows)


def test_ferplus_votes_majority_and_soft(tmp_path):
    path = _ferplus_csv(tmp_path)
    assert load_dataset(path).votes.shape == (9, 10)
    maj = load_dataset(path, "ferplus-majority")
    names = [FER_LABELS[i] for i in maj.labels]
    assert names == ["happy", "neutral", "fear", "sad", "surprise", "disgust"]
    assert maj.counts() == {"Training": 4, "PublicTest": 1, "PrivateTest": 1}
    soft = load_dataset(path, "ferplus-soft")
    assert soft.soft.shape == (6, 7)
    np.testing.assert_allclose(soft.soft.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(soft.soft[0], [0, 0, 0, 0.8, 0, 0.2, 0], atol=1e-6)  # FER order
    with pytest.raises(DataError, match="no FER\\+ vote columns"):
        load_dataset(CSV, "ferplus-majority")


# ------------------------------------------------------------------ image folders
def test_folder_with_split_prefixes():
    ds = load_dataset(FOLDER)
    assert ds.images.shape[1:] == (48, 48)
    assert ds.counts() == {"Training": 7, "PublicTest": 7, "PrivateTest": 7}
    for split in ("Training", "PublicTest", "PrivateTest"):
        assert sorted(ds.split(split)[1].tolist()) == list(range(7))
    # the label comes from the class folder
    happy = cv2.imread(str(next((FOLDER / "train" / "happy").iterdir())), cv2.IMREAD_GRAYSCALE)
    x, y = ds.split("Training")
    assert y[[np.array_equal(im, happy) for im in x].index(True)] == FER_LABELS.index("happy")


def _unprefixed_tree(tmp_path: Path, copies: int = 30) -> Path:
    root = tmp_path / "faces"
    for part in ("train", "test"):
        for cls_dir in (FOLDER / part).iterdir():
            dst = root / part / cls_dir.name.capitalize()  # class names are case-insensitive
            dst.mkdir(parents=True)
            for f in cls_dir.iterdir():
                for k in range(copies if part == "train" else 1):
                    shutil.copy(f, dst / f"img{k}_{f.name.split('_')[1]}")
    return root


OWN_CLASSES = {"happy": "Smile", "sad": "frown", "neutral": "calm", "surprise": "Surprised"}
"""Fixture faces filed under classes of one's own (and one FER synonym), as issue 30 item 7's user had them."""


def own_label_folder(root: Path, copies: int = 1, shift: int = 0) -> Path:
    """train/ and test/ with the OWN_CLASSES folders; `copies` shifted copies of each train face (`shift` px)."""
    import cv2

    rng = np.random.default_rng(0)
    for part in ("train", "test"):
        for fer_name, own in OWN_CLASSES.items():
            dst = root / part / own
            dst.mkdir(parents=True)
            for f in (FOLDER / part / fer_name).iterdir():
                img = cv2.imread(str(f), cv2.IMREAD_GRAYSCALE)
                for k in range(copies if part == "train" else 1):
                    dy, dx = rng.integers(-shift, shift + 1, 2) if shift else (0, 0)
                    name = f.name if part == "test" else f"{k}_{f.name}"  # test/ keeps its PublicTest_ prefixes
                    cv2.imwrite(str(dst / name), np.roll(img, (dy, dx), axis=(0, 1)))
    return root


def test_a_folder_of_classes_of_ones_own_loads_with_its_names(tmp_path):
    """Issue 30 item 7: train/smile, train/frown, train/calm was refused ('unknown class folder')."""
    root = own_label_folder(tmp_path / "mine")
    ds = load_dataset(root)
    assert ds.names == ("surprise", "calm", "frown", "smile")  # FER's (a synonym mapped) first, then the others
    x, y = ds.split("PrivateTest")
    assert sorted(ds.names[i] for i in y) == ["calm", "frown", "smile", "surprise"]
    assert load_dataset(FOLDER).names == FER_LABELS  # FER classes only: labels stay FER indices


def test_folder_without_prefixes_carves_publictest_from_train(tmp_path):
    root = _unprefixed_tree(tmp_path)
    ds = load_dataset(root)
    c = ds.counts()
    assert c["PrivateTest"] == 14  # all of test/ (no prefixes left)
    assert c["Training"] + c["PublicTest"] == 7 * 30
    assert 0.04 < c["PublicTest"] / (7 * 30) < 0.2
    assert np.array_equal(load_dataset(root).usage, ds.usage)  # deterministic


def test_folder_errors_name_the_path(tmp_path):
    root = _unprefixed_tree(tmp_path, copies=1)
    (root / "train" / "None").mkdir()  # any other name is a class of its own (issue 30 item 7), not this one
    with pytest.raises(DataError, match=r"None: 'None' cannot be a class name \('none' is reserved"):
        load_dataset(root)
    (root / "train" / "None").rmdir()
    bad = root / "test" / "Sad" / "broken.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(DataError) as e:
        load_dataset(root)
    assert str(bad) in str(e.value) and "not a readable image" in str(e.value)
    (tmp_path / "nothing").mkdir()
    with pytest.raises(DataError, match="not an image folder"):
        load_dataset(tmp_path / "nothing")


def test_folder_holding_a_data_file_and_unknown_formats(tmp_path):
    shutil.copy(CSV, tmp_path / "fer2013.csv")
    assert len(load_dataset(tmp_path).labels) == 9
    (tmp_path / "data.txt").write_text("x")
    with pytest.raises(DataError, match="unsupported data format"):
        load_dataset(tmp_path / "data.txt")
    with pytest.raises(DataError, match="no such file"):
        load_dataset(tmp_path / "missing.npz")
    np.savez(tmp_path / "wrong.npz", pictures=np.zeros((2, 48, 48), np.uint8))
    with pytest.raises(DataError, match="wrong.npz: not a FER2013 .npz"):
        load_dataset(tmp_path / "wrong.npz")
    with pytest.raises(DataError, match="unknown split"):
        load_dataset(CSV).split("Validation")


@pytest.mark.skipif(not FER_NPZ.exists(), reason=f"FER2013 not found at {FER_NPZ}")
def test_npz_counts_and_ferplus_relabel():
    ds = load_dataset(FER_NPZ)
    assert ds.counts() == {"Training": 28709, "PublicTest": 3589, "PrivateTest": 3589}
    assert np.bincount(ds.split("PrivateTest")[1]).tolist() == [491, 55, 528, 879, 594, 416, 626]
    maj = load_dataset(FER_NPZ.parent, "ferplus-majority")  # the folder finds fer2013.npz
    assert 30000 < len(maj.labels) < len(ds.labels) and maj.soft is None


# ------------------------------------------------------------------ int8 representative sample
def test_stratified_sample_is_proportional_and_deterministic():
    rng = np.random.default_rng(0)
    labels = rng.choice(7, size=5000, p=[0.14, 0.015, 0.14, 0.25, 0.17, 0.11, 0.175])
    idx = stratified_indices(labels, 500, seed=3)
    assert len(idx) == 500 and len(set(idx.tolist())) == 500
    got = np.bincount(labels[idx], minlength=7)
    want = np.bincount(labels, minlength=7) / len(labels) * 500
    assert got.min() >= 10  # the rare class is still represented
    assert np.all(np.abs(got - want) <= np.maximum(3, 10 - want))
    assert np.array_equal(idx, stratified_indices(labels, 500, seed=3))


def test_representative_set_refuses_too_few_faces_and_prepares_like_the_edge():
    ds = load_dataset(FOLDER)
    x, y = ds.split("Training")
    with pytest.raises(DataError, match="only 7 Training faces.*at least 300"):
        representative_faces(x, y, 500, ds.source)
    faces = representative_faces(x, y, 5, ds.source, minimum=5)
    assert len(faces) == 5
    f = prepare_float(faces, 64, 64, (-1.0, 1.0))
    assert f.shape == (5, 64, 64, 1) and f.dtype == np.float32
    assert -1.0 <= f.min() and f.max() <= 1.0
    one = cv2.resize(faces[0], (64, 64), interpolation=cv2.INTER_LINEAR).astype(np.float32) * (2 / 255) - 1
    np.testing.assert_allclose(f[0, ..., 0], one, atol=1e-5)


def test_too_few_representative_faces_fail_before_the_model_loads_and_name_another_face_set(tmp_path):
    """Issue 30 item 8: the export that train printed failed after 13 s (model and TensorFlow loaded first)."""
    from model_export.export import export_model

    never_opened = tmp_path / "absent" / "best.keras"  # loading it would fail with "no such model file"
    with pytest.raises(DataError) as e:
        export_model(never_opened, tmp_path / "m.tflite", input_range=(0.0, 1.0), representative_data=FOLDER,
                     log=lambda m: None)
    msg = str(e.value)
    assert "only 7 Training faces; int8 conversion needs at least 300 representative faces" in msg
    assert "pass --representative-data with another face set" in msg and "no such model file" not in msg


def test_train_names_another_face_set_for_the_next_export_when_its_data_is_too_small():
    import argparse

    from model_export.train import _next_command

    args = argparse.Namespace(data="mine/")
    small = _next_command(args, Path("run/best.keras"), 279)
    assert "--representative-data OTHER_FACES" in small and "mine/ has 279 Training faces" in small
    assert "at least 300" in small and "another face set" in small
    assert "--representative-data mine/ " in _next_command(args, Path("run/best.keras"), 300)


def test_a_run_folder_given_as_the_model_means_its_best_keras(tmp_path):
    """Issue 30 item 10: `export RUNDIR` said the model records no input range, then that it is a folder."""
    import json

    from edge.errors import ModelError
    from model_export.export import export_model
    from model_export.predictors import run_folder_model

    run = tmp_path / "run"
    run.mkdir()
    (run / "state.json").write_text(json.dumps({"args": {}, "labels": ["happy", "sad"], "input_range": [0.0, 1.0]}))
    with pytest.raises(ModelError, match=f"a run folder without best.keras .*pass {run / 'best.keras'}"):
        export_model(run, tmp_path / "m.tflite", representative_data=FOLDER, log=lambda m: None)
    (run / "best.keras").write_bytes(b"weights")
    said: list[str] = []
    with pytest.raises(DataError, match="only 7 Training faces"):  # got past the range/labels: read from state.json
        export_model(run, tmp_path / "m.tflite", representative_data=FOLDER, log=said.append)
    assert any(f"{run} is a run folder: using its best.keras" in m for m in said)
    assert run_folder_model(run) == run / "best.keras"
    with pytest.raises(ModelError, match="a folder, not a model file; pass the model itself"):
        run_folder_model(tmp_path)


def test_a_fifo_named_like_an_image_or_data_file_is_refused_not_waited_on(tmp_path):
    """Issue 29 Q: a FIFO named *.png in a class folder hung evaluate for ever (so did *.csv, *.npz)."""
    import os
    import threading

    root = tmp_path / "faces"
    shutil.copytree(FOLDER, root)
    fifos = [root / "test" / "happy" / "stuck.png", tmp_path / "fer2013.csv", tmp_path / "fer2013.npz"]
    for f in fifos:
        os.mkfifo(f)
    for target, fifo in ((root, fifos[0]), (fifos[1], fifos[1]), (fifos[2], fifos[2])):
        got: list[BaseException] = []
        t = threading.Thread(target=lambda: got.append(pytest.raises(DataError, load_dataset, target).value),
                             daemon=True)
        t.start()
        t.join(20)
        if t.is_alive():  # unblock the reader before failing, so the test run can end
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        assert not t.is_alive() and got, f"{fifo.name}: load_dataset waited on a FIFO"
        assert f"{fifo}: a FIFO (named pipe), not a regular file" in str(got[0])


def test_image_and_npz_bombs_are_refused_before_they_fill_the_memory(tmp_path, monkeypatch):
    """Issue 29 Q: a 389 KB PNG reached 1.6 GB, an 875 KB npz 1.8 GB."""
    import model_export.data as data

    root = tmp_path / "faces"
    shutil.copytree(FOLDER, root)
    bomb = np.zeros((6000, 6000), np.uint8)  # 36 megapixels of one grey: a PNG of about 40 KB
    ok, png = cv2.imencode(".png", bomb)
    assert ok and len(png) < 200_000
    (root / "train" / "happy" / "bomb.png").write_bytes(png.tobytes())
    with pytest.raises(DataError, match=r"bomb.png: not a readable image \(.*6000x6000.*scale it down first\)"):
        load_dataset(root)
    # an npz whose arrays decompress past the cap (lowered here: the real one is 1 GiB) is refused from the
    # sizes its zip directory declares, before any array is read
    npz = tmp_path / "big.npz"
    np.savez_compressed(npz, images=np.zeros((1000, 48, 48), np.uint8), labels=np.zeros(1000, np.int8),
                        usage=np.zeros(1000, np.int8))
    assert len(load_dataset(npz).images) == 1000
    monkeypatch.setattr(data, "NPZ_MAX_BYTES", 1_000_000)
    with pytest.raises(DataError, match=r"big.npz: its arrays would take 2 MB decompressed, more than the 1 MB allowed"):
        load_dataset(npz)


@pytest.mark.parametrize("pixel, vote", [("99999999999999999999", "1"), ("1", "1e999")])
def test_a_number_too_large_for_any_integer_is_one_line(tmp_path, pixel, vote):
    """Issue 29 R: a CSV pixel 99999999999999999999 ended in an OverflowError traceback (a vote 1e999 too)."""
    rows = _rows()
    header = rows[0] + list(FERPLUS_COLUMNS)
    body = [r + ["1"] * len(FERPLUS_COLUMNS) for r in rows[1:]]
    body[1][header.index("pixels")] = " ".join([pixel] + body[1][header.index("pixels")].split()[1:])
    body[1][header.index("neutral")] = vote
    with pytest.raises(DataError, match=r"line 3: (pixel values must be 0\.\.255|FER\+ vote columns must be integers)"):
        load_dataset(_write(tmp_path / "big.csv", [header] + body))


def test_the_int8_representative_set_is_not_called_calibration_and_teacher_does_not_import_train():
    """Issue 32 item 2: model_export's int8 representative set shared the name 'calibration' with the device's
    per-person calibration, and teacher.py and train.py imported each other (train._prepare)."""
    import ast

    root = Path(__file__).resolve().parents[1] / "model_export"
    assert not (root / "calibration.py").exists() and (root / "representative.py").is_file()

    def imports(name: str) -> set[str]:
        tree = ast.parse((root / name).read_text())
        found = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        found |= {f"{n.module}.{a.name}" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module
                  for a in n.names}
        return found | {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}

    assert not {m for m in imports("teacher.py") if m.startswith("model_export.train")}
    for name in ("average.py", "ensemble.py"):  # they took the same helper from train.py
        assert "model_export.train._prepare" not in imports(name)
    from model_export.cli import build_parser

    old = build_parser().parse_args(["export", "m.keras", "--calibration-data", "d", "--calibration-size", "400"])
    assert (old.representative_data, old.representative_size) == ("d", 400)  # the old option names still work


def test_export_and_evaluate_requests_are_dataclasses_checked_once(tmp_path):
    """Issue 32 item 5: export_model took 14 parameters and write_metadata_only 9 (made_by built twice),
    evaluate 14; each is now one request, checked before anything loads."""
    from edge.errors import ConfigError, ModelError
    from model_export.cli import build_parser
    from model_export.evaluate import EvaluateRequest
    from model_export.export import ExportRequest

    parse = build_parser().parse_args
    req = ExportRequest.from_args(parse(["export", "m.keras", "--representative-data", "d", "--out", "o.tflite",
                                         "--input-range=-1,1", "--labels", "a,b", "--no-evaluate"]))
    assert req == ExportRequest(Path("m.keras"), Path("o.tflite"), (-1.0, 1.0), ("a", "b"), "d", evaluate=False)
    with pytest.raises(ConfigError, match="export needs --representative-data and --out"):
        ExportRequest(Path("m.keras")).check()
    with pytest.raises(ModelError, match="the output must be NAME.tflite"):
        ExportRequest(Path("m.keras"), Path("o.keras"), representative_data="d").check()
    with pytest.raises(ModelError, match="--json-only needs an existing NAME.tflite"):
        ExportRequest(Path("m.keras"), json_only=True).check()
    json_only = ExportRequest.from_args(parse(["export", "m.tflite", "--json-only", "--input-range", "0,1",
                                               "--representative-data", "d"]))
    assert json_only.json_only and json_only.eval_data == "d" and json_only.out is None
    ev = EvaluateRequest.from_args(parse(["evaluate", "--model", "m.tflite", "--data", "d", "--report-dir",
                                          str(tmp_path / "r"), "--latency"]))
    assert ev == EvaluateRequest("m.tflite", "d", report_dir=str(tmp_path / "r"), with_latency=True)
    (tmp_path / "r").write_text("a file")
    with pytest.raises(ConfigError, match="--report-dir .*: exists and is not a folder"):
        ev.check()
