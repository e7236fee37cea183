"""tests/mutate.py, the mutation sweep: it finds what a test leaves open and always restores the module."""
from __future__ import annotations

from .mutate import main, mutants

MODULE = '''"""Doc 1."""
def clamp(v, hi=10):
    return v if v < hi else hi


def both(a, b, c):
    return a and b and c
'''
TEST = '''import sys
sys.path.insert(0, __file__.rsplit("/", 1)[0])
from mod import both, clamp

def test_it():
    assert clamp(3) == 3 and clamp(50) == 10
    assert both(1, 1, 1) and not both(1, 0, 1)
'''


def test_every_operator_boolean_and_number_but_not_docstrings():
    changes = [(m.line, MODULE[m.start:m.end], m.new) for m in mutants(MODULE)]
    # both `and`s of the chain; not the digit in the docstring
    assert changes == [(2, "10", "11"), (3, "<", "<="), (7, "and", "or"), (7, "and", "or")]
    first, second = [m for m in mutants(MODULE) if m.line == 7]
    assert first.start < second.start


def test_survivors_are_listed_and_the_module_is_restored(tmp_path, monkeypatch, capsys):
    mod = tmp_path / "mod.py"
    mod.write_text(MODULE)
    (tmp_path / "test_mod.py").write_text(TEST)
    monkeypatch.chdir(tmp_path)
    assert main([str(mod), str(tmp_path / "test_mod.py")]) == 0
    out = capsys.readouterr().out
    # clamp(3) and clamp(50) never meet the boundary: v < hi vs v <= hi, and hi 10 vs 11, go unnoticed
    assert f"survived {mod}:3: '<' -> '<='" in out and f"survived {mod}:2: '10' -> '11'" not in out
    assert "4 changes, 1 survived" in out
    assert mod.read_text() == MODULE
    # pytest options after --, and --lines: only line 3's change, then none selected at all
    assert main([str(mod), str(tmp_path / "test_mod.py"), "--lines", "3", "--", "-k", "test_it"]) == 0
    assert "1 changes, 1 survived" in capsys.readouterr().out
    assert main([str(mod), str(tmp_path / "test_mod.py"), "--", "-k", "no_such_test"]) == 2  # pytest found nothing
    assert mod.read_text() == MODULE


def test_line_numbers_take_ranges():
    from .mutate import line_numbers

    assert line_numbers("3") == {3}
    assert line_numbers("3,18-20,7") == {3, 7, 18, 19, 20}
