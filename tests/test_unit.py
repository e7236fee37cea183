"""The systemd unit: `systemd-analyze verify` on a staged install, hardening score, required settings."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from edge.service import service
from edge.config import DEFAULT_CONFIG_PATH

REPO = Path(__file__).resolve().parents[1]
UNIT = REPO / "systemd" / "emotion-edge.service"
SYSTEM_UNITS = Path("/usr/lib/systemd/system")


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """[Section] -> key -> every value (DeviceAllow= and friends repeat)."""
    out: dict[str, dict[str, list[str]]] = {}
    sec = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            sec = out.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        sec.setdefault(key.strip(), []).append(value.strip())
    return out


@pytest.fixture(scope="module")
def unit() -> dict[str, dict[str, list[str]]]:
    return parse_unit(UNIT.read_text())


def one(unit, sec: str, key: str) -> str:
    vals = unit[sec].get(key)
    assert vals, f"[{sec}] {key}= missing"
    return vals[-1]


def seconds(v: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(s|min|ms)?", v)
    assert m, v
    return float(m[1]) * {"s": 1, None: 1, "min": 60, "ms": 1e-3}[m[2]]


def test_notify_watchdog_restart(unit):
    assert one(unit, "Service", "Type") == "notify"
    assert one(unit, "Service", "NotifyAccess") == "main"
    assert seconds(one(unit, "Service", "WatchdogSec")) >= 10
    assert one(unit, "Service", "Restart") == "on-failure"
    restart = seconds(one(unit, "Service", "RestartSec"))
    assert restart >= 5
    assert one(unit, "Service", "RestartPreventExitStatus") == str(service.EXIT_BAD_INPUT)
    assert "-HUP $MAINPID" in one(unit, "Service", "ExecReload")
    # Rate limit: a tight crash loop trips it, the slow RestartSec cadence never does.
    interval = seconds(one(unit, "Unit", "StartLimitIntervalSec"))
    burst = int(one(unit, "Unit", "StartLimitBurst"))
    assert 2 <= burst and restart * burst > interval
    assert seconds(one(unit, "Service", "TimeoutStopSec")) > service.STOP_GRACE


def test_user_dirs_environment(unit):
    assert one(unit, "Service", "User") == "emotion-edge"
    assert set(one(unit, "Service", "SupplementaryGroups").split()) == {"video", "gpio"}
    assert one(unit, "Service", "StateDirectory") == "emotion-edge"
    assert one(unit, "Service", "ConfigurationDirectory") == "emotion-edge"
    assert one(unit, "Service", "WorkingDirectory") == "/var/lib/emotion-edge"
    assert "PYTHONUNBUFFERED=1" in " ".join(unit["Service"]["Environment"]).split()
    assert one(unit, "Service", "SyslogIdentifier") == "emotion-edge"
    exec_start = one(unit, "Service", "ExecStart").split()
    assert exec_start[:4] == ["/opt/emotion-edge/bin/python", "-P", "-m", "edge.service"]
    assert exec_start[exec_start.index("--config") + 1] == str(DEFAULT_CONFIG_PATH)
    assert one(unit, "Install", "WantedBy") == "multi-user.target"


def test_hardening_keeps_camera_and_gpio(unit):
    s = unit["Service"]
    for key, value in [("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"), ("ProtectHome", "yes"),
                       ("PrivateTmp", "yes"), ("DevicePolicy", "closed")]:
        assert one(unit, "Service", key) == value
    assert s.get("PrivateDevices", ["no"])[-1] == "no"  # would hide /dev/video*, /dev/gpiochip*
    allowed = {v.split()[0] for v in s["DeviceAllow"]}
    assert {"char-video4linux", "char-media", "char-dma_heap", "char-gpiochip"} <= allowed
    assert all(v.split()[1] == "rw" for v in s["DeviceAllow"])
    assert "ProcSubset" not in s  # gpiozero reads /proc/cpuinfo and /proc/device-tree for the board


def test_camera_device_modules_load_before_the_unit_starts(unit):
    """DeviceAllow=char-video4linux/char-media resolve from /proc/devices at start; on a Pi those
    majors appear only once udev loads videodev and mc, possibly after we start (boot race)."""
    for mod in ("modprobe@videodev.service", "modprobe@mc.service"):
        assert mod in " ".join(unit["Unit"].get("Wants", [])).split(), mod
        assert mod in " ".join(unit["Unit"].get("After", [])).split(), mod
        if SYSTEM_UNITS.is_dir():  # the template exists in systemd 252 (Bookworm) and later
            assert (SYSTEM_UNITS / "modprobe@.service").exists() or not (SYSTEM_UNITS / "systemd-udevd.service").exists()


def test_service_module_has_the_entry_point():
    assert callable(service.main)
    p = subprocess.run([str(REPO / ".venv/bin/python"), "-P", "-m", "edge.service", "--help"],
                       capture_output=True, text=True, cwd="/", timeout=60,
                       env={**os.environ, "PYTHONPATH": str(REPO)})
    assert p.returncode == 0 and "--config" in p.stdout


@pytest.fixture(scope="module")
def staged_root(tmp_path_factory) -> Path:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze not installed (apt-get install systemd)")
    if not SYSTEM_UNITS.is_dir():
        pytest.skip(f"{SYSTEM_UNITS} missing: no systemd units to verify against")
    root = tmp_path_factory.mktemp("root")
    (root / "etc").mkdir()
    (root / "etc/os-release").write_text("ID=raspbian\nVERSION_CODENAME=bookworm\n")
    p = subprocess.run(["bash", str(REPO / "install.sh"), "--root", str(root), "--no-venv"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    # verify needs the targets the unit names and executables for ExecStart=/ExecReload=.
    (root / "usr/lib/systemd").mkdir(parents=True)
    shutil.copytree(SYSTEM_UNITS, root / "usr/lib/systemd/system", symlinks=True)
    for exe in ("opt/emotion-edge/bin/python", "bin/kill"):
        (root / exe).parent.mkdir(parents=True, exist_ok=True)
        (root / exe).write_text("#!/bin/sh\n")
        (root / exe).chmod(0o755)
    return root


def test_systemd_analyze_verify(staged_root):
    p = subprocess.run(["systemd-analyze", "verify", f"--root={staged_root}", "emotion-edge.service"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and p.stderr.strip() == "", p.stderr


def test_systemd_analyze_verify_catches_a_broken_unit(staged_root, tmp_path):
    """The check can fail: a unit whose ExecStart binary is missing is reported."""
    unit = staged_root / "etc/systemd/system/emotion-edge-broken.service"
    unit.write_text(UNIT.read_text().replace("/opt/emotion-edge/bin/python", "/opt/nowhere/python"))
    try:
        p = subprocess.run(["systemd-analyze", "verify", f"--root={staged_root}", "emotion-edge-broken.service"],
                           capture_output=True, text=True, timeout=60)
    finally:
        unit.unlink()
    assert p.returncode != 0 and "/opt/nowhere/python" in p.stderr


def test_systemd_analyze_security_exposure(staged_root):
    p = subprocess.run(["systemd-analyze", "security", "--offline=true", f"--root={staged_root}",
                        "--no-pager", "emotion-edge.service"], capture_output=True, text=True, timeout=60)
    m = re.search(r"Overall exposure level for emotion-edge\.service: (\d+\.\d+)", p.stdout + p.stderr)
    if p.returncode != 0 and m is None:
        pytest.skip(f"systemd-analyze security --offline not supported here: {p.stderr.strip()[:200]}")
    assert m, p.stdout[-500:]
    score = float(m[1])
    print(f"systemd-analyze security exposure: {score}")
    assert score <= 2.0  # "OK" band; systemd's default for an unhardened service is 9.6
