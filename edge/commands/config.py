"""`emotion-edge config`: print the effective configuration, validate a file, or write the default."""
from __future__ import annotations

import argparse

from edge.commands.common import add_pipeline_flags, config_from_args
from edge.config import DEFAULT_CONFIG_PATH, Config, dump_config

HEADER = f"""# emotion-edge configuration ({DEFAULT_CONFIG_PATH})
# Every key is optional; the commented values are the defaults. Unknown keys are errors.
# Check a change with `emotion-edge config --check`, see the result with `emotion-edge config --print`.
"""


def add_parser(sub) -> None:
    p = sub.add_parser("config", help="print the effective config, check a config file, or print the defaults")
    p.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS,
                   help="TOML config (default /etc/emotion-edge/config.toml if it exists)")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--print", dest="action", action="store_const", const="print",
                      help="print the effective config as TOML: defaults < file < flags (the default action)")
    what.add_argument("--check", dest="action", action="store_const", const="check",
                      help="only validate the file and flags; exit status 2 names the bad key")
    what.add_argument("--default", dest="action", action="store_const", const="default",
                      help="print the commented default config (what install.sh writes)")
    p.add_argument("--no-docs", action="store_true", help="--print without the explanatory comments")
    add_pipeline_flags(p)


def main(args: argparse.Namespace) -> int:
    action = getattr(args, "action", None) or "print"
    if action == "default":
        print(HEADER + "\n" + dump_config(Config(), with_docs=True, commented=True), end="")
        return 0
    cfg = config_from_args(args)  # raises ConfigError naming the key
    if action == "check":
        src = getattr(args, "config", None) or (DEFAULT_CONFIG_PATH if DEFAULT_CONFIG_PATH.is_file() else None)
        print(f"config OK ({src if src else 'no config file: defaults'})")
        return 0
    print(dump_config(cfg, with_docs=not getattr(args, "no_docs", False)), end="")
    return 0
