"""`emotion-edge`: one console script, one module per subcommand under edge/commands/."""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

from edge import __version__
from edge.errors import EdgeError

COMMANDS = ("run", "log", "bench", "check", "config", "status", "photo", "calibrate", "publish", "view")


def build_parser() -> tuple[argparse.ArgumentParser, dict]:
    p = argparse.ArgumentParser(
        prog="emotion-edge",
        description="A Raspberry Pi mood light: camera -> faces -> emotion -> RGB LED + local log.")
    p.add_argument("--version", action="version", version=f"emotion-edge {__version__}")
    p.add_argument("--config", metavar="PATH", help="TOML config (default /etc/emotion-edge/config.toml if it exists)")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    mains = {}
    for name in COMMANDS:
        try:
            mod = importlib.import_module(f"edge.commands.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"edge.commands.{name}":
                continue
            raise
        mod.add_parser(sub)
        mains[name] = mod.main
    for sp in sub.choices.values():  # `emotion-edge run --config X` as well as `emotion-edge --config X run`
        try:
            sp.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS,
                            help="TOML config (default /etc/emotion-edge/config.toml if it exists)")
        except argparse.ArgumentError:  # the command has its own (log, publish, config)
            pass
    return p, mains


def setup_logging(verbose: int) -> None:
    try:
        from edge.service.logsetup import setup
    except ImportError:
        logging.basicConfig(level=logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING,
                            format="%(levelname)s %(message)s")
        return
    setup(verbose)


def main(argv: list[str] | None = None) -> int:
    parser, mains = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    setup_logging(args.verbose)
    try:
        return int(mains[args.command](args) or 0)
    except EdgeError as e:
        from edge.text import printable
        print(f"emotion-edge: error: {printable(e)}", file=sys.stderr)  # one line, whatever a path holds
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `emotion-edge log | head`
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
