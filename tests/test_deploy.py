"""emotion-export deploy: dry run, a real run through stand-in ssh/scp programs, refusals before copying."""
from __future__ import annotations

import json
import os
import shlex
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from edge.errors import ModelError
from model_export.cli import main
from model_export.deploy import DeployError, deploy, plan

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "tests" / "fixtures" / "models"

# ssh stand-in: records argv, then runs the remote command locally (in a fake home, with a fake sudo)
FAKE_SSH = r"""#!/bin/sh
echo "ssh $*" >> "$FAKE_LOG"
while [ "$1" != "--" ]; do shift; done
shift; shift  # "--" and the host
cd "$FAKE_HOME" && PATH="$FAKE_BIN:$PATH" exec sh -c "$1"
"""
# scp stand-in: records argv, copies SRC to the path after "host:" (relative = fake home)
FAKE_SCP = r"""#!/bin/sh
echo "scp $*" >> "$FAKE_LOG"
[ -n "$FAKE_SCP_FAIL" ] && exit 1
while [ "$1" != "--" ]; do shift; done
dst="${3#*:}"
[ -n "$FAKE_SCP_DENY" ] && { echo "scp: $dst: Permission denied" >&2; exit 1; }
cd "$FAKE_HOME" && cp "$2" "$dst" || exit 1
case "$dst" in *"${FAKE_SCP_BREAK_ON:-//}"*) exit 1;; esac  # a transfer cut off after writing
"""
# sync stand-in: records its operands and whether each still existed (the .new copies: before the renames)
FAKE_SYNC = r"""#!/bin/sh
for a in "$@"; do
  [ "$a" = "--" ] && continue
  if [ -e "$a" ]; then echo "sync $a" >> "$FAKE_LOG"; else echo "sync missing $a" >> "$FAKE_LOG"; fi
done
"""
# sudo stand-in: systemctl is recorded only; anything else runs as the user
FAKE_SUDO = r"""#!/bin/sh
echo "sudo $*" >> "$FAKE_LOG"
[ "$1" = -n ] && shift
[ "$1" = systemctl ] && exit 0
exec "$@"
"""


@pytest.fixture
def fake(tmp_path, monkeypatch):
    bin_dir, home = tmp_path / "bin", tmp_path / "home"
    bin_dir.mkdir()
    home.mkdir()
    for name, text in (("ssh", FAKE_SSH), ("scp", FAKE_SCP), ("sudo", FAKE_SUDO), ("sync", FAKE_SYNC)):
        p = bin_dir / name
        p.write_text(text)
        p.chmod(p.stat().st_mode | stat.S_IEXEC)
    log = tmp_path / "calls.log"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_LOG", str(log))
    monkeypatch.setenv("FAKE_HOME", str(home))
    monkeypatch.setenv("FAKE_BIN", str(bin_dir))
    return {"log": log, "home": home, "remote": tmp_path / "pi" / "models"}


def _calls(fake) -> list[str]:
    return fake["log"].read_text().splitlines() if fake["log"].exists() else []


def _model(tmp_path: Path, name: str = "tiny_int8") -> Path:
    d = tmp_path / "local"
    d.mkdir(exist_ok=True)
    for suf in (".tflite", ".json"):
        shutil.copy(MODELS / f"{name}{suf}", d / f"{name}{suf}")
    return d / f"{name}.tflite"


def test_dry_run_prints_commands_and_copies_nothing(tmp_path, fake, capsys):
    model = _model(tmp_path)
    rc = main(["deploy", str(model), "pi@raspberrypi", "--dry-run", "--remote-dir", str(fake["remote"]),
               "--ssh-opt=-oPort=2222"])
    assert rc == 0
    lines = capsys.readouterr().out.strip().splitlines()
    argvs = [shlex.split(line) for line in lines]
    assert [a[0] for a in argvs] == ["ssh", "scp", "scp", "ssh", "ssh"]
    assert argvs[1][-1] == f"pi@raspberrypi:{fake['remote']}/.emotion.tflite.new"
    assert all("-oPort=2222" in a for a in argvs)
    assert argvs[-1][-1] == "sudo systemctl reload emotion-edge"
    assert _calls(fake) == [] and not fake["remote"].exists()


def test_deploy_copies_swaps_and_reloads(tmp_path, fake):
    model = _model(tmp_path)
    said = []
    deploy(model, "pi@raspberrypi", remote_dir=str(fake["remote"]), name="mood", log=said.append)
    assert said[-1].startswith("a calibration belongs to the model") and "emotion-edge calibrate" in said[-1]
    r = fake["remote"]
    assert (r / "mood.tflite").read_bytes() == model.read_bytes()
    assert (r / "mood.json").read_bytes() == model.with_suffix(".json").read_bytes()
    assert sorted(p.name for p in r.iterdir()) == ["mood.json", "mood.tflite"]  # no .new left behind
    calls = _calls(fake)
    assert calls[-1] == "sudo systemctl reload emotion-edge"
    assert [c.split()[0] for c in calls] == ["ssh", "scp", "scp", "ssh", "sync", "sync", "sync", "ssh", "sudo"]
    # the device-side pair is what the edge accepts
    from edge.classify import EmotionClassifier

    with EmotionClassifier(r / "mood.tflite") as clf:
        assert clf.labels[3] == "happy"
    # a second deploy replaces the pair
    other = _model(tmp_path, "tiny_uint8")
    deploy(other, "pi@raspberrypi", remote_dir=str(r), name="mood", log=lambda m: None)
    assert (r / "mood.tflite").read_bytes() == other.read_bytes()
    assert json.loads((r / "mood.json").read_text())["input"]["dtype"] == "uint8"


