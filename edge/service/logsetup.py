"""Logging to stderr: `<N>` priority prefixes under systemd so journald keeps the levels, plain otherwise."""
from __future__ import annotations

import logging
import os
import sys
from typing import Any, TextIO

from edge.text import printable

# syslog priorities that journald reads from a "<N>" line prefix (sd-daemon(3)).
PRIORITY = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}


def priority(levelno: int) -> int:
    """Nearest syslog priority at or above the level's severity."""
    for lvl in (logging.CRITICAL, logging.ERROR, logging.WARNING, logging.INFO):
        if levelno >= lvl:
            return PRIORITY[lvl]
    return PRIORITY[logging.DEBUG]


def under_journald(stream: TextIO, env: dict[str, str] | None = None) -> bool:
    """True when `stream` is the journal stream systemd gave us ($JOURNAL_STREAM = "dev:inode")."""
    env = os.environ if env is None else env
    value = env.get("JOURNAL_STREAM", "")
    if not value:
        return False
    try:
        dev, ino = (int(x) for x in value.split(":"))
        st = os.fstat(stream.fileno())
    except (ValueError, OSError, AttributeError):
        return False
    return (st.st_dev, st.st_ino) == (dev, ino)


def _printable_arg(value: Any) -> Any:
    """Numbers stay numbers (for %d / %.1f); anything else becomes one printable line."""
    return value if isinstance(value, (int, float)) else printable(value)


class OneLineArgsFormatter(logging.Formatter):
    """Escapes control characters in the message's arguments: a path or error text holding a newline
    cannot forge a second log line (or a journald `<N>` priority); our own format strings may still span lines."""

    def format(self, record: logging.LogRecord) -> str:
        args = record.args
        if isinstance(args, tuple) and args:
            record.args = tuple(_printable_arg(a) for a in args)
        elif isinstance(args, dict) and args:
            record.args = {k: _printable_arg(v) for k, v in args.items()}
        try:
            return super().format(record)
        finally:
            record.args = args  # other handlers see the record as it was


class JournalFormatter(OneLineArgsFormatter):
    """`<3>message`: journald adds time, unit and pid itself; multi-line text keeps its priority."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        prefix = f"<{priority(record.levelno)}>"
        return "\n".join(prefix + line for line in text.splitlines() or [""])


PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_HANDLER_NAME = "emotion-edge"


def setup_logging(level: str | int = "INFO", stream: TextIO | None = None, journal: bool | None = None) -> logging.Handler:
    """Install one handler on the root logger (replacing ours from an earlier call); returns it."""
    stream = sys.stderr if stream is None else stream
    if journal is None:
        journal = under_journald(stream)
    handler = logging.StreamHandler(stream)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(JournalFormatter("%(message)s") if journal else OneLineArgsFormatter(PLAIN_FORMAT))
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    return handler


def setup(verbose: int = 0) -> logging.Handler:
    """The CLI's entry: warnings only by default, -v info, -vv debug."""
    level = logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING
    return setup_logging(level)
