"""emotion-export export refuses what the device cannot run, in one line, exit 2, leaving nothing behind.

Real TFLiteConverter and LiteRT on tiny models built here (TF 2.21): Erf has no TFLite builtin (it needs
Flex, SELECT_TF_OPS), BesselI0e only exists as a custom op, and Sin converts with TFLITE_BUILTINS_INT8
but leaves a float island (DEQUANTIZE -> SIN) inside an int8-in, int8-out model.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.tf
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

from edge.contract import read_model_info  # noqa: E402
from model_export.representative import batches as representative  # noqa: E402
from model_export.cli import main  # noqa: E402
from model_export.data import load_dataset  # noqa: E402
from model_export.export import conversion_failure  # noqa: E402

FIX = Path(__file__).resolve().parent / "fixtures"
FOLDER = FIX / "export" / "folder"
INT8 = FIX / "models" / "tiny_int8.tflite"


@keras.saving.register_keras_serializable(package="test_export_refusals")
class TfOp(keras.layers.Layer):
    """One TensorFlow op by name, so a saved .keras model can hold an op TFLite lacks."""

    OPS = {"erf": tf.math.erf, "bessel": tf.math.special.bessel_i0e, "sin": tf.math.sin}

    def __init__(self, op: str = "sin", **kw):
        super().__init__(**kw)
        self.op = op

    def call(self, x):
        return self.OPS[self.op](x)

    def get_config(self):
        return {**super().get_config(), "op": self.op}


def _model(op: str) -> keras.Model:
    keras.utils.set_random_seed(3)
    inp = keras.Input((48, 48, 1))
    x = keras.layers.Conv2D(2, 3, strides=4)(inp)
    x = TfOp(op)(x)
    x = keras.layers.Dense(7, activation="softmax")(keras.layers.Flatten()(x))
    return keras.Model(inp, x)


def _saved(tmp_path: Path, op: str) -> Path:
    path = tmp_path / f"{op}.keras"
    _model(op).save(path)
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """300 Training faces (the CLI's minimum for the int8 representative set) and 10 PrivateTest: the committed faces, shifted."""
    base = load_dataset(FOLDER)
    rng = np.random.default_rng(0)
    pick = rng.integers(0, len(base.images), 310)
    images = np.stack([np.roll(base.images[k], tuple(rng.integers(-3, 4, 2)), axis=(0, 1)) for k in pick])
    path = tmp_path_factory.mktemp("data") / "faces.npz"
    np.savez(path, images=images, labels=base.labels[pick].astype(np.int8),
             usage=np.r_[np.zeros(300), np.full(10, 2)].astype(np.int8))
    return path


def _cli(argv: list[str], capfd) -> tuple[int, list[str]]:
    """Exit status and stderr lines of `emotion-export ARGV` (argparse's refusals exit through SystemExit)."""
    try:
        rc = main(argv)
    except SystemExit as e:
        rc = e.code
    return rc, capfd.readouterr().err.strip().splitlines()


def _one_error_line(err: list[str]) -> str:
    """The refusal: the last line, the only one that says error, no traceback or converter print-out."""
    assert not any("Traceback" in line for line in err), err
    errors = [line for line in err if "error" in line.lower()]
    assert len(errors) == 1 and errors[0] == err[-1], err
    return err[-1]


def _with_earlier_model(out: Path) -> tuple[bytes, bytes]:
    old = (b"the working model from before", b'{"old": true}')
    out.write_bytes(old[0])
    out.with_suffix(".json").write_bytes(old[1])
    return old


@pytest.mark.parametrize("op, expect", [
    ("erf", "uses TensorFlow ops with no TFLite builtin (Erf); they would need Flex (SELECT_TF_OPS)"),
    ("bessel", "uses custom ops (BesselI0e), which the device's LiteRT does not have"),
])
def test_model_needing_flex_or_custom_ops_is_refused(tmp_path, data, capfd, op, expect):
    src = _saved(tmp_path, op)
    out = tmp_path / "m.tflite"
    old = _with_earlier_model(out)
    rc, err = _cli(["export", str(src), "--input-range", "0,1", "--representative-data", str(data),
                    "--representative-size", "300", "--out", str(out)], capfd)
    line = _one_error_line(err)
    assert rc == 2 and line.startswith("emotion-export: error: int8 conversion failed: ") and expect in line
    assert not any(s in "\n".join(err) for s in ("TF Select ops", "Custom ops:", "loc(callsite("))  # told once
    assert (out.read_bytes(), out.with_suffix(".json").read_bytes()) == old
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["m.json", "m.tflite", f"{op}.keras"])


