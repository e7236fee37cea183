"""Model metadata contract: parse errors name the key; a tflite/json disagreement is refused."""
from __future__ import annotations

import json

import pytest

from edge.contract import (FER_LABELS, Cost, InputSpec, ModelInfo, check_tensors, metadata_path, parse_model_info,
                           read_model_info, sha256_file, write_model_info)
from edge.errors import ModelError

from .conftest import BUNDLED_MODEL, MODELS_DIR


def good() -> dict:
    return json.loads((MODELS_DIR / "tiny_int8.json").read_text())


def test_fixture_metadata_reads_and_roundtrips(tmp_path):
    info = read_model_info(MODELS_DIR / "tiny_int8.tflite")
    assert info.labels == FER_LABELS and info.input == InputSpec(48, 48, 1, "int8", (0.0, 1.0), 0.0)
    copy = tmp_path / "m.tflite"
    copy.write_bytes((MODELS_DIR / "tiny_int8.tflite").read_bytes())
    assert write_model_info(copy, info) == metadata_path(copy) == tmp_path / "m.json"
    assert read_model_info(copy) == info
    assert not (tmp_path / "m.json.tmp").exists()


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda d: d.pop("labels"), "missing key 'labels'"),
        (lambda d: d.pop("sha256"), "missing key 'sha256'"),
        (lambda d: d.pop("input"), "missing key 'input'"),
        (lambda d: d["input"].pop("height"), "missing key 'height'"),
        (lambda d: d.update(format=2), "format 2 is not supported"),
        (lambda d: d.update(format="1"), "key 'format' has the wrong type"),
        (lambda d: d.update(labels=["a", "a"]), "'labels' must be a list"),
        (lambda d: d.update(labels=["happy", "none"]), "'none' is reserved"),
        (lambda d: d["input"].update(height=True), "key 'height' has the wrong type"),
        (lambda d: d["input"].update(channels=3), "channels 1"),
        (lambda d: d["input"].update(dtype="float16"), "dtype 'float16'"),
        (lambda d: d["input"].update(range=[0, 2]), "'range' \\[0.0, 2.0\\] is not one of"),
        (lambda d: d["input"].update(range="0-1"), "'range' must be"),
        (lambda d: d["input"].update(crop_margin=1.5), "'crop_margin' must be between"),
        (lambda d: d["input"].update(crop_margin=float("nan")), "'crop_margin' must be between"),
    ],
)
def test_parse_errors_name_the_key(mutate, match):
    d = good()
    mutate(d)
    with pytest.raises(ModelError, match=match) as e:
        parse_model_info(d, "m.json")
    assert str(e.value).startswith("m.json") and "\n" not in str(e.value)


def test_not_an_object():
    with pytest.raises(ModelError, match="must be a JSON object"):
        parse_model_info([1, 2], "m.json")


def test_sha_mismatch_refused_unless_unchecked(tmp_path):
    m = tmp_path / "m.tflite"
    m.write_bytes((MODELS_DIR / "tiny_int8.tflite").read_bytes() + b"\0")
    (tmp_path / "m.json").write_text(json.dumps(good()))
    with pytest.raises(ModelError, match="m.tflite: sha256 .* does not match its metadata"):
        read_model_info(m)
    assert read_model_info(m, check_sha=False).sha256 == good()["sha256"]
    assert sha256_file(MODELS_DIR / "tiny_int8.tflite") == good()["sha256"]


def test_unreadable_json(tmp_path):
    m = tmp_path / "m.tflite"
    m.write_bytes(b"x")
    (tmp_path / "m.json").write_text("{not json")
    with pytest.raises(ModelError, match="m.json: unreadable metadata"):
        read_model_info(m)


