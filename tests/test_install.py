"""install.sh: shellcheck-clean, staged installs are idempotent, bad OS stops before any change."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
INSTALL = REPO / "install.sh"

OS_RELEASE = {
    "bookworm": 'PRETTY_NAME="Raspbian GNU/Linux 12 (bookworm)"\nID=raspbian\nID_LIKE=debian\nVERSION_CODENAME=bookworm\n',
    "trixie": 'PRETTY_NAME="Debian GNU/Linux 13 (trixie)"\nID=debian\nVERSION_CODENAME=trixie\n',
    "ubuntu": 'PRETTY_NAME="Ubuntu 24.04 LTS"\nID=ubuntu\nID_LIKE=debian\nVERSION_CODENAME=noble\n',
    "fedora": 'PRETTY_NAME="Fedora Linux 40"\nID=fedora\nVERSION_CODENAME=\n',
}


def install(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run(["bash", str(INSTALL), *args], capture_output=True, text=True, timeout=60)
    if check and p.returncode != 0:
        raise AssertionError(f"install.sh {' '.join(args)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p


def tree(root: Path) -> dict[str, tuple]:
    """Every path under root with its type, mode, content or link target and mtime."""
    out: dict[str, tuple] = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            p = Path(dirpath, name)
            st = p.lstat()
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = ("link", os.readlink(p), st.st_mtime_ns)
            elif p.is_dir():
                out[rel] = ("dir", st.st_mode)
            else:
                out[rel] = ("file", st.st_mode, p.read_bytes(), st.st_mtime_ns)
    return out


def staged(tmp_path: Path, os_name: str | None = "bookworm") -> Path:
    root = tmp_path / "root"
    if os_name:
        (root / "etc").mkdir(parents=True)
        (root / "etc" / "os-release").write_text(OS_RELEASE[os_name])
    return root


def test_shellcheck_clean():
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck not installed (apt-get install shellcheck)")
    p = subprocess.run(["shellcheck", "--shell=bash", str(INSTALL)], capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr


def test_strict_mode_and_syntax():
    text = INSTALL.read_text()
    assert "set -euo pipefail" in text
    assert subprocess.run(["bash", "-n", str(INSTALL)]).returncode == 0


@pytest.mark.parametrize("os_name", ["bookworm", "trixie"])
def test_staged_install_writes_the_files_and_runs_nothing(tmp_path, os_name):
    root = staged(tmp_path, os_name)
    out = install("--root", str(root), "--no-venv").stdout
    unit = root / "etc/systemd/system/emotion-edge.service"
    assert unit.read_bytes() == (REPO / "systemd/emotion-edge.service").read_bytes()
    wants = root / "etc/systemd/system/multi-user.target.wants/emotion-edge.service"
    assert os.readlink(wants) == "/etc/systemd/system/emotion-edge.service"
    assert os.readlink(root / "usr/local/bin/emotion-edge") == "/opt/emotion-edge/bin/emotion-edge"
    cfg = root / "etc/emotion-edge/config.toml"
    assert oct(cfg.stat().st_mode & 0o777) == "0o644"
    # The default config is all comments and loads as the defaults.
    from edge.config import Config, load_config
    assert load_config(cfg) == Config()
    assert "# [led]" in cfg.read_text() and "# active_high = true" in cfg.read_text()
    for cmd in ("apt-get install -y --no-install-recommends python3-picamera2 python3-opencv opencv-data "
                "python3-gpiozero python3-lgpio python3-venv", "useradd --system", "systemctl enable emotion-edge.service"):
        assert f"would run: {cmd}" in out
    assert "journalctl -u emotion-edge -f" in out and "emotion-edge log" in out


def test_second_run_changes_nothing(tmp_path):
    root = staged(tmp_path)
    install("--root", str(root), "--no-venv")
    first = tree(root)
    out = install("--root", str(root), "--no-venv").stdout
    assert tree(root) == first
    assert "wrote:" not in out and "linked:" not in out
    assert "unchanged: /etc/systemd/system/emotion-edge.service" in out


def test_users_config_is_never_overwritten(tmp_path):
    root = staged(tmp_path)
    install("--root", str(root), "--no-venv")
    cfg = root / "etc/emotion-edge/config.toml"
    cfg.write_text("[led]\nactive_high = false\n")
    out = install("--root", str(root), "--no-venv").stdout
    assert cfg.read_text() == "[led]\nactive_high = false\n"
    assert "keeping your /etc/emotion-edge/config.toml" in out
    assert (root / "etc/emotion-edge/config.toml.default").read_text().startswith("# emotion-edge configuration")


@pytest.mark.parametrize("os_name,words", [("ubuntu", "unsupported OS 'Ubuntu 24.04 LTS'"),
                                           ("fedora", "unsupported OS 'Fedora Linux 40'")])
def test_unsupported_os_stops_before_any_change(tmp_path, os_name, words):
    root = staged(tmp_path, os_name)
    before = tree(root)
    p = install("--root", str(root), "--no-venv", check=False)
    assert p.returncode != 0
    assert words in p.stderr and "--dev" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
    assert tree(root) == before
    assert "would run" not in p.stdout


def test_old_debian_release_is_refused(tmp_path):
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/os-release").write_text('PRETTY_NAME="Raspbian GNU/Linux 11 (bullseye)"\nID=raspbian\nVERSION_CODENAME=bullseye\n')
    p = install("--root", str(root), check=False)
    assert p.returncode != 0 and "need Bookworm or Trixie" in p.stderr
    assert sorted(x.name for x in root.rglob("*")) == ["etc", "os-release"]


def test_dry_run_writes_nothing(tmp_path):
    root = staged(tmp_path)
    before = tree(root)
    out = install("--root", str(root), "--dry-run", "--no-venv").stdout
    assert tree(root) == before
    assert "would write: /etc/systemd/system/emotion-edge.service" in out


def test_uninstall_keeps_config_unless_purge(tmp_path):
    root = staged(tmp_path)
    install("--root", str(root), "--no-venv")
    (root / "var/lib/emotion-edge").mkdir(parents=True)
    (root / "var/lib/emotion-edge/emotion-edge.db").write_bytes(b"data")
    out = install("--root", str(root), "--uninstall").stdout
    assert not (root / "etc/systemd/system/emotion-edge.service").exists()
    assert not (root / "etc/systemd/system/multi-user.target.wants/emotion-edge.service").is_symlink()
    assert not (root / "opt/emotion-edge").exists()
    assert not (root / "usr/local/bin/emotion-edge").is_symlink()
    assert (root / "etc/emotion-edge/config.toml").is_file()
    assert (root / "var/lib/emotion-edge/emotion-edge.db").read_bytes() == b"data"
    assert "would run: systemctl disable --now emotion-edge.service" in out
    out = install("--root", str(root), "--uninstall", "--purge").stdout
    assert not (root / "etc/emotion-edge").exists() and not (root / "var/lib/emotion-edge").exists()
    assert "would run: userdel emotion-edge" in out
    assert "would run: groupdel emotion-edge\n" in out  # the group outlives the user while pi is in it
    assert (root / "etc/os-release").is_file()  # nothing outside ours


@pytest.mark.parametrize("args,words", [(["--bogus"], "unknown option --bogus"),
                                        (["--purge"], "--purge only goes with --uninstall"),
                                        (["--root"], "--root needs a directory")])
def test_bad_options(args, words):
    p = install(*args, check=False)
    assert p.returncode != 0 and words in p.stderr


def test_dev_dry_run_uses_the_checkout_venv():
    p = install("--dev", "--dry-run")
    assert p.returncode == 0
    assert f"{REPO}/.venv/bin/python -m pip install --quiet -e {REPO}\\[test\\,export\\,jax\\,opencv\\,mqtt\\]" in p.stdout


def _host_codename() -> str:
    try:
        text = Path("/etc/os-release").read_text()
    except OSError:
        return ""
    vals = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    return vals.get("ID", "").strip('"') + ":" + vals.get("VERSION_CODENAME", "").strip('"')


def test_missing_camera_stack_stops_a_dry_run_on_this_host():
    """On plain Debian (no Raspberry Pi repository) the real-system checks refuse before any change."""
    if _host_codename() not in ("debian:bookworm", "debian:trixie", "raspbian:bookworm", "raspbian:trixie"):
        pytest.skip(f"host is {_host_codename() or 'unknown'}, not Debian/Raspberry Pi OS Bookworm/Trixie")
    if shutil.which("apt-cache") is None:
        pytest.skip("no apt-cache on this host")
    if subprocess.run(["apt-cache", "show", "python3-picamera2"], capture_output=True).returncode == 0:
        pytest.skip("this host has python3-picamera2 (a Raspberry Pi OS host): the camera stack is there")
    p = install("--dry-run", check=False)
    assert p.returncode != 0
    assert p.stderr.strip() == ("install.sh: error: camera stack missing: apt has no python3-picamera2 (is this "
                                "Raspberry Pi OS with archive.raspberrypi.com?); on a desktop use ./install.sh --dev")
    assert "would run" not in p.stdout


# ------------------------------------------------------------------ issue 14: 32-bit Pi OS, deploy folder
def _with_fake_dpkg(tmp_path: Path, arch: str) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    dpkg = bin_dir / "dpkg"
    dpkg.write_text(f'#!/bin/sh\n[ "$1" = --print-architecture ] && echo {arch} && exit 0\nexit 1\n')
    dpkg.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}


@pytest.mark.parametrize("arch,words", [("armhf", "32-bit Raspberry Pi OS (armhf) is not supported"),
                                        ("i386", "unsupported architecture 'i386'")])
def test_32bit_userland_is_refused_before_any_change(tmp_path, arch, words):
    """A 32-bit userland on a 64-bit kernel reports aarch64 to uname; dpkg knows better. No apt, no user, no venv."""
    p = subprocess.run(["bash", str(INSTALL), "--dry-run"], capture_output=True, text=True, timeout=60,
                       env=_with_fake_dpkg(tmp_path, arch))
    assert p.returncode == 1
    assert words in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert "would run" not in p.stdout and "would write" not in p.stdout


def test_64bit_userland_passes_the_architecture_check(tmp_path):
    p = subprocess.run(["bash", str(INSTALL), "--dry-run"], capture_output=True, text=True, timeout=60,
                       env=_with_fake_dpkg(tmp_path, "arm64"))
    assert "architecture" not in p.stderr and "32-bit" not in p.stderr, p.stderr


def test_deploy_folder_is_writable_by_the_installing_user(tmp_path):
    """`emotion-export deploy MODEL pi@HOST` logs in as pi: the models folder must take pi's files."""
    root = staged(tmp_path)
    p = subprocess.run(["bash", str(INSTALL), "--root", str(root), "--no-venv"], capture_output=True, text=True,
                       timeout=60, env={**os.environ, "SUDO_USER": "pi"})
    assert p.returncode == 0, p.stderr
    out = p.stdout
    lines = [ln for ln in out.splitlines() if ln.startswith("would run:")]
    order = [next(i for i, ln in enumerate(lines) if cmd in ln) for cmd in (
        "useradd --system", "groupadd --system -f emotion-edge-deploy", "usermod -a -G emotion-edge-deploy pi",
        "install -d -o emotion-edge -g emotion-edge -m 0755 /var/lib/emotion-edge",
        "install -d -o emotion-edge -g emotion-edge-deploy -m 2775 /var/lib/emotion-edge/models",
        "systemctl restart emotion-edge.service")]
    assert order == sorted(order), lines  # the state folder exists, owned, before systemd starts the unit
    assert "pi may now deploy models to /var/lib/emotion-edge/models" in out
    from model_export.deploy import DEFAULT_REMOTE_DIR
    assert DEFAULT_REMOTE_DIR == "/var/lib/emotion-edge/models"
    purge = install("--root", str(root), "--uninstall", "--purge").stdout
    assert "would run: groupdel emotion-edge-deploy" in purge


