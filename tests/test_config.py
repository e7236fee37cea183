"""Config: TOML file + flags, unknown keys and bad values rejected by name; the `config` command."""
from __future__ import annotations

import argparse
import re

import pytest

import edge.config as config_mod
from edge.cli import main as cli_main
from edge.commands import config as config_cmd
from edge.config import Config, DEFAULT_COLORS, dump_config, load_config
from edge.errors import ConfigError


@pytest.fixture(autouse=True)
def no_system_config(tmp_path, monkeypatch):
    """Never read a real /etc/emotion-edge/config.toml in tests."""
    monkeypatch.setattr(config_mod, "DEFAULT_CONFIG_PATH", tmp_path / "absent" / "config.toml")
    # `emotion-edge config` imported the name: on a Pi with the service installed it would read the real file.
    monkeypatch.setattr(config_cmd, "DEFAULT_CONFIG_PATH", tmp_path / "absent" / "config.toml")


def write(tmp_path, text: str):
    p = tmp_path / "config.toml"
    p.write_text(text)
    return p


def test_defaults_without_a_file():
    cfg = load_config(None)
    assert cfg == Config()
    assert cfg.led.brightness == 0.6 and cfg.log.commit_interval == 0.5 and cfg.led.colors == DEFAULT_COLORS


def test_file_values_and_flag_overrides(tmp_path):
    p = write(tmp_path, '[led]\nbrightness = 1\nactive_high = false\n[led.colors]\nhappy = "#00ff00"\n'
                        '[log]\ndb = "/tmp/x.db"\n')
    cfg = load_config(p)
    assert cfg.led.brightness == 1.0 and isinstance(cfg.led.brightness, float)  # int accepted for float
    assert cfg.led.active_high is False
    assert cfg.led.colors["happy"] == "#00ff00" and cfg.led.colors["sad"] == DEFAULT_COLORS["sad"]  # merged
    cfg = load_config(p, {"led": {"backend": "none"}, "log": {"db": "/tmp/y.db"}})
    assert cfg.led.backend == "none" and cfg.log.db == "/tmp/y.db" and cfg.led.brightness == 1.0


@pytest.mark.parametrize("text, key", [
    ("[led]\nbrightnes = 0.3\n", "led.brightnes"),
    ("[lde]\nbrightness = 0.3\n", "[lde]"),
    ("[led]\nbrightness = 1.5\n", "led.brightness"),
    ("[led]\nbrightness = \"high\"\n", "led.brightness"),
    ("[led]\nred_pin = 40\n", "led.red_pin"),
    ("[led]\nred_pin = true\n", "led.red_pin"),
    ("[led]\nbackend = \"usb\"\n", "led.backend"),
    ("[led.colors]\nhappy = \"yellow\"\n", "led.colors"),
    ("[log]\ncommit_interval = 0\n", "log.commit_interval"),
    ("[log]\nkeep_days = nan\n", "log.keep_days"),
    ("[mood]\nhold = -1\n", "mood.hold"),
    ("led = 3\n", "[led]"),
])
def test_bad_keys_and_values_name_the_key(tmp_path, text, key):
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_config(p)
    msg = str(e.value)
    assert key in msg and "\n" not in msg


def test_bad_flag_names_the_key():
    with pytest.raises(ConfigError, match=r"detect\.detect_every"):
        load_config(None, {"detect": {"detect_every": 0}})