def test_check_tensors():
    info = ModelInfo(FER_LABELS, InputSpec(48, 48), sha256="0")
    check_tensors(info, (1, 48, 48, 1), "int8", 7, "w")
    check_tensors(info, (1, 48, 48), "int8", 7, "w")
    with pytest.raises(ModelError, match=r"w: model input shape \[1, 64, 64, 1\]"):
        check_tensors(info, (1, 64, 64, 1), "int8", 7, "w")
    with pytest.raises(ModelError, match="dtype float32 does not match metadata int8"):
        check_tensors(info, (1, 48, 48, 1), "float32", 7, "w")
    with pytest.raises(ModelError, match="8 outputs"):
        check_tensors(info, (1, 48, 48, 1), "int8", 8, "w")


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda d: d.update(labels=["happy"]), "at least 2 distinct names"),
        (lambda d: d.update(labels=["happy", 7]), "at least 2 distinct names"),
        (lambda d: d.update(labels=["happy", ""]), "at least 2 distinct names"),
        (lambda d: d.update(labels=[f"l{i}" for i in range(65)]), "at most 64 printable names"),
        (lambda d: d.update(labels=["happy", "x" * 65]), "up to 64 characters"),
        (lambda d: d.update(labels=["happy", " sad"]), "surrounding spaces"),
        (lambda d: d.update(labels=["happy", "sad\n"]), "control characters"),
        (lambda d: d["input"].update(height=7), "8..512 px; got 7x48x1"),
        (lambda d: d["input"].update(width=513), "8..512 px; got 48x513x1"),
        (lambda d: d["input"].update(range=[0, 1, 2]), "'range' must be \\[low, high\\]"),
        (lambda d: d["input"].update(range=[0, "1"]), "'range' must be \\[low, high\\]"),
        (lambda d: d["input"].update(range=[False, 1]), "'range' must be \\[low, high\\]"),
        (lambda d: d["input"].update(crop_margin=-0.05), "'crop_margin' must be between"),
        (lambda d: d["input"].update(crop_margin="0.1"), "'crop_margin' must be between"),
        (lambda d: d["input"].update(crop_margin=True), "'crop_margin' must be between"),
    ],
)
def test_labels_input_size_range_and_margin_bounds(mutate, match):
    d = good()
    mutate(d)
    with pytest.raises(ModelError, match=match):
        parse_model_info(d, "m.json")


def test_the_edges_of_the_bounds_are_accepted():
    d = good()
    d["labels"] = [f"l{i}" for i in range(63)] + ["x" * 64]
    d["input"].update(height=8, width=512, crop_margin=1.0, range=[-1, 1])
    d["quantization"] = None  # optional: null is as good as absent
    info = parse_model_info(d, "m.json")
    assert len(info.labels) == 64 and (info.input.height, info.input.width, info.input.crop_margin) == (8, 512, 1.0)
    assert info.input.range == (-1.0, 1.0) and info.input.channels == 1
    d["input"].pop("crop_margin")
    d["input"].pop("range")
    d["input"].pop("channels", None)
    info = parse_model_info(d, "m.json")
    assert info.input.crop_margin == 0.0 and info.input.range == (0.0, 1.0)  # the defaults a format-1 model meant


@pytest.mark.parametrize("dtype,rng,scale,zp,ok", [
    ("int8", (0.0, 1.0), 1 / 255, -128, True),       # what export writes for [0, 1]
    ("int8", (-1.0, 1.0), 2 / 255, 0, True),
    ("uint8", (0.0, 255.0), 1.0, 0, True),
    ("uint8", (0.0, 1.0), 1 / 255, 0, True),
    ("int8", (0.0, 255.0), 1 / 255, -128, False),     # JSON says 0..255, tensor holds 0..1
    ("int8", (0.0, 1.0), 1 / 255, 0, False),          # zero point off: -0.5..0.5
    ("uint8", (0.0, 1.0), 1 / 255, -128, False),      # the int8 zero point on a uint8 input
    ("int8", (0.0, 1.0), 1.08 / 255, -128, True),     # within a tenth of the range
    ("int8", (0.0, 1.0), 1.12 / 255, -128, False),    # beyond it
    ("int8", (-1.0, 1.0), 2.16 / 255, 0, True),       # a tenth of a range twice as wide
    ("int8", (-1.0, 1.0), 2.5 / 255, 0, False),      # a quarter beyond
    ("int8", (0.0, 1.0), float("inf"), -128, False),
])
def test_input_quantization_must_span_the_declared_range(dtype, rng, scale, zp, ok):
    from edge.contract import check_input_quantization

    info = ModelInfo(FER_LABELS, InputSpec(48, 48, 1, dtype, rng), sha256="0")
    if ok:
        check_input_quantization(info, scale, zp, "m.tflite")
    else:
        with pytest.raises(ModelError, match=r"^m.tflite: input is quantized for .* but the metadata says range"):
            check_input_quantization(info, scale, zp, "m.tflite")
    check_input_quantization(ModelInfo(FER_LABELS, InputSpec(48, 48, 1, "float32", rng), sha256="0"), scale, zp, "m")  # float: no check