# -- issue 29 K: every spelling of / is the running system ----------------------------------------

@pytest.mark.parametrize("spelling", ["//", "/tmp/..", "", "///", "/./", "link-to-slash"])
@pytest.mark.parametrize("mode", [[], ["--uninstall", "--purge"]])
def test_a_root_that_resolves_to_slash_is_refused(tmp_path, spelling, mode):
    """`--root // --uninstall --purge` removed /var/lib/emotion-edge on the live system; `--root ""` targeted it
    silently. --dry-run rides along so that even an installer without the guard changes nothing here."""
    if spelling == "link-to-slash":
        (tmp_path / "slash").symlink_to("/")
        spelling = str(tmp_path / "slash")
    p = install("--dry-run", "--root", spelling, *mode, check=False)
    assert p.returncode != 0, p.stdout
    assert "running system" in p.stderr and p.stderr.count("\n") == 1, p.stderr
    assert "would" not in p.stdout  # refused before anything was planned
    p = install("--dry-run", f"--root={spelling}", *mode, check=False)
    assert p.returncode != 0 and "running system" in p.stderr


def test_a_staging_root_spelled_with_dots_is_resolved(tmp_path):
    root = staged(tmp_path)
    (tmp_path / "x").mkdir()
    install("--root", f"{tmp_path}/x/..//root/", "--no-venv")
    assert (root / "etc/systemd/system/emotion-edge.service").is_file()
    assert not (tmp_path / "x" / "etc").exists()


