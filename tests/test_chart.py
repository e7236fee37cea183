"""`emotion-edge log --chart`: the rendered text of a known log, plain and in 24-bit colour."""
from __future__ import annotations

import io
import time

import pytest

import edge.config as config_mod
from edge.chart import bucket_size, chart, letters, use_color
from edge.cli import main as cli_main
from edge.config import DEFAULT_COLORS, LogConfig
from edge.eventlog import EventLog

from tests.test_eventlog import Clock, run

T0 = 1_700_000_000.0 - 1_700_000_000.0 % 3600  # 2023-11-14T22:00Z

EXPECTED = """\
{db}: 2023-11-14 22:00 .. 2023-11-15 04:00 UTC
time (UTC)  mood, 15 min per line                               faces  top
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


def test_cli_chart_of_the_last_day_is_plain_when_piped(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(config_mod, "DEFAULT_CONFIG_PATH", tmp_path / "absent.toml")
    db = tmp_path / "ev.db"
    clock = Clock(time.time() - 1800)
    with EventLog(db, LogConfig(summary_interval=60), clock=clock) as log:
        run(log, clock, [(600, "happy", 1), (600, "fear", 1)], fps=0.5)
    assert cli_main(["log", "--db", str(db), "--chart"]) == 0
    out = capsys.readouterr().out
    bars = [x for x in out.splitlines() if "|" in x]
    assert len(bars) in (24, 25) and "\x1b[" not in out  # hourly lines over the last day
    assert "H" in bars[-1] + bars[-2] and "F" in bars[-1] + bars[-2]
