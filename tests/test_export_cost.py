"""emotion-export cost: ms per face on one LiteRT thread, into NAME.json's `cost` (real LiteRT, real .tflite)."""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from edge.contract import read_model_info, sha256_file
from model_export.cli import main
from model_export.cost import cpu_name, measure

FIX = Path(__file__).resolve().parent / "fixtures"
FOLDER = FIX / "export" / "folder"
INT8 = FIX / "models" / "tiny_int8.tflite"


def _copy(tmp_path: Path, name: str = "m") -> Path:
    model = tmp_path / f"{name}.tflite"
    model.write_bytes(INT8.read_bytes())
    model.with_suffix(".json").write_bytes(INT8.with_suffix(".json").read_bytes())
    return model


def test_measure_times_the_model_on_one_thread():
    c = measure(INT8, runs=50, warmup=5)
    assert 0 < c.ms_per_face < 1000 and c.threads == 1 and c.invocations == 50
    assert c.cpu == cpu_name() and c.measured == dt.date.today().isoformat()
    assert c.runtime.startswith(("ai_edge_litert ", "tflite_runtime "))


def test_cpu_name_reads_x86_and_pi_cpuinfo(tmp_path):
    x86 = tmp_path / "x86"
    x86.write_text("processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R)  Xeon(R) Processor\n"
                   "processor\t: 1\nmodel name\t: Intel(R) Xeon(R) Processor\n")
    assert cpu_name(x86) == "Intel(R) Xeon(R) Processor"
    pi = tmp_path / "pi"
    pi.write_text("processor\t: 0\nBogoMIPS\t: 108.00\nCPU part\t: 0xd08\n\nHardware\t: BCM2835\n"
                  "Model\t\t: Raspberry Pi 4 Model B Rev 1.4\n")
    assert cpu_name(pi) == "Raspberry Pi 4 Model B Rev 1.4"
    assert cpu_name(tmp_path / "absent")  # the machine type, never empty


def test_cost_write_changes_only_the_cost(tmp_path, capsys):
    model = _copy(tmp_path)
    before_json, sha = json.loads(model.with_suffix(".json").read_text()), sha256_file(model)
    assert "cost" not in before_json
    assert main(["cost", str(model), "--runs", "40"]) == 0  # without --write: told, nothing written
    out = capsys.readouterr().out
    assert out.startswith(f"{model}: ") and " ms per face on 1 thread of " in out and "40 runs" in out
    assert json.loads(model.with_suffix(".json").read_text()) == before_json
    assert main(["cost", str(model), "--runs", "40", "--write"]) == 0
    assert "wrote the cost into" in capsys.readouterr().err
    after = json.loads(model.with_suffix(".json").read_text())
    cost = after.pop("cost")
    assert after == before_json and sha256_file(model) == sha  # the .tflite (bound by calibrations) is untouched
    assert cost["threads"] == 1 and cost["invocations"] == 40 and 0 < cost["ms_per_face"] < 1000
    assert read_model_info(model).cost.ms_per_face == cost["ms_per_face"]
    assert main(["cost", str(model), "--runs", "40"]) == 0  # a second measurement says what the JSON had
    assert "(its m.json said " in capsys.readouterr().err


def test_cost_refusals_are_one_line(tmp_path, capsys):
    model = _copy(tmp_path)
    model.write_bytes(model.read_bytes() + b"\0")  # no longer the model its JSON describes
    assert main(["cost", str(model), "--write"]) == 2
    err = capsys.readouterr().err
    assert "does not match its metadata" in err and err.count("\n") == 1
    assert "cost" not in json.loads(model.with_suffix(".json").read_text())
    assert main(["cost", str(tmp_path / "m.json")]) == 2
    assert "cost is measured on an int8 NAME.tflite" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["cost", str(INT8), "--runs", "4"])


def test_evaluate_prints_the_contract_cost(tmp_path, capsys):
    model = _copy(tmp_path)
    assert main(["evaluate", "--model", str(model), "--data", str(FOLDER), "--no-report"]) == 0
    assert "cost (its" not in capsys.readouterr().out  # an old JSON: no cost line
    assert main(["cost", str(model), "--runs", "20", "--write"]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--model", str(model), "--data", str(FOLDER), "--no-report"]) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    assert last.startswith("cost (its m.json): ") and "ms per face on 1 thread" in last
