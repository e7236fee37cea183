"""`emotion-edge log` on a real SQLite log: latest N, --since, --summary, --csv, --json, errors."""
from __future__ import annotations

import argparse
import csv
import io
import json
import time

import pytest

import edge.config as config_mod
from edge.cli import main as cli_main
from edge.commands import log as log_cmd
from edge.commands.log import parse_since
from edge.config import LogConfig
from edge.errors import ConfigError
from edge.eventlog import EventLog

from tests.test_eventlog import Clock, run


@pytest.fixture(autouse=True)
def no_system_config(tmp_path, monkeypatch):
    monkeypatch.setattr(config_mod, "DEFAULT_CONFIG_PATH", tmp_path / "absent" / "config.toml")


@pytest.fixture
def db(tmp_path):
    """90 s happy, 30 s sad, 20 s none, ending now (so relative --since works)."""
    path = tmp_path / "ev.db"
    clock = Clock(time.time() - 140)
    with EventLog(path, LogConfig(summary_interval=60, commit_interval=1), clock=clock) as log:
        run(log, clock, [(90, "happy", 1), (30, "sad", 2), (20, "none", 0)], fps=2)
    return path


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    rc = cli_main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_json_is_one_array_of_rows(db, capsys):
    rc, out, _ = cli(capsys, "log", "--db", str(db), "--json", "-n", "0")
    assert rc == 0
    rows = json.loads(out)
    assert isinstance(rows, list) and len(rows) == 6
    assert all({"time", "mood", "confidence"} <= set(r) for r in rows)
    assert [r["mood"] for r in rows if r["kind"] == "change"] == ["happy", "sad", "none"]
    assert rows[0]["time"].endswith("Z") and rows[0]["confidence"] == pytest.approx(0.9)
    assert rows == sorted(rows, key=lambda r: r["time"])


def test_last_n_and_default(db, capsys):
    _, out, _ = cli(capsys, "log", "--db", str(db), "--json", "-n", "2")
    assert [r["mood"] for r in json.loads(out)] == ["none", "none"]  # the newest two, oldest first
    rc, out, _ = cli(capsys, "log", "--db", str(db))
    lines = out.splitlines()
    assert rc == 0 and lines[0].startswith("time (UTC)") and len(lines) == 1 + 6
    assert "change   happy" in out and "10,10,41,41" in out


def test_since_relative_and_iso(db, capsys):
    _, out, _ = cli(capsys, "log", "--db", str(db), "--json", "--since", "55s")
    assert [r["mood"] for r in json.loads(out)] == ["sad", "none", "none", "none"]
    rows = json.loads(cli(capsys, "log", "--db", str(db), "--json")[1])
    iso = rows[2]["time"]  # the change to sad, as printed
    _, out, _ = cli(capsys, "log", "--db", str(db), "--json", "--since", iso)
    assert json.loads(out)[0]["time"] == iso
    _, out, _ = cli(capsys, "log", "--db", str(db), "--json", "--since", "1d", "-n", "1")
    assert len(json.loads(out)) == 1


def test_parse_since():
    now = 1_700_000_000.0
    assert parse_since("2h", now) == now - 7200
    assert parse_since("30m", now) == now - 1800
    assert parse_since("7d", now) == now - 7 * 86400
    assert parse_since("2023-11-14T22:13:20Z") == now
    assert parse_since("2023-11-14T23:13:20+01:00") == now
    with pytest.raises(ConfigError, match="--since 'last tuesday'"):
        parse_since("last tuesday")


def test_csv_has_header_and_probability_columns(db, capsys):
    rc, out, _ = cli(capsys, "log", "--db", str(db), "--csv", "-n", "0")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert rc == 0 and len(rows) == 6
    assert rows[0]["mood"] == "happy" and float(rows[0]["happy"]) == pytest.approx(0.9)
    assert rows[0]["box_w"] == "41" and rows[-1]["box_w"] == ""


