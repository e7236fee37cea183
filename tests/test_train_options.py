"""emotion-export train's checks that need no TensorFlow: resuming with other options, the next step's faces."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from model_export.cli import build_parser, main


def _args(argv: list[str]):
    return build_parser().parse_args(argv)


def _stopped_run(tmp_path: Path, argv: list[str]) -> Path:
    """A run folder as train leaves it after epoch 1 of 3 (state.json with the run's options, a last.keras)."""
    args = _args(argv)
    run = args.out
    run.mkdir()
    recorded = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k not in ("func", "module")}
    (run / "state.json").write_text(json.dumps({"epoch": 1, "best_val_accuracy": 0.3, "best_epoch": 1, "wait": 0,
                                                "args": recorded, "labels": ["happy", "sad"]}))
    (run / "last.keras").write_bytes(b"the checkpoint")
    return run


def test_resuming_with_other_options_is_refused_naming_each_one(tmp_path, capsys, monkeypatch):
    """Issue 30 item 6: --limit/--lr/--width changed on resume used to be taken silently (the old width,
    a new data size, the best epoch picked across scores on 75 and on 500 faces)."""
    monkeypatch.chdir(tmp_path)
    base = ["train", "--data", "faces.npz", "--out", str(tmp_path / "run"), "--epochs", "3"]
    run = _stopped_run(tmp_path, base + ["--limit", "300"])
    assert main(base + ["--limit", "2000", "--lr", "0.01", "--width", "1.0", "--verbose", "0"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "was trained with --width 0.75, --lr 0.003, --limit 300; this call asks for --width 1.0, --lr 0.01, --limit 2000" in err
    assert "--no-resume" in err and "new --out" in err
    assert (run / "last.keras").read_bytes() == b"the checkpoint"  # nothing touched
    # the same data named another way, and options that do not shape the run, are not changes
    from model_export.train import changed_options

    recorded = json.loads((run / "state.json").read_text())["args"]
    same = _args(base[:1] + ["--data", str(tmp_path / "faces.npz")] + base[3:] + ["--limit", "300", "--verbose", "0",
                                                                                  "--patience", "3"])
    assert changed_options(same, recorded) == []
    assert [c[0] for c in changed_options(_args(base + ["--limit", "300", "--teacher", "t.npz"]), recorded)] == ["teacher"]
    # a run made before an option existed is not refused for it
    del recorded["erase"]
    assert changed_options(_args(base + ["--limit", "300", "--erase", "0.5"]), recorded) == []