def test_unreadable_files(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[led\nx=1"))


def test_default_path_is_used_when_present(tmp_path, monkeypatch):
    p = write(tmp_path, "[stats]\ninterval = 5\n")
    monkeypatch.setattr(config_mod, "DEFAULT_CONFIG_PATH", p)
    assert load_config(None).stats.interval == 5.0


def test_dump_round_trips(tmp_path):
    cfg = load_config(write(tmp_path, '[source]\nsource = "a \\"quoted\\" path"\n[led.colors]\nangry = "#123456"\n'))
    again = load_config(write(tmp_path, dump_config(cfg)))
    assert again == cfg


def _uncomment(text: str) -> str:
    return "\n".join(re.sub(r"^# (\[[\w.]+\]|\w+ = .*)$", r"\1", line) for line in text.splitlines())


def test_config_command_default_is_the_commented_defaults(tmp_path, capsys):
    assert cli_main(["config", "--default"]) == 0
    text = capsys.readouterr().out
    assert load_config(write(tmp_path, text)) == Config()  # all commented: parses to defaults
    live = _uncomment(text)
    assert "\nbrightness = 0.6" in live
    assert load_config(write(tmp_path, live)) == Config()  # uncommented: the same defaults


def test_config_command_print_applies_file_and_flags(tmp_path, capsys):
    p = write(tmp_path, "[led]\nbrightness = 0.25\n")
    # --config after the subcommand, as install.sh and the docs use it
    assert cli_main(["config", "--print", "--config", str(p), "--led", "console", "--detect-every", "5"]) == 0
    out = capsys.readouterr().out
    cfg = load_config(write(tmp_path, out))
    assert cfg.led.brightness == 0.25 and cfg.led.backend == "console" and cfg.detect.detect_every == 5
    # the global --config before the subcommand works too, and --print is the default action
    assert cli_main(["--config", str(p), "config", "--no-docs"]) == 0
    out = capsys.readouterr().out
    assert "brightness = 0.25" in out and "#" not in out.replace('"#', "")


def test_config_command_check(tmp_path, capsys):
    good = write(tmp_path, "[mood]\nhalf_life = 1.5\n")
    assert cli_main(["config", "--check", "--config", str(good)]) == 0
    assert "config OK" in capsys.readouterr().out
    bad = tmp_path / "bad.toml"
    bad.write_text("[mood]\nhalf_lfe = 1.5\n")
    assert cli_main(["config", "--check", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("emotion-edge: error:") and "mood.half_lfe" in err and err.count("\n") == 1


def test_config_command_main_with_own_parser(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    config_cmd.add_parser(sub)
    args = parser.parse_args(["config", "--check"])
    assert not hasattr(args, "config")  # left to the global option when not given here
    assert config_cmd.main(args) == 0
    assert "defaults" in capsys.readouterr().out


def test_lores_larger_than_main_is_a_config_error(tmp_path, capsys):
    """picamera2 raises at configure (a runtime failure, retried for ever); the config must refuse it (exit 2)."""
    p = tmp_path / "c.toml"
    p.write_text("[source]\nwidth = 320\nheight = 240\nlores_width = 640\nlores_height = 480\n")
    with pytest.raises(ConfigError, match=r"lores stream 640x480 may not be larger than the main stream .*320x240"):
        load_config(p)
    assert cli_main(["config", "--check", "--config", str(p)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "lores" in err
    p.write_text("[source]\nlores_width = 640\nlores_height = 480\nwidth = 640\nheight = 480\n")
    assert load_config(p).source.lores_width == 640  # equal sizes are fine


# -- issue 29: hostile input, round 2 -------------------------------------------------------------

@pytest.mark.parametrize("text, key, why", [
    ("[mood]\nhalf_life = 1" + "0" * 400 + "\n", "mood.half_life", "number too large"),  # OverflowError in float()
    ("[led]\nred_pin = 1" + "0" * 400 + "\n", "led.red_pin", "number too large"),
    ("[mood]\nhalf_life = 1" + "0" * 5000 + "\n", "not valid TOML", "number too large"),  # Python's 4300-digit limit
    ('[log]\ndb = "/tmp/a\\u0000b.db"\n', "log.db", "NUL"),  # "embedded null byte" at open()
    ('[classify]\nmodel = "\\u0000"\n', "classify.model", "NUL"),
    ("[led]\nred_pin = 17\ngreen_pin = 17\n", "led.red_pin and led.green_pin", "BCM pin 17"),
    ("[calibrate]\nbutton_pin = 22\n", "led.blue_pin and calibrate.button_pin", "BCM pin 22"),
])
def test_round2_bad_values_are_one_line_config_errors(tmp_path, capsys, text, key, why):
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_config(p)
    msg = str(e.value)
    assert key in msg and why in msg and "\n" not in msg and len(msg) < 300
    assert cli_main(["config", "--check", "--config", str(p)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("emotion-edge: error:") and err.count("\n") == 1


def test_a_utf8_bom_from_a_windows_editor_is_skipped(tmp_path):
    p = tmp_path / "config.toml"
    p.write_bytes("\ufeff[mood]\nhalf_life = 1.5\n".encode())
    assert load_config(p).mood.half_life == 1.5


def test_distinct_pins_and_no_button_pass():
    cfg = load_config(None, {"led": {"red_pin": 5, "green_pin": 6, "blue_pin": 13}, "calibrate": {"button_pin": 17}})
    assert cfg.calibrate.button_pin == 17


@pytest.mark.parametrize("command", ["run", "log", "bench", "check", "config", "status", "photo", "calibrate", "publish"])
def test_config_after_the_subcommand_works_for_every_command(command):
    from edge.cli import build_parser

    parser, mains = build_parser()
    assert command in mains
    extra = {"photo": ["x.png"]}.get(command, [])
    args = parser.parse_args([command, "--config", "/x/c.toml", *extra])
    assert args.config == "/x/c.toml"
    assert parser.parse_args(["--config", "/y/c.toml", command, *extra]).config == "/y/c.toml"