# the interpreter without this checkout's venv: its editable install would import edge/ from the real
# checkout whatever PYTHONPATH says, and the copy under test would never be imported
BASE_PYTHON = getattr(sys, "_base_executable", sys.executable)
FAKE_VENV_PYTHON = r"""#!/bin/sh
echo "python $*" >> "$FAKE_LOG"
for a in "$@"; do
  case $a in *"[mqtt]") ls "${a%\[mqtt\]}" >> "$FAKE_LOG"; ls "${a%\[mqtt\]}/model_export" | sed 's|^|model_export/|' >> "$FAKE_LOG" ;; esac
done
"""


def test_install_leaves_nothing_of_roots_in_the_users_checkout(tmp_path):
    """`sudo ./install.sh` left root-owned edge/__pycache__ (and pip's build/, *.egg-info) in the checkout."""
    co = tmp_path / "checkout"
    co.mkdir()
    for name in ("install.sh", "pyproject.toml", "README.md"):
        shutil.copy(REPO / name, co / name)
    for name in ("edge", "systemd", "docs"):
        shutil.copytree(REPO / name, co / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (co / "model_export" / "runs" / "r1").mkdir(parents=True)
    (co / "model_export" / "__init__.py").write_text("")
    (co / "model_export" / "runs" / "r1" / "best.keras").write_bytes(b"weights")
    before = {str(p.relative_to(co)) for p in co.rglob("*")}
    root = staged(tmp_path)
    py = root / "opt/emotion-edge/bin/python"  # an existing venv: only its pip install runs
    py.parent.mkdir(parents=True)
    py.write_text(FAKE_VENV_PYTHON)
    py.chmod(0o755)
    log = tmp_path / "calls.log"
    p = subprocess.run(["bash", "./install.sh", "--root", str(root)], capture_output=True, text=True, cwd=co,
                       timeout=120, env={**{k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
                                         "FAKE_LOG": str(log), "PYTHON": BASE_PYTHON})
    assert p.returncode == 0, p.stderr
    after = {str(p.relative_to(co)) for p in co.rglob("*")}
    assert after == before  # no __pycache__, build/ or emotion_edge.egg-info
    calls = log.read_text().splitlines()
    pip = next(c for c in calls if c.startswith("python -m pip install"))
    src = pip.split()[-1].removesuffix("[mqtt]")
    assert not src.startswith(str(co)) and not Path(src).exists()  # a copy, removed afterwards
    assert {"pyproject.toml", "edge", "model_export"} <= set(calls[calls.index(pip) + 1:])
    assert "model_export/__init__.py" in calls and "model_export/runs" not in calls  # no training runs copied
