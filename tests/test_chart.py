"""`emotion-edge log --chart`: the rendered text of a known log, plain and in 24-bit colour; the default
window (the log's own data), the share legend and the terminal's width."""
from __future__ import annotations

import argparse
import io
import re
import time

import pytest

import edge.config as config_mod
from edge.chart import BAR_WIDTH, bucket_size, chart, chart_main, letters, use_color
from edge.cli import main as cli_main
from edge.config import DEFAULT_COLORS, LogConfig
from edge.eventlog import EventLog

from tests.test_eventlog import Clock, run

T0 = 1_700_000_000.0 - 1_700_000_000.0 % 3600  # 2023-11-14T22:00Z

EXPECTED = """\
{db}: 2023-11-14 22:00 .. 2023-11-15 04:00 UTC
time (UTC)  mood shares of each 15 min                          faces  top
22:00       |                                                |      -
22:15       |                                                |      -
22:30       |HHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHH|   100%  happy 100%
22:45       |HHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHH|   100%  happy 100%
23:00       |HHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHSSSSSSSSSSSSSSSS|   100%  happy 67%
23:15       |HHHHHHHHHHHHHHHHSSSSSSSSSSSSSSSS................|    67%  happy 50%
23:30       |HHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHH|   100%  happy 100%
23:45       |HHHHHHHHHHHHHHHH                                |   100%  happy 100%
00:00       |                                                |      -
00:15       |                                                |      -
00:30       |UUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUU|   100%  surprise 100%
00:45       |AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA|   100%  angry 100%
01:00       |                                                |      -
01:15       |                                                |      -
01:30       |                                                |      -
01:45       |                                                |      -
02:00       |                                                |      -
02:15       |                                                |      -
02:30       |                                                |      -
02:45       |                                                |      -
03:00       |                                                |      -
03:15       |                                                |      -
03:30       |                                                |      -
03:45       |                                                |      -

each bar: the share of its 15 min per mood, always in this order (not a timeline):
A angry  D disgust  F fear  H happy  S sad  U surprise  N neutral  . no face  blank: not running
"""


@pytest.fixture
def known_log(tmp_path):
    """22:30 happy 40 min, sad 10, no face 5, happy 25; stopped 40 min; 00:30 surprise 15, angry 15."""
    db = tmp_path / "ev.db"
    clock = Clock(T0)
    cfg = LogConfig(summary_interval=60)
    with EventLog(db, cfg, clock=clock) as log:
        run(log, clock, [(40 * 60, "happy", 1), (10 * 60, "sad", 1), (5 * 60, "none", 0), (25 * 60, "happy", 1)],
            fps=0.5, start=30 * 60)
    with EventLog(db, cfg, clock=clock) as log:  # the service restarted after a 40 min stop
        run(log, clock, [(15 * 60, "surprise", 1), (15 * 60, "angry", 2)], fps=0.5, start=150 * 60)
    return db


def test_plain_text_of_a_known_log(known_log):
    assert chart(known_log, T0, T0 + 6 * 3600, DEFAULT_COLORS, color=False) == EXPECTED.format(db=known_log)


def test_colour_uses_the_led_colours_as_24_bit_backgrounds(known_log):
    colors = {**DEFAULT_COLORS, "sad": "#123456"}  # a user's [led.colors] shows in the chart
    text = chart(known_log, T0, T0 + 6 * 3600, colors, color=True)
    line = next(x for x in text.splitlines() if x.startswith("23:15"))
    assert line == ("23:15       |\x1b[48;2;255;204;0m" + " " * 16 + "\x1b[0m\x1b[48;2;18;52;86m" + " " * 16 + "\x1b[0m"
                    "\x1b[38;2;110;110;110m" + "." * 16 + "\x1b[0m|    67%  happy 50%")
    assert "H" * 16 not in text and "\x1b[48;2;255;0;204m" in text  # surprise, in colour not letters


def test_bucket_fits_the_window_and_letters_are_distinct():
    assert bucket_size(86400) == 3600 and bucket_size(2 * 3600) == 300 and bucket_size(7 * 86400) == 43200
    assert bucket_size(2 * 3600 + 0.01) == 300 and bucket_size(2 * 3600 + 5) == 600  # `--since 2h` read a moment late
    marks = letters(list(DEFAULT_COLORS))
    assert marks["sad"] == "S" and marks["surprise"] == "U" and len(set(marks.values())) == len(marks)


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_colour_only_on_a_terminal_without_no_color():
    assert use_color(Tty(), {"TERM": "xterm-256color"})
    assert not use_color(Tty(), {"NO_COLOR": "1"})
    assert not use_color(Tty(), {"TERM": "dumb"})
    assert not use_color(io.StringIO(), {})


def test_cli_chart_of_a_short_log_is_plain_when_piped_and_zooms_to_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(config_mod, "DEFAULT_CONFIG_PATH", tmp_path / "absent.toml")
    db = tmp_path / "ev.db"
    clock = Clock(time.time() - 1800)
    with EventLog(db, LogConfig(summary_interval=60), clock=clock) as log:
        run(log, clock, [(300, "happy", 1), (300, "fear", 1)], fps=0.5)
    assert cli_main(["log", "--db", str(db), "--chart"]) == 0
    out = capsys.readouterr().out
    bars = [x for x in out.splitlines() if "|" in x]
    assert 10 <= len(bars) <= 11 and "\x1b[" not in out  # minute lines over its 10 minutes, not 24 empty hours
    assert "mood shares of each 1 min" in out and all(len(x) <= 12 + 2 + BAR_WIDTH + 2 + 19 for x in bars)
    assert "H" * BAR_WIDTH in bars[1] and "F" * BAR_WIDTH in bars[-3]