def test_sudo_mode_stages_in_home(tmp_path, fake):
    model = _model(tmp_path)
    deploy(model, "pi@host", remote_dir=str(fake["remote"]), sudo=True, reload=False, log=lambda m: None)
    assert (fake["remote"] / "emotion.tflite").read_bytes() == model.read_bytes()
    assert list(fake["home"].iterdir()) == []  # staging files removed
    assert not any("systemctl" in c for c in _calls(fake))
    assert any(c.startswith("sudo install -m 0644") for c in _calls(fake))


@pytest.mark.parametrize("sudo", [False, True])
def test_copies_reach_the_disk_before_they_are_renamed_into_place(tmp_path, fake, sudo):
    """Issue 29 B: a power cut after a deploy left an empty emotion.tflite (nothing was synced)."""
    model = _model(tmp_path)
    r = fake["remote"]
    deploy(model, "pi@host", remote_dir=str(r), sudo=sudo, reload=False, log=lambda m: None)
    synced = [c for c in _calls(fake) if c.startswith("sync")]
    assert synced == [f"sync {r}/.emotion.tflite.new", f"sync {r}/.emotion.json.new", f"sync {r}"]


def test_corrupt_copy_is_not_swapped_in(tmp_path, fake):
    model = _model(tmp_path)
    # the copy arrives damaged: the remote sha256 check stops the swap
    steps = plan(model, "pi@h", str(fake["remote"]))
    for s in steps[:3]:
        subprocess.run(s.argv, check=True)
    (fake["remote"] / ".emotion.tflite.new").write_bytes(b"truncated")
    r = subprocess.run(steps[3].argv)
    assert r.returncode != 0 and not (fake["remote"] / "emotion.tflite").exists()
    assert list(fake["remote"].iterdir()) == []  # issue 30 item 9: the refused copies are removed on the Pi too


def test_refused_before_copying(tmp_path, fake):
    model = _model(tmp_path)
    model.write_bytes(model.read_bytes() + b"\0")  # sha256 no longer matches its json
    with pytest.raises(ModelError, match="sha256"):
        deploy(model, "pi@h", remote_dir=str(fake["remote"]), log=lambda m: None)
    wrong = _model(tmp_path, "wrong_shape")
    with pytest.raises(ModelError):
        deploy(wrong, "pi@h", remote_dir=str(fake["remote"]), log=lambda m: None)
    rgb = _model(tmp_path, "rgb3")
    with pytest.raises(ModelError):
        deploy(rgb, "pi@h", remote_dir=str(fake["remote"]), log=lambda m: None)
    assert _calls(fake) == []


@pytest.mark.parametrize("host, kw, match", [
    ("-oProxyCommand=touch /tmp/x", {}, "expected user@host"),
    ("pi@h; rm -rf /", {}, "expected user@host"),
    ("pi@h", {"name": "../etc/passwd"}, "--name"),
    ("pi@h", {"remote_dir": "relative/dir"}, "--remote-dir"),
    ("pi@h", {"remote_dir": "/var/lib/$(reboot)"}, "--remote-dir"),
])
def test_unsafe_arguments_refused(tmp_path, fake, host, kw, match):
    with pytest.raises(DeployError, match=match):
        deploy(_model(tmp_path), host, log=lambda m: None, **kw)
    assert _calls(fake) == []


def test_failed_step_is_named_exit_2(tmp_path, fake, monkeypatch):
    monkeypatch.setenv("FAKE_SCP_FAIL", "1")
    r = subprocess.run([sys.executable, "-m", "model_export.cli", "deploy", str(_model(tmp_path)), "pi@h",
                        "--remote-dir", str(fake["remote"])], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 2
    assert "emotion-export: error: copy model failed (exit 1)" in r.stderr
    assert not (fake["remote"] / "emotion.tflite").exists()


def test_dry_run_summary_steps_and_model_setting(tmp_path, fake, capsys):
    """Issue 12: one summary line first, each step named, and the classify.model advice that docs/PI.md gives."""
    model = _model(tmp_path)
    meta = json.loads(model.with_suffix(".json").read_text())
    meta["labels"][5] = "contempt"  # a label of its own: the spare LED colour is named
    model.with_suffix(".json").write_text(json.dumps(meta))
    assert main(["deploy", str(model), "pi@raspberrypi", "--dry-run"]) == 0
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("dry run: would copy"))
    assert "tiny_int8.tflite (7 labels: angry,disgust,fear,happy,sad,contempt,neutral" in lines[first]
    assert "pi@raspberrypi:/var/lib/emotion-edge/models/emotion.tflite" in lines[first]
    assert "leave classify.model unset" in lines[first]
    assert [line.split(":")[0] for line in lines[first + 1:]] == [f"step {i}/5" for i in range(1, 6)]
    assert "contempt (LED #00ffff)" in err
    assert len(out.strip().splitlines()) == 5  # stdout: the commands only
    assert main(["deploy", str(model), "pi@raspberrypi", "--dry-run", "--remote-dir", "/opt/m", "--name", "x"]) == 0
    assert 'set classify.model = "/opt/m/x.tflite"' in capsys.readouterr().err


