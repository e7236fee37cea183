"""argparse `type=` checks for numbers and lists, shared by emotion-edge and emotion-export.

A negative limit, zero epochs or a NaN learning rate was accepted and then produced a wrong result
(a wrong `n` in shipped metadata, a false core count). argparse refuses these with one `error:`
line naming the flag, exit status 2, before any work starts.
"""
from __future__ import annotations

import argparse
import math
from typing import Any, Callable


def int_in(lo: int, hi: int | None = None) -> Callable[[str], int]:
    """An integer lo..hi (hi None: no upper bound)."""
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if v < lo or (hi is not None and v > hi):
            raise argparse.ArgumentTypeError(f"must be {_span(lo, hi)} (got {v})")
        return v
    parse.__name__ = "integer"
    return parse


def float_in(lo: float, hi: float | None = None, *, above: bool = False) -> Callable[[str], float]:
    """A finite number lo..hi; `above`: strictly greater than lo."""
    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not math.isfinite(v) or (v <= lo if above else v < lo) or (hi is not None and v > hi):
            low = f"above {lo:g}" if above else f"at least {lo:g}"
            raise argparse.ArgumentTypeError(f"must be a finite number {low}" + (f" and at most {hi:g}" if hi is not None else "")
                                             + f" (got {text})")
        return v
    parse.__name__ = "number"
    return parse


random_seed = int_in(0, 2**32 - 1)
"""A random seed as NumPy takes it (a negative one would end in a traceback)."""


def int_list(lo: int, hi: int | None = None) -> Callable[[str], list[int]]:
    """A comma list of distinct integers lo..hi, at least one: `1,2,3,5`."""
    return _list_of(int_in(lo, hi), "whole numbers like 1,2,3")


def float_list(lo: float, hi: float) -> Callable[[str], list[float]]:
    """A comma list of distinct finite numbers lo..hi, at least one: `0,0.05,0.1`."""
    return _list_of(float_in(lo, hi), "numbers like 0,0.05,0.1")


def _list_of(one: Callable[[str], Any], what: str) -> Callable[[str], list]:
    def parse(text: str) -> list:
        parts = [p.strip() for p in text.split(",")]
        if not text.strip() or any(not p for p in parts):
            raise argparse.ArgumentTypeError(f"{text!r}: expected a comma list of {what}")
        values = [one(p) for p in parts]
        if len(set(values)) != len(values):
            raise argparse.ArgumentTypeError(f"{text!r}: a value is repeated")
        return values
    parse.__name__ = "list"
    return parse


def label_list(text: str) -> str:
    """Comma-separated class names: at least two, distinct, printable. Returned unchanged (callers split)."""
    labels = [s.strip() for s in text.split(",")]
    if len(labels) < 2 or any(not s for s in labels):
        raise argparse.ArgumentTypeError(f"{text!r}: expected at least two comma-separated names")
    if len(set(labels)) != len(labels):
        dup = sorted({s for s in labels if labels.count(s) > 1})
        raise argparse.ArgumentTypeError(f"{text!r}: {', '.join(dup)} appears more than once")
    if not all(s.isprintable() for s in labels):
        raise argparse.ArgumentTypeError("labels must not contain control characters")
    return text


def _span(lo: int, hi: int | None) -> str:
    return f"at least {lo}" if hi is None else f"between {lo} and {hi}"