def test_float_island_is_refused_after_conversion_and_nothing_is_left(tmp_path, data, capfd):
    """Sin converts under TFLITE_BUILTINS_INT8 with int8 I/O but runs in float inside: the check after
    conversion refuses it, names the output (not the temporary file) and removes the temporary file."""
    src = _saved(tmp_path, "sin")
    out = tmp_path / "new" / "m.tflite"
    rc, err = _cli(["export", str(src), "--input-range", "0,1", "--representative-data", str(data),
                    "--representative-size", "300", "--out", str(out)], capfd)
    line = _one_error_line(err)
    assert rc == 2 and f"error: {out}: op " in line and "float32 tensor" in line and "not a full-integer model" in line
    assert list(out.parent.iterdir()) == []  # no .tflite, .json or .m.tflite.tmp
    out.parent.rmdir()
    old = _with_earlier_model(tmp_path / "m.tflite")  # an earlier model at the destination stays as it was
    assert _cli(["export", str(src), "--input-range", "0,1", "--representative-data", str(data),
                 "--representative-size", "300", "--out", str(tmp_path / "m.tflite")], capfd)[0] == 2
    assert ((tmp_path / "m.tflite").read_bytes(), (tmp_path / "m.json").read_bytes()) == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.tflite", "sin.keras"]


def _convert(model: keras.Model, ops: list, custom: bool = False) -> bytes:
    """TFLiteConverter as a user elsewhere might have run it (float, Flex or custom ops allowed)."""
    with tempfile.TemporaryDirectory() as d:
        model.export(f"{d}/saved", format="tf_saved_model", verbose=False)
        conv = tf.lite.TFLiteConverter.from_saved_model(f"{d}/saved")
        conv.target_spec.supported_ops = ops
        conv.allow_custom_ops = custom
        return conv.convert()


@pytest.mark.parametrize("op, ops, custom, expect", [
    ("erf", [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS], False,
     "contains Flex (SELECT_TF_OPS) ops FlexErf; the device's LiteRT cannot run them"),
    ("bessel", [tf.lite.OpsSet.TFLITE_BUILTINS], True, "contains the custom op BesselI0e; the device's LiteRT cannot run it"),
])
def test_json_only_refuses_a_tflite_with_flex_or_custom_ops(tmp_path, capfd, op, ops, custom, expect):
    model = tmp_path / "theirs.tflite"
    model.write_bytes(_convert(_model(op), ops, custom))
    rc, err = _cli(["export", str(model), "--json-only", "--input-range", "0,1"], capfd)
    line = _one_error_line(err)
    assert rc == 2 and line == f"emotion-export: error: {model}: {expect}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["theirs.tflite"]  # no .json


def test_converter_failure_is_one_line(tmp_path):
    """The converter's real exception for Erf; without its op summary the MLIR error is what is told."""
    model = _model("erf")
    with pytest.raises(Exception) as e:
        _convert(model, [tf.lite.OpsSet.TFLITE_BUILTINS])
    text = str(e.value)
    assert "TF Select ops: Erf" in text and "\n" in text  # pages of it
    told = conversion_failure(text, type(e.value).__name__)
    assert "\n" not in told and "(Erf)" in told and "SELECT_TF_OPS" in told
    bare = "\n".join(line for line in text.splitlines() if "TF Select ops" not in line)
    told = conversion_failure(bare, type(e.value).__name__)
    assert "\n" not in told and told.startswith("int8 conversion failed ('tf.Erf' op is neither a custom op nor a flex op")
    assert conversion_failure("", "ConverterError") == (
        "int8 conversion failed (ConverterError); the model may use an op with no int8 kernel")


@pytest.fixture(scope="module")
def keras_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "m.keras"
    _model("sin").save(path)
    return path


