"""emotion-edge-mqtt.service: its own hardening, network only there, enabled only with [mqtt] host."""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.test_install import install, staged
from tests.test_unit import parse_unit, staged_root  # noqa: F401 (fixture)

REPO = Path(__file__).resolve().parents[1]
MQTT_UNIT = REPO / "systemd" / "emotion-edge-mqtt.service"
CAMERA_UNIT = REPO / "systemd" / "emotion-edge.service"
WANTS = "etc/systemd/system/multi-user.target.wants/emotion-edge-mqtt.service"


def test_network_only_in_the_bridge_unit():
    cam = parse_unit(CAMERA_UNIT.read_text())["Service"]
    assert cam["RestrictAddressFamilies"][-1].split() == ["AF_UNIX", "AF_NETLINK"] and cam["IPAddressDeny"] == ["any"]
    s = parse_unit(MQTT_UNIT.read_text())["Service"]
    assert set(s["RestrictAddressFamilies"][-1].split()) == {"AF_UNIX", "AF_INET", "AF_INET6"}
    assert s["User"] == ["emotion-edge"] and "SupplementaryGroups" not in s and "DeviceAllow" not in s
    for key in ("PrivateDevices", "NoNewPrivileges", "ProtectHome", "MemoryDenyWriteExecute", "PrivateUsers"):
        assert s[key] == ["yes"], key
    assert s["ProtectSystem"] == ["strict"] and "StateDirectory" not in s and "ReadWritePaths" not in s  # writes nothing
    assert s["ExecStart"][-1].split()[-1] == "publish" and s["RestartPreventExitStatus"] == ["2"]


def test_systemd_analyze_verify_and_security(staged_root):  # noqa: F811
    unit = staged_root / "etc/systemd/system/emotion-edge-mqtt.service"
    assert unit.read_bytes() == MQTT_UNIT.read_bytes()
    p = subprocess.run(["systemd-analyze", "verify", f"--root={staged_root}", "emotion-edge-mqtt.service"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and p.stderr.strip() == "", p.stderr
    p = subprocess.run(["systemd-analyze", "security", "--offline=true", f"--root={staged_root}",
                        "--no-pager", "emotion-edge-mqtt.service"], capture_output=True, text=True, timeout=60)
    m = re.search(r"Overall exposure level for emotion-edge-mqtt\.service: (\d+\.\d+)", p.stdout + p.stderr)
    if p.returncode != 0 and m is None:
        pytest.skip(f"systemd-analyze security --offline not supported here: {p.stderr.strip()[:200]}")
    assert m, p.stdout[-500:]
    print(f"emotion-edge-mqtt.service exposure: {m[1]}")
    assert float(m[1]) <= 1.5


def test_install_enables_the_bridge_only_when_mqtt_host_is_set(tmp_path):
    root = staged(tmp_path)
    out = install("--root", str(root), "--no-venv").stdout
    assert (root / "etc/systemd/system/emotion-edge-mqtt.service").read_bytes() == MQTT_UNIT.read_bytes()
    assert not (root / WANTS).is_symlink()
    assert "systemctl enable emotion-edge-mqtt.service" not in out and "MQTT: off" in out
    cfg = root / "etc/emotion-edge/config.toml"
    cfg.write_text(cfg.read_text() + '\n[mqtt]\nhost = "homeassistant.local"\n')
    out = install("--root", str(root), "--no-venv").stdout
    assert os.readlink(root / WANTS) == "/etc/systemd/system/emotion-edge-mqtt.service"
    assert "would run: systemctl enable emotion-edge-mqtt.service" in out and "homeassistant.local" in out
    cfg.write_text(cfg.read_text().replace('host = "homeassistant.local"', 'host = ""'))
    install("--root", str(root), "--no-venv")
    assert not (root / WANTS).is_symlink()
    cfg.write_text(cfg.read_text().replace('host = ""', "host = 5"))  # a broken config: left off, said so
    p = install("--root", str(root), "--no-venv")
    assert not (root / WANTS).is_symlink() and "MQTT left off" in p.stderr
    out = install("--root", str(root), "--uninstall").stdout
    assert "would run: systemctl disable --now emotion-edge-mqtt.service" in out
    assert not (root / "etc/systemd/system/emotion-edge-mqtt.service").exists()


def test_bridge_unit_is_not_stopped_with_the_camera_unit():
    """Issue 30.1: the bridge reports a stopped or dead camera service itself (its `service` availability
    topic); BindsTo=/PartOf= would instead take it down and, after a camera restart, leave it down."""
    u = parse_unit(MQTT_UNIT.read_text())["Unit"]
    assert "BindsTo" not in u and "PartOf" not in u and "emotion-edge.service" in u["After"][-1].split()


def test_uninstall_removes_the_device_from_the_broker(tmp_path):
    """install.sh --uninstall runs `publish --uninstall` (after stopping the bridge) when [mqtt] host is set,
    so Home Assistant does not keep a dead device from the broker's retained discovery."""
    root = staged(tmp_path)
    install("--root", str(root), "--no-venv")
    cfg = root / "etc/emotion-edge/config.toml"
    cfg.write_text(cfg.read_text() + '\n[mqtt]\nhost = "homeassistant.local"\n')
    out = install("--root", str(root), "--uninstall").stdout.splitlines()
    stop = out.index("would run: systemctl disable --now emotion-edge-mqtt.service")
    call = ("would run: /opt/emotion-edge/bin/python -P -m edge.cli --config /etc/emotion-edge/config.toml "
            "publish --uninstall")
    assert call in out and out.index(call) > stop, out
    root2 = staged(tmp_path / "two")
    install("--root", str(root2), "--no-venv")  # no [mqtt] host: nothing to remove
    assert not any("publish --uninstall" in line for line in install("--root", str(root2), "--uninstall").stdout.splitlines())