def test_summary_text_json_csv(db, capsys):
    rc, out, _ = cli(capsys, "log", "--db", str(db), "--summary")
    assert rc == 0 and "mood" in out and "hour (UTC)" in out
    happy = next(line for line in out.splitlines() if line.startswith("happy"))
    assert happy.split()[1:] == ["1", "90s", "64%"]
    _, out, _ = cli(capsys, "log", "--db", str(db), "--summary", "--json")
    s = json.loads(out)
    assert s["moods"]["sad"]["changes"] == 1 and s["moods"]["sad"]["seconds"] == pytest.approx(30, abs=1)
    _, out, _ = cli(capsys, "log", "--db", str(db), "--summary", "--csv")
    assert out.splitlines()[0] == "mood,changes,seconds,share"


def test_db_from_config_file(db, tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[log]\ndb = "{db}"\n')
    rc, out, _ = cli(capsys, "log", "--config", str(cfg), "--json", "-n", "1")
    assert rc == 0 and len(json.loads(out)) == 1


def test_errors_are_one_line(tmp_path, db, capsys):
    rc, _, err = cli(capsys, "log", "--db", str(tmp_path / "missing.db"))
    assert rc == 2 and "no event log at" in err and err.count("\n") == 1
    rc, _, err = cli(capsys, "log", "--db", str(db), "--since", "soon")
    assert rc == 2 and "--since 'soon'" in err
    rc, _, err = cli(capsys, "log", "--db", str(db), "-n", "-3")
    assert rc == 2 and "--last -3" in err
    with pytest.raises(SystemExit):
        cli_main(["log", "--db", str(db), "--csv", "--json"])  # argparse: mutually exclusive


def test_main_with_own_parser(db, capsys):
    parser = argparse.ArgumentParser()
    log_cmd.add_parser(parser.add_subparsers(dest="command"))
    assert log_cmd.main(parser.parse_args(["log", "--db", str(db), "-n", "1"])) == 0
    assert "summary  none" in capsys.readouterr().out


# -- issue 29 H: text from the database never reaches the terminal raw --------------------------

@pytest.fixture
def hostile_db(tmp_path):
    """Our log, plus rows another writer put there with escape sequences and a newline in the mood."""
    import sqlite3

    path = tmp_path / "ev.db"
    EventLog(path, LogConfig()).close()
    now = time.time()
    c = sqlite3.connect(path)
    for i, mood in enumerate(("\x1b[2J\x1b[31mhappy\nfake", "sad\x07", "happy")):
        c.execute("INSERT INTO events (time, kind, mood, confidence, faces) VALUES (?, 'change', ?, 0.9, 1)",
                  (now - 600 + i * 100, mood))
    c.commit()
    c.close()
    return path


@pytest.mark.parametrize("args", [["--chart"], ["--summary", "--csv"], ["--csv"], ["--summary"], []])
def test_moods_from_the_database_are_printable(hostile_db, capsys, args):
    rc, out, err = cli(capsys, "log", "--db", str(hostile_db), "--since", "1h", *args)
    assert rc == 0, err
    assert "\x1b" not in out and "\x07" not in out and "\nfake" not in out
    assert "\\x1b[2J\\x1b[31mhappy\\x0afake" in out  # printable() spells every control as \\xNN


def test_an_empty_since_is_an_error_not_everything(db, capsys):
    rc, out, err = cli(capsys, "log", "--db", str(db), "--since", "")
    assert rc == 2 and out == "" and "--since ''" in err and err.count("\n") == 1


def test_chart_zooms_to_the_log_and_since_sets_the_window(db, capsys):
    """The fixture's 140 s log gets minute lines; --since 2h gets 24 five-minute lines, most of them blank."""
    rc, out, err = cli(capsys, "log", "--db", str(db), "--chart")
    bars = [x for x in out.splitlines() if "|" in x]
    assert rc == 0 and "mood shares of each 1 min" in out and 3 <= len(bars) <= 4, out
    assert "(the log's latest data; --since WHEN sets the window)" in out.splitlines()[0]
    rc, out, err = cli(capsys, "log", "--db", str(db), "--chart", "--since", "2h")
    bars = [x for x in out.splitlines() if "|" in x]
    assert rc == 0 and "mood shares of each 5 min" in out and len(bars) in (24, 25) and "latest data" not in out