@pytest.mark.parametrize("args, expect", [
    (["MODEL", "--input-range", "0,1", "--representative-data", "DATA", "--out", "NOPE/m.keras"],
     "the output must be NAME.tflite"),
    (["MODEL", "--input-range", "0,1", "--representative-data", "DATA", "--out", "TMP/dir.tflite"],
     "is a folder; give the model"),
    (["MODEL", "--input-range", "0,1", "--representative-data", "DATA", "--out", "FILE/m.tflite"], "is a file, not a folder"),
    (["MODEL", "--input-range", "0,1", "--representative-data", "DATA"], "export needs --out"),
    (["MODEL", "--input-range", "0,1", "--out", "TMP/m.tflite"], "export needs --representative-data"),
    (["TMP/missing.keras", "--input-range", "0,1", "--representative-data", "DATA", "--out", "TMP/m.tflite"],
     "missing.keras: no such model file"),
    (["MODEL", "--input-range", "0,1", "--representative-data", "TMP/missing.npz", "--out", "TMP/m.tflite"],
     "missing.npz: no such file or folder"),
    (["MODEL", "--input-range", "0,2", "--representative-data", "DATA", "--out", "TMP/m.tflite"],
     "--input-range '0,2': must be one of"),
    (["MODEL", "--calibration-size", "100"], "argument --representative-size/--calibration-size: must be at least 300 (got 100)"),
    (["MODEL", "--representative-size", "many"], "argument --representative-size/--calibration-size: 'many' is not a whole number"),
    (["MODEL", "--eval-limit", "-1"], "argument --eval-limit: must be at least 0 (got -1)"),
    (["MODEL", "--crop-margin", "1.5"], "argument --crop-margin: must be a finite number at least 0 and at most 1"),
    (["MODEL", "--crop-margin", "nan"], "argument --crop-margin: must be a finite number"),
    (["MODEL", "--eval-split", "Test"], "argument --eval-split: invalid choice: 'Test'"),
    (["MODEL", "--seed", "x"], "argument --seed: 'x' is not a whole number"),
    (["MODEL", "--seed", "-1"], "argument --seed: must be between 0 and 4294967295 (got -1)"),
    (["TMP/missing.tflite", "--json-only", "--input-range", "0,1"], "--json-only needs an existing NAME.tflite"),
])
def test_cli_argument_refusals_are_one_line_exit_2(tmp_path, keras_file, data, capfd, args, expect):
    (tmp_path / "FILE").write_text("a file where a folder is needed")
    (tmp_path / "dir.tflite").mkdir()
    before = sorted(p.name for p in tmp_path.iterdir())
    sub = {"MODEL": str(keras_file), "DATA": str(data), "TMP": str(tmp_path), "FILE": str(tmp_path / "FILE"),
           "NOPE": str(tmp_path / "nope")}
    argv = ["export"] + [next((a.replace(k, v, 1) for k, v in sub.items() if a.startswith(k)), a) for a in args]
    rc, err = _cli(argv, capfd)
    assert rc == 2 and expect in _one_error_line(err)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written, no folder made


def test_json_only_without_eval_data_writes_metrics_as_absent(tmp_path, capfd):
    """No evaluation faces: NAME.json has no numbers at all (an empty metrics object), never zeros."""
    model = tmp_path / "theirs.tflite"
    model.write_bytes(INT8.read_bytes())
    rc, err = _cli(["export", str(model), "--json-only", "--input-range", "0,1"], capfd)
    assert rc == 0
    raw = json.loads(model.with_suffix(".json").read_text())
    assert raw["metrics"] == {} and read_model_info(model).metrics == {}
    assert "no --eval-data: the metadata will have no accuracy numbers" in "\n".join(err)
    wrote = next(line for line in err if f"wrote {model} " in line)
    assert wrote.endswith("and theirs.json: no accuracy numbers"), wrote


def test_json_only_with_data_lacking_the_split_writes_nothing(tmp_path, capfd):
    """Evaluation data without the asked split: refused in one line; no NAME.json with zeros or no numbers."""
    import shutil

    data = tmp_path / "trainonly"
    shutil.copytree(FOLDER / "train", data / "train")
    shutil.copytree(FOLDER / "test", data / "val")
    model = tmp_path / "theirs.tflite"
    model.write_bytes(INT8.read_bytes())
    rc, err = _cli(["export", str(model), "--json-only", "--input-range", "0,1", "--eval-data", str(data)], capfd)
    assert rc == 2 and "no PrivateTest faces to evaluate the int8 model on" in _one_error_line(err)
    assert not model.with_suffix(".json").exists()
