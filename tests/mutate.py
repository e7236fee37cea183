"""A small mutation sweep: does a module's test file notice when its code changes?

    .venv/bin/python tests/mutate.py edge/mood.py tests/test_mood.py [--lines 44,57] [-- -k "not slow"]

It changes one thing at a time in the module (a comparison or arithmetic operator, `and`/`or`, a
number), runs the tests, and lists each change the tests did not notice ("survived"). Many survivors
are equivalent (a sentinel -1 vs -2, a rounding digit); the others are behaviour no test pins down.
The module is rewritten in place and restored afterwards, also on Ctrl-C or SIGTERM, so run it on a
clean checkout and nothing else at the same time. Standard library only; the tests run as they are.
"""
from __future__ import annotations

import argparse
import ast
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

SWAPS: dict[type, tuple[str, str]] = {
    ast.Lt: ("<", "<="), ast.LtE: ("<=", "<"), ast.Gt: (">", ">="), ast.GtE: (">=", ">"),
    ast.Eq: ("==", "!="), ast.NotEq: ("!=", "=="),
    ast.Add: ("+", "-"), ast.Sub: ("-", "+"), ast.Mult: ("*", "/"), ast.Div: ("/", "*"),
    ast.And: ("and", "or"), ast.Or: ("or", "and"),
}


@dataclass(frozen=True)
class Mutant:
    line: int
    start: int   # character offsets into the source
    end: int
    new: str


def _offsets(src: str) -> list[int]:
    starts, n = [], 0
    for line in src.splitlines(keepends=True):
        starts.append(n)
        n += len(line)
    return starts


def _docstring_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            lines.update(range(body[0].lineno, body[0].end_lineno + 1))
    return lines


def mutants(src: str) -> list[Mutant]:
    """Every single-token change this tool makes, in source order."""
    tree = ast.parse(src)
    at = _offsets(src)
    pos = lambda line, col: at[line - 1] + col  # noqa: E731
    skip = _docstring_lines(tree)
    found: list[Mutant] = []

    def between(left: ast.AST, right: ast.AST, op: type, line: int) -> None:
        old, new = SWAPS[op]
        a, b = pos(left.end_lineno, left.end_col_offset), pos(right.lineno, right.col_offset)
        i = src.find(old, a, b)
        if i >= 0 and src[i:i + 2] not in ("**", "//"):
            found.append(Mutant(line, i, i + len(old), new))

    for node in ast.walk(tree):
        if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in SWAPS:
            between(node.left, node.comparators[0], type(node.ops[0]), node.lineno)
        elif isinstance(node, ast.BinOp) and type(node.op) in SWAPS:
            between(node.left, node.right, type(node.op), node.lineno)
        elif isinstance(node, ast.BoolOp):
            for left, right in zip(node.values, node.values[1:]):
                between(left, right, type(node.op), left.end_lineno)
        elif (isinstance(node, ast.Constant) and type(node.value) in (int, float) and node.lineno not in skip):
            v = node.value
            new = repr(v + 1) if isinstance(v, int) else repr(v * 1.5 if v else 0.5)
            found.append(Mutant(node.lineno, pos(node.lineno, node.col_offset), pos(node.end_lineno, node.end_col_offset), new))
    return sorted(found, key=lambda m: (m.start, m.new))


def _passes(tests: list[str], timeout: float) -> bool:
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests]
    try:
        return subprocess.run(cmd, capture_output=True, timeout=timeout).returncode == 0
    except subprocess.TimeoutExpired:
        return False  # a change that hangs the tests is noticed too (CI would time out)


def line_numbers(text: str) -> set[int]:
    """'3,18-20' -> {3, 18, 19, 20}."""
    out: set[int] = set()
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out.update(range(int(lo), int(hi or lo) + 1))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("module", type=Path)
    p.add_argument("tests", nargs="+", help="test files (pytest options go after --)")
    p.add_argument("--lines", default="", help="only these line numbers (comma list; ranges like 18-37)")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds one test run may take")
    argv = sys.argv[1:] if argv is None else list(argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    a = p.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    a.tests += extra
    src = a.module.read_text()
    todo = mutants(src)
    if a.lines:
        keep = line_numbers(a.lines)
        todo = [m for m in todo if m.line in keep]
    if not _passes(a.tests, a.timeout):
        print("the tests fail before any change: nothing to measure", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so `finally` restores the module
    lines = src.splitlines()
    survived = 0
    try:
        for m in todo:
            a.module.write_text(src[:m.start] + m.new + src[m.end:])
            if _passes(a.tests, a.timeout):
                survived += 1
                print(f"survived {a.module}:{m.line}: {src[m.start:m.end]!r} -> {m.new!r}   | {lines[m.line - 1].strip()[:100]}",
                      flush=True)
    finally:
        a.module.write_text(src)
    print(f"{a.module}: {len(todo)} changes, {survived} survived")
    return 0


if __name__ == "__main__":
    sys.exit(main())
