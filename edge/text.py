"""Text from files, models and the log made safe for a terminal: one line, no escape sequences.

A label, status field or log value with a newline or an ANSI escape could fake output lines or
drive the terminal; every command that prints such text passes it through printable().
"""
from __future__ import annotations


def printable(text: object) -> str:
    """str(text) with every non-printable character (controls, ESC, newlines, bidi marks) as \\xNN / \\uNNNN."""
    s = str(text)
    if s.isprintable():
        return s
    return "".join(c if c.isprintable() else _escape(c) for c in s)


def _escape(c: str) -> str:
    n = ord(c)
    return f"\\x{n:02x}" if n < 0x100 else f"\\u{n:04x}" if n < 0x10000 else f"\\U{n:08x}"