def test_help_shows_defaults():
    from model_export.cli import build_parser

    p = build_parser()
    sub = next(a for a in p._actions if a.dest == "command").choices  # noqa: SLF001
    assert "(default: 30)" in " ".join(sub["train"].format_help().split())
    assert "(default: /var/lib/emotion-edge/models)" in " ".join(sub["deploy"].format_help().split())
    assert "(default: PrivateTest)" in " ".join(sub["evaluate"].format_help().split())
    assert "(default: 500)" in " ".join(sub["export"].format_help().split())


def _with_metrics(model: Path, **metrics) -> Path:
    meta = model.with_suffix(".json")
    d = json.loads(meta.read_text())
    d["metrics"] = {"split": "PrivateTest", "n": 500, **metrics}
    meta.write_text(json.dumps(d))
    return model


def test_a_model_near_chance_or_stuck_on_one_class_needs_force(tmp_path, fake):
    """Issue 30 item 9: a 16.6 % model answering one class for every face replaced a 71.8 % one without a word."""
    bad = _with_metrics(_model(tmp_path), accuracy=0.166, top_class="happy", top_class_share=1.0)
    said: list[str] = []
    with pytest.raises(DeployError) as e:
        deploy(bad, "pi@h", remote_dir=str(fake["remote"]), log=said.append)
    msg = str(e.value)
    assert "accuracy 16.6% is near chance (14.3% for 7 labels)" in msg and "predicts happy for 100% of faces" in msg
    assert "pass --force" in msg and _calls(fake) == []
    assert "checked its metadata's evaluation: PrivateTest accuracy 16.6% (n=500; chance 14.3%), most-predicted " \
           "class happy 100% of faces" in said
    deploy(bad, "pi@h", remote_dir=str(fake["remote"]), force=True, log=said.append)
    assert any(m.startswith("warning: ") and "(--force)" in m for m in said)
    assert (fake["remote"] / "emotion.tflite").read_bytes() == bad.read_bytes()
    # one problem is enough; a good model passes and says what was checked
    skewed = _with_metrics(bad, accuracy=0.70, top_class="happy", top_class_share=0.95)
    with pytest.raises(DeployError, match="stuck on one class"):
        deploy(skewed, "pi@h", remote_dir=str(fake["remote"]), log=lambda m: None)
    good = _with_metrics(bad, accuracy=0.718, top_class="happy", top_class_share=0.31)
    said.clear()
    deploy(good, "pi@h", remote_dir=str(fake["remote"]), dry_run=True, log=said.append)
    assert any("PrivateTest accuracy 71.8%" in m for m in said)
    no_numbers = _model(tmp_path, "tiny_uint8")
    said.clear()
    deploy(no_numbers, "pi@h", remote_dir=str(fake["remote"]), dry_run=True, log=said.append)
    assert any("has no evaluation numbers" in m and "not checked" in m for m in said)


def test_permission_denied_on_the_pi_suggests_sudo(tmp_path, fake, monkeypatch, capsys):
    monkeypatch.setenv("FAKE_SCP_DENY", "1")
    with pytest.raises(DeployError) as e:
        deploy(_model(tmp_path), "pi@h", remote_dir=str(fake["remote"]), log=lambda m: None)
    assert "copy model failed (exit 1); the remote folder is not writable by this login: add --sudo" in str(e.value)
    assert "Permission denied" in capsys.readouterr().err  # scp's own line still shown
    with pytest.raises(DeployError) as e:
        deploy(_model(tmp_path), "pi@h", remote_dir=str(fake["remote"]), sudo=True, log=lambda m: None)
    assert "add --sudo" not in str(e.value)


@pytest.mark.parametrize("sudo", [False, True])
def test_a_failed_copy_leaves_no_new_files_on_the_pi(tmp_path, fake, monkeypatch, sudo):
    """Issue 30 item 9: a transfer cut off during the metadata left .emotion.tflite.new and a partial .json.new."""
    monkeypatch.setenv("FAKE_SCP_BREAK_ON", ".json")
    with pytest.raises(DeployError, match="copy metadata failed"):
        deploy(_model(tmp_path), "pi@h", remote_dir=str(fake["remote"]), sudo=sudo, log=lambda m: None)
    left = [p.name for d in (fake["remote"], fake["home"]) if d.exists() for p in d.iterdir()]
    assert left == []
