"""edge/ runs on a Pi without TensorFlow: importing every module must not pull it (or Keras) in."""
from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import edge

ROOT = Path(__file__).resolve().parents[1]


def test_no_edge_module_imports_tensorflow_or_keras():
    mods = sorted(m.name for m in pkgutil.walk_packages(edge.__path__, "edge."))
    assert "edge.loop" in mods and "edge.service" in mods
    code = (
        "import importlib, sys\n"
        f"for m in {mods!r}: importlib.import_module(m)\n"
        "bad = sorted(k for k in sys.modules if k.split('.')[0] in ('tensorflow', 'keras', 'tf_keras'))\n"
        "print(bad); sys.exit(1 if bad else 0)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def test_cli_help_lists_every_command():
    r = subprocess.run([sys.executable, "-m", "edge.cli", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    for cmd in ("run", "log", "bench", "check", "config", "status", "photo"):
        assert cmd in r.stdout