@pytest.fixture
def ten_minutes(tmp_path):
    """A 10-minute log from T0: 4 min happy, 2.5 min without a face, then surprise for 1 min and angry for 2.5."""
    db = tmp_path / "short.db"
    clock = Clock(T0)
    with EventLog(db, LogConfig(summary_interval=60), clock=clock) as log:
        run(log, clock, [(240, "happy", 1), (150, "none", 0), (60, "surprise", 1), (150, "angry", 1)], fps=1)
    return db


def test_the_default_window_is_the_logs_own_data_not_the_last_day(ten_minutes):
    """Charted 3 days after it stopped, a 10-minute log gets its 10 minute bars, not 24 empty hours."""
    text = chart(ten_minutes, None, T0 + 3 * 86400, DEFAULT_COLORS, color=False)
    lines = text.splitlines()
    assert lines[0] == f"{ten_minutes}: 2023-11-14 22:00 .. 2023-11-14 22:09 UTC (the log's latest data; --since WHEN sets the window)"
    bars = [x for x in lines if "|" in x]
    assert [x[:5] for x in bars] == [f"22:0{m}" for m in range(10)]
    assert bars[0] == "22:00       |" + "H" * BAR_WIDTH + "|   100%  happy 100%"
    assert bars[5] == "22:05       |" + "." * BAR_WIDTH + "|     0%"
    # --since still sets the window: the last day before `now` holds nothing, in 24 hourly lines
    since = chart(ten_minutes, T0 + 2 * 86400, T0 + 3 * 86400, DEFAULT_COLORS, color=False)
    bars = [x for x in since.splitlines() if "|" in x]
    assert len(bars) == 24 and all(x.endswith("|      -") for x in bars)


def test_a_running_service_is_charted_up_to_now(ten_minutes):
    """Its last row is a summary interval old: the mood holds until now, as summarize() counts it."""
    text = chart(ten_minutes, None, T0 + 600 + 30, DEFAULT_COLORS, color=False)
    assert f"{ten_minutes}: 2023-11-14 22:00 .. 2023-11-14 22:10 UTC" in text
    assert "22:10       |" + "A" * (BAR_WIDTH // 2) + " " * (BAR_WIDTH // 2) + "|   100%  angry 100%" in text


def test_an_empty_log_says_so_in_one_line(tmp_path):
    db = tmp_path / "empty.db"
    EventLog(db, LogConfig()).close()
    assert chart(db, None, T0, DEFAULT_COLORS, color=False) == f"{db}: no rows to chart yet\n"


def test_bars_are_shares_in_the_legends_order_not_a_timeline(ten_minutes):
    """22:06 was no face then surprise, 22:07 surprise then angry, 30 s each: each bar stacks its moods
    in the legend's order (no face last), and the legend says so."""
    text = chart(ten_minutes, None, T0 + 3 * 86400, DEFAULT_COLORS, color=False)
    lines = text.splitlines()
    assert "22:06       |" + "U" * (BAR_WIDTH // 2) + "." * (BAR_WIDTH // 2) + "|    50%  surprise 100%" in lines
    assert "22:07       |" + "A" * (BAR_WIDTH // 2) + "U" * (BAR_WIDTH // 2) + "|   100%  angry 50%" in lines
    assert lines[1].startswith("time (UTC)  mood shares of each 1 min ")
    assert lines[-2:] == ["each bar: the share of its 1 min per mood, always in this order (not a timeline):",
                          "A angry  D disgust  F fear  H happy  S sad  U surprise  N neutral  . no face  blank: not running"]


def visible(line: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", line)


@pytest.mark.parametrize("columns", [60, 100, 200])
@pytest.mark.parametrize("no_color", ["1", ""])
def test_on_a_terminal_the_bars_fill_its_width(known_log, monkeypatch, columns, no_color):
    monkeypatch.setattr(config_mod, "DEFAULT_CONFIG_PATH", known_log.parent / "absent.toml")
    monkeypatch.setenv("COLUMNS", str(columns))  # what shutil.get_terminal_size() reads first
    monkeypatch.setenv("NO_COLOR", no_color)
    monkeypatch.setenv("TERM", "xterm-256color")
    out = Tty()
    assert chart_main(argparse.Namespace(), known_log, None, out) == 0
    lines = [visible(x) for x in out.getvalue().splitlines()[1:]]  # the title holds the tmp path
    bars = [x for x in lines if "|" in x]
    assert ("\x1b[" in out.getvalue()) == (not no_color)
    assert max(len(x) for x in bars) == columns - 1 and all(len(x) < columns for x in lines)
    widest = next(x for x in bars if x.endswith("surprise 100%"))  # the widest 'top' sets the bars' width
    assert widest.rindex("|") - widest.index("|") - 1 == columns - 1 - len("22:00       |" "|   100%  surprise 100%")
    assert len(lines[-1]) < columns and lines[-1].endswith("blank: not running")  # the legend wraps to fit