GOOD_COST = {"ms_per_face": 3.5, "threads": 1, "cpu": "Intel(R) Xeon(R) Processor", "measured": "2026-12-07",
             "runtime": "ai_edge_litert 2.3.0", "invocations": 1000}


def test_cost_is_optional_and_roundtrips(tmp_path):
    """Old JSONs (no cost) stay valid and are written back without one; a cost is kept exactly."""
    assert parse_model_info(good(), "m.json").cost is None
    assert '"cost"' not in parse_model_info(good(), "m.json").to_json()
    d = good()
    d["cost"] = dict(GOOD_COST)
    info = parse_model_info(d, "m.json")
    assert info.cost == Cost(3.5, 1, "Intel(R) Xeon(R) Processor", "2026-12-07", "ai_edge_litert 2.3.0", 1000)
    copy = tmp_path / "m.tflite"
    copy.write_bytes((MODELS_DIR / "tiny_int8.tflite").read_bytes())
    write_model_info(copy, info)
    assert json.loads(metadata_path(copy).read_text())["cost"] == GOOD_COST
    assert read_model_info(copy) == info
    assert info.cost.describe() == ("3.50 ms per face on 1 thread of Intel(R) Xeon(R) Processor "
                                    "(ai_edge_litert 2.3.0, 1000 runs, measured 2026-12-07)")
    assert parse_model_info({**good(), "cost": {"ms_per_face": 2}}, "m.json").cost == Cost(2.0)


def test_bundled_models_carry_their_cost():
    """The bundled model's JSON says what a face costs (measured with `emotion-export cost --write`)."""
    info = read_model_info(BUNDLED_MODEL)
    assert info.cost is not None and 0 < info.cost.ms_per_face < 100 and info.cost.threads == 1 and info.cost.cpu


@pytest.mark.parametrize(
    "cost, match",
    [
        ([3.5], "key 'cost' must be a JSON object"),
        ({}, "'ms_per_face' must be a number above 0"),
        ({"ms_per_face": "3.5"}, "'ms_per_face' must be a number"),
        ({"ms_per_face": True}, "'ms_per_face' must be a number"),
        ({"ms_per_face": 0}, "'ms_per_face' must be a number above 0"),
        ({"ms_per_face": -1.0}, "'ms_per_face' must be a number above 0"),
        ({"ms_per_face": 60_000.5}, "at most 60000"),
        ({"ms_per_face": float("nan")}, "'ms_per_face' must be a number"),
        ({"ms_per_face": float("inf")}, "'ms_per_face' must be a number"),
        ({"ms_per_face": 1.0, "threads": 0}, "'threads' must be a whole number from 1 to 256"),
        ({"ms_per_face": 1.0, "threads": 257}, "'threads' must be a whole number from 1 to 256"),
        ({"ms_per_face": 1.0, "threads": 1.0}, "'threads' must be a whole number"),
        ({"ms_per_face": 1.0, "threads": True}, "'threads' must be a whole number"),
        ({"ms_per_face": 1.0, "invocations": -1}, "'invocations' must be a whole number of at least 0"),
        ({"ms_per_face": 1.0, "invocations": "300"}, "'invocations' must be a whole number"),
        ({"ms_per_face": 1.0, "cpu": 7}, "'cpu' must be a printable string"),
        ({"ms_per_face": 1.0, "cpu": "Xeon\x1b[2J"}, "'cpu' must be a printable string"),
        ({"ms_per_face": 1.0, "cpu": "x" * 201}, "'cpu' must be a printable string of at most 200"),
        ({"ms_per_face": 1.0, "runtime": ["litert"]}, "'runtime' must be a printable string"),
        ({"ms_per_face": 1.0, "measured": "yesterday"}, "'measured' must be a date, YYYY-MM-DD"),
        ({"ms_per_face": 1.0, "measured": "2026-13-01"}, "'measured' must be a date"),
        ({"ms_per_face": 1.0, "measured": "20261207"}, "'measured' must be a date"),
    ],
)
def test_cost_refusals_name_the_key(cost, match):
    d = good()
    d["cost"] = cost
    with pytest.raises(ModelError, match=match) as e:
        parse_model_info(d, "m.json")
    assert str(e.value).startswith("m.json: 'cost'") or str(e.value).startswith("m.json: key 'cost'")
    assert "\n" not in str(e.value)
