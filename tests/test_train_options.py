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
    # ... except where the run's net was the one that option now names otherwise: the stem (issue 34)
    del recorded["stem"]
    assert changed_options(_args(base + ["--limit", "300"]), recorded) == []
    assert changed_options(_args(base + ["--limit", "300", "--stem", "single"]), recorded) == [
        ("stem", "double", "single")]


def test_stem_is_a_choice_named_on_a_bad_one(capsys):
    """--stem takes the three stems model_export.arch builds and nothing else, refused before anything loads."""
    from model_export.arch import STEMS

    assert _args(["train", "--data", "d", "--out", "r"]).stem == "double"
    assert all(_args(["train", "--data", "d", "--out", "r", "--stem", s]).stem == s for s in STEMS)
    with pytest.raises(SystemExit) as e:
        _args(["train", "--data", "d", "--out", "r", "--stem", "triple"])
    assert e.value.code == 2
    assert "--stem: invalid choice: 'triple'" in capsys.readouterr().err


def test_keras_progress_bars_only_on_a_terminal_and_the_resume_command():
    """Issue 30 item 11: Keras' bar redraws filled logs written to a file; Ctrl-C did not say how to go on."""
    import io
    import os

    from model_export.train import keras_verbosity, train_command

    assert keras_verbosity(io.StringIO()) == 0
    with open(os.devnull, "w") as f:
        assert keras_verbosity(f) == 0
    r, w = os.openpty()
    try:
        with open(w, "w", closefd=False) as tty:
            assert keras_verbosity(tty) == 1
    finally:
        os.close(r), os.close(w)
    assert _args(["train", "--data", "d.npz", "--out", "r"]).verbose is None  # decided when train starts
    args = _args(["train", "--data", "my faces", "--out", "r", "--limit", "300", "--width", "0.5", "--no-resume"])
    args.verbose = 0
    assert train_command(args) == "emotion-export train --data 'my faces' --out r --width 0.5 --limit 300 --no-resume"


def test_ctrl_c_says_what_was_kept_and_how_to_resume(tmp_path):
    from model_export.train import _interrupted

    args = _args(["train", "--data", "d.npz", "--out", str(tmp_path / "run"), "--epochs", "5"])
    run = _stopped_run(tmp_path, ["train", "--data", "d.npz", "--out", str(tmp_path / "run"), "--epochs", "5"])
    said = _interrupted(args, run, created=False)
    assert said == (f"interrupted: {run} keeps epoch 1 (last.keras, best.keras); resume with the same command: "
                    f"emotion-export train --data d.npz --out {run} --epochs 5")
    (run / "last.keras").unlink()
    assert _interrupted(args, run, created=True).startswith(
        "interrupted before the first epoch ended: nothing kept (run folder removed); start again with: emotion-export train")


def test_curves_have_whole_epoch_ticks(tmp_path):
    """Issue 30 item 11: curves.png of a 3-epoch run had ticks at 1.25, 1.5, ..."""
    pytest.importorskip("matplotlib")
    from model_export import train

    log = tmp_path / "log.csv"
    log.write_text("epoch,loss,accuracy,val_loss,val_accuracy,learning_rate\n"
                   "1,2.0,0.2,1.9,0.3,0.001\n2,1.8,0.3,1.7,0.35,0.002\n3,1.7,0.32,1.6,0.37,0.003\n")
    train._plot(log, tmp_path / "curves.png")
    assert (tmp_path / "curves.png").stat().st_size > 1000
    for ax in train._last_figure[0].axes:
        lo, hi = ax.get_xlim()
        shown = [t for t in ax.get_xticks() if lo <= t <= hi]
        assert shown and all(float(t).is_integer() for t in shown), shown


def test_next_export_line_says_when_it_would_replace_a_model(tmp_path, monkeypatch):
    import argparse

    from model_export.train import _next_command

    monkeypatch.chdir(tmp_path)
    args = argparse.Namespace(data="faces/")
    assert "replaces" not in _next_command(args, Path("run/best.keras"), 5000)
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "emotion.tflite").write_bytes(b"an earlier model")
    for n in (5000, 10):
        assert "models/emotion.tflite exists and this replaces it: choose another --out to keep it" in \
            _next_command(args, Path("run/best.keras"), n)


def test_train_options_are_one_typed_request_checked_once(tmp_path):
    """Issue 32 item 5: train read a Namespace with getattr defaults spread over the module."""
    import io

    from edge.errors import ConfigError, ModelError
    from model_export.train import TrainOptions

    opts = TrainOptions.from_args(_args(["train", "--data", "d", "--out", str(tmp_path / "r")]))
    assert opts == TrainOptions(data="d", out=tmp_path / "r")  # the parser's defaults are the dataclass's
    assert TrainOptions.from_args(opts) is opts
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="exists and is not a folder"):
        TrainOptions(data="d", out=tmp_path / "file").check()
    with pytest.raises(ModelError, match="--init-from .*none.keras: no such file"):
        TrainOptions(data="d", out=tmp_path / "r", init_from=tmp_path / "none.keras").check()
    opts.check(io.StringIO())
    assert opts.verbose == 0 and opts.recorded()["out"] == str(tmp_path / "r") and opts.recorded()["teacher"] is None
