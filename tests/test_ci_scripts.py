"""The CI stage scripts (.ci/): shell-clean, and the stand-in Raspberry Pi packages they build are
real, installable .debs with no Python module in them."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

CI = Path(__file__).resolve().parents[1] / ".ci"
SCRIPTS = [CI / "run", *sorted(CI.glob("pi-*.sh"))]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_ci_scripts_are_shellcheck_clean(script):
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck not installed (apt-get install shellcheck)")
    p = subprocess.run(["shellcheck", "-x", "--shell=bash", f".ci/{script.name}"], cwd=CI.parent,
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr


def test_standin_packages_are_empty_debs_with_an_apt_index(tmp_path):
    if shutil.which("dpkg-deb") is None:
        pytest.skip("dpkg-deb not installed")
    repo = tmp_path / "standins"
    subprocess.run(["bash", "-c", f'. "{CI}/pi-lib.sh" && make_standins "{repo}"'], check=True)
    index = (repo / "Packages").read_text()
    for name in ("python3-picamera2", "python3-lgpio"):
        deb = repo / f"{name}_0~ci_all.deb"
        assert f"Package: {name}\n" in index and f"Filename: ./{deb.name}\n" in index
        files = subprocess.run(["dpkg-deb", "-c", str(deb)], capture_output=True, text=True, check=True).stdout
        assert ".py" not in files and "dist-packages" not in files  # nothing importable
    assert "Depends: python3-numpy" in index  # as the real picamera2: the system NumPy comes with it
