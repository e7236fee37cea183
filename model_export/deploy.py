"""`emotion-export deploy`: copy NAME.tflite + NAME.json to a Pi over ssh, swap them in, reload the service.

Steps (each an argv list, no local shell; remote arguments are shell-quoted):
  1. ssh HOST mkdir -p DIR
  2. scp MODEL.tflite HOST:DIR/.NAME.tflite.new ; scp MODEL.json HOST:DIR/.NAME.json.new
  3. ssh HOST: check the copy's sha256, `sync` both copies to disk, then `mv -f` the .tflite and then
     the .json into place, then `sync` the folder (a power cut soon after must not leave an empty or
     cut-off file under the final name; the device falls back to its bundled model if it ever does).
     Each rename is atomic; between the two (microseconds) the pair disagrees, and the device,
     which checks the sha256 in NAME.json against NAME.tflite, refuses such a pair rather than use
     it. The service only reads the files at start and on reload, which comes after both renames.
  4. ssh HOST sudo systemctl reload SERVICE (SIGHUP: the service keeps the old model if the new one fails)
With --sudo the copies are staged in the login user's home and moved in with `sudo install`.
A model the device could not use (bad metadata, sha256 mismatch, non-grayscale input, tensors
that disagree with the metadata) is refused before anything is copied.
"""
from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from edge.contract import metadata_path, read_model_info
from edge.errors import EdgeError, ModelError
from edge.text import printable

DEFAULT_REMOTE_DIR = "/var/lib/emotion-edge/models"
HOST_RE = re.compile(r"^(?:[A-Za-z0-9._-]+@)?[A-Za-z0-9][A-Za-z0-9._-]*$")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
DIR_RE = re.compile(r"^/[A-Za-z0-9._/-]*$")


class DeployError(EdgeError):
    """A deploy step failed or its arguments are unsafe (names the step)."""


@dataclass(frozen=True)
class Step:
    what: str
    argv: list[str]
    cleanup: list[str] | None = None  # run when this step fails: removes what it may have left on the Pi


def validate_model(model: str | Path, log=print) -> None:
    """Refuse, before copying, a model the device's EmotionClassifier would refuse."""
    model = Path(model)
    if model.suffix != ".tflite":
        raise ModelError(f"{model}: deploy takes a NAME.tflite (export a Keras model first)")
    info = read_model_info(model)  # metadata present, well-formed, grayscale, dtype, sha256
    try:
        from edge.classify import EmotionClassifier
    except ImportError:  # the edge package always ships it; keep deploy usable if it moves
        from model_export.predictors import TFLitePredictor as EmotionClassifier  # type: ignore[assignment]
    clf = EmotionClassifier(model, num_threads=1)  # loads the interpreter and checks the tensors
    clf.close()
    from edge.config import DEFAULT_COLORS
    from edge.led import spare_colors

    spare = spare_colors(info.labels, DEFAULT_COLORS)
    if spare:
        log(f"note: labels {', '.join(f'{k} (LED {v})' for k, v in spare.items())} have no default LED colour "
            f"and get these spare ones; set [led] colors on the device to choose")


NEAR_CHANCE = 1.5
"""A model whose recorded accuracy is below this many times chance (1 / number of labels) reads faces
hardly better than a die: 21 % for 7 labels (the bundled model: about 71 %)."""
ONE_CLASS_SHARE = 0.9
"""A model that gives one class for this share of the evaluation faces is stuck (often a wrong input range)."""


def quality_problems(info) -> tuple[list[str], str]:
    """(problems, what was checked) from NAME.json's evaluation numbers, as `export` recorded them:
    accuracy against chance, and the share of faces given the most-predicted class."""
    m = info.metrics or {}
    k = len(info.labels)
    acc, share = m.get("accuracy"), m.get("top_class_share")
    checked, problems = [], []
    if isinstance(acc, (int, float)) and not isinstance(acc, bool):
        chance = 1.0 / k
        checked.append(f"{m.get('split', 'test')} accuracy {acc:.1%} (n={m.get('n', '?')}; chance {chance:.1%})")
        if acc < NEAR_CHANCE * chance:
            problems.append(f"its {m.get('split', 'test')} accuracy {acc:.1%} is near chance ({chance:.1%} for {k} labels)")
    if isinstance(share, (int, float)) and not isinstance(share, bool):
        top = printable(m.get("top_class", "?"))
        checked.append(f"most-predicted class {top} {share:.0%} of faces")
        if share >= ONE_CLASS_SHARE:
            problems.append(f"it predicts {top} for {share:.0%} of faces (stuck on one class; often a wrong "
                            f"--input-range or --labels at export)")
    what = ("checked its metadata's evaluation: " + ", ".join(checked)) if checked else \
        "its metadata has no evaluation numbers (exported without --eval-data?): its accuracy is not checked"
    return problems, what


def check_quality(model: str | Path, force: bool, log=print) -> None:
    """Refuse, unless forced, a model that would replace the device's with one near chance or stuck on one class."""
    problems, what = quality_problems(read_model_info(model, check_sha=False))
    log(what)
    if not problems:
        return
    if not force:
        raise DeployError(f"{printable(model)}: {'; '.join(problems)}; it would replace the model on the device: "
                          f"pass --force to deploy it anyway")
    log(f"warning: {'; '.join(problems)}; deploying anyway (--force)")


def plan(model: str | Path, host: str, remote_dir: str = DEFAULT_REMOTE_DIR, name: str = "emotion",
         ssh_opts: list[str] | None = None, service: str = "emotion-edge", sudo: bool = False,
         reload: bool = True) -> list[Step]:
    """The commands a deploy runs, in order (what --dry-run prints)."""
    if not HOST_RE.fullmatch(host):  # fullmatch: `$` would let a trailing newline through
        raise DeployError(f"host {host!r}: expected user@host (letters, digits, '.', '-', '_')")
    if not NAME_RE.fullmatch(name):
        raise DeployError(f"--name {name!r}: use letters, digits, '-' and '_' only")
    remote_dir = remote_dir.rstrip("/") or "/"
    if not DIR_RE.fullmatch(remote_dir) or "/../" in remote_dir + "/":
        raise DeployError(f"--remote-dir {remote_dir!r}: must be an absolute path of letters, digits, '.', '-', '_', '/'")
    if not re.fullmatch(r"[A-Za-z0-9@._-]+", service):
        raise DeployError(f"--service {service!r}: not a systemd unit name")
    model = Path(model)
    meta = metadata_path(model)
    sha = read_model_info(model, check_sha=False).sha256
    local = _local_path  # scp reads `evil:x.tflite` as a remote host: always ./relative or /absolute
    opts = list(ssh_opts or [])
    ssh = ["ssh", *opts, "--", host]
    scp = ["scp", "-q", *opts, "--"]
    final_t, final_j = f"{remote_dir}/{name}.tflite", f"{remote_dir}/{name}.json"
    new_t, new_j = f"{remote_dir}/.{name}.tflite.new", f"{remote_dir}/.{name}.json.new"
    q = shlex.quote
    steps: list[Step] = []
    if sudo:
        stage_t, stage_j = f".emotion-export.{name}.tflite", f".emotion-export.{name}.json"  # in the login home
        clean = f"rm -f {q(stage_t)} {q(stage_j)}; sudo -n rm -f {q(new_t)} {q(new_j)} 2>/dev/null || true"
        steps.append(Step("copy model", scp + [local(model), f"{host}:{stage_t}"], ssh + [clean]))
        steps.append(Step("copy metadata", scp + [local(meta), f"{host}:{stage_j}"], ssh + [clean]))
        check = f"echo {q(sha + '  ' + stage_t)} | sha256sum -c --status"
        swap = (f"set -e; {check}; sudo mkdir -p {q(remote_dir)}; "
                f"sudo install -m 0644 {q(stage_t)} {q(new_t)}; sudo install -m 0644 {q(stage_j)} {q(new_j)}; "
                f"sudo sync -- {q(new_t)} {q(new_j)}; "
                f"sudo mv -f {q(new_t)} {q(final_t)}; sudo mv -f {q(new_j)} {q(final_j)}; sudo sync -- {q(remote_dir)}; "
                f"rm -f {q(stage_t)} {q(stage_j)}")
    else:
        steps.append(Step("make remote folder", ssh + [f"mkdir -p {q(remote_dir)}"]))
        clean = f"rm -f {q(new_t)} {q(new_j)}"
        steps.append(Step("copy model", scp + [local(model), f"{host}:{new_t}"], ssh + [clean]))
        steps.append(Step("copy metadata", scp + [local(meta), f"{host}:{new_j}"], ssh + [clean]))
        check = f"echo {q(sha + '  ' + new_t)} | sha256sum -c --status"
        swap = (f"set -e; {check}; sync -- {q(new_t)} {q(new_j)}; "
                f"mv -f {q(new_t)} {q(final_t)}; mv -f {q(new_j)} {q(final_j)}; sync -- {q(remote_dir)}")
    steps.append(Step("swap in (sha256 checked)", ssh + [f"trap {q(clean)} EXIT; {swap}"]))  # no .new left on failure
    if reload:
        steps.append(Step("reload service", ssh + [f"sudo systemctl reload {q(service)}"]))
    return steps


RECALIBRATE = ("a calibration belongs to the model it was made with: if this model is new to the device, it now "
               "ignores its old calibration (one warning), so run `emotion-edge calibrate` there again")


def _local_path(p: Path) -> str:
    """A local file as scp must see it: a name with ':' before any '/' would be taken as HOST:PATH."""
    s = str(p)
    return s if s.startswith("/") else "./" + s


PERMISSION_DENIED = re.compile(r"Permission denied\s*$", re.MULTILINE)
"""How scp, mkdir and mv say a remote folder is not writable (ssh's login refusal says 'Permission denied (publickey...)')."""


def _run_step(step: Step) -> tuple[int, str]:
    """Run one step; its stderr is passed on (non-printable characters escaped) and returned."""
    try:
        res = subprocess.run(step.argv, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    except FileNotFoundError:
        raise DeployError(f"{step.argv[0]} not found; install an OpenSSH client") from None
    err = res.stderr.decode("utf-8", "replace")
    for line in err.splitlines():
        print(printable(line), file=sys.stderr, flush=True)
    return res.returncode, err


def _failure(step: Step, code: int, err: str, line: str, sudo: bool) -> DeployError:
    """The one-line error for a failed step; 'Permission denied' on the Pi's folder points at --sudo."""
    hint = ""
    if PERMISSION_DENIED.search(err):
        hint = ("; the remote folder is not writable by this login: add --sudo (copies are staged in its home and "
                "moved in with sudo)") if not sudo else "; sudo on the Pi could not write there either"
    return DeployError(f"{step.what} failed (exit {code}){hint}: {printable(line)}")


def deploy(model: str | Path, host: str, *, remote_dir: str = DEFAULT_REMOTE_DIR, name: str = "emotion",
           ssh_opts: list[str] | None = None, service: str = "emotion-edge", sudo: bool = False,
           reload: bool = True, dry_run: bool = False, force: bool = False, log=print) -> list[Step]:
    validate_model(model, log)
    steps = plan(model, host, remote_dir, name, ssh_opts, service, sudo, reload)  # unsafe arguments refused first
    check_quality(model, force, log)
    log(summary(model, host, remote_dir, name, service, reload, dry_run))
    for i, step in enumerate(steps, 1):
        line = shlex.join(step.argv)
        if dry_run:
            log(f"step {i}/{len(steps)}: {step.what}")
            print(line)
            continue
        log(f"step {i}/{len(steps)}: {step.what}: {line}")
        code, err = _run_step(step)
        if code != 0:
            if step.cleanup:  # best effort: the copy may have left half a file
                subprocess.run(step.cleanup, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, check=False)
            raise _failure(step, code, err, line, sudo)
    if not dry_run:
        log(f"deployed {Path(model).name} as {remote_dir.rstrip('/')}/{name}.tflite on {host}; {_model_setting(remote_dir, name)}")
        log(RECALIBRATE)
    return steps


def _model_setting(remote_dir: str, name: str) -> str:
    """Whether the device needs classify.model changed (docs/PI.md: unset = the deployed default path)."""
    target = f"{remote_dir.rstrip('/')}/{name}.tflite"
    if target == f"{DEFAULT_REMOTE_DIR}/emotion.tflite":
        return "the service uses it while classify.model is unset (the default); leave classify.model unset"
    return f"set classify.model = \"{target}\" in the device's config (only {DEFAULT_REMOTE_DIR}/emotion.tflite is found by itself)"


def summary(model: str | Path, host: str, remote_dir: str, name: str, service: str, reload: bool, dry_run: bool) -> str:
    """One line before the steps: what replaces what on which host, with which labels and accuracy."""
    info = read_model_info(model, check_sha=False)
    m = info.metrics
    acc = (f", {m.get('split', 'test')} accuracy {m['accuracy']:.1%} (n={m.get('n', '?')})"
           if isinstance(m.get("accuracy"), (int, float)) else ", no accuracy in its metadata")
    then = f", then reload {service}" if reload else " (no reload)"
    return (f"{'dry run: would copy' if dry_run else 'deploy:'} {Path(model).name} ({len(info.labels)} labels: "
            f"{','.join(info.labels)}{acc}) to {host}:{remote_dir.rstrip('/')}/{name}.tflite + .json, replacing "
            f"what is there{then}; {_model_setting(remote_dir, name)}")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="NAME.tflite with NAME.json beside it (from emotion-export export)")
    p.add_argument("host", help="user@host of the Pi")
    p.add_argument("--remote-dir", default=DEFAULT_REMOTE_DIR)
    p.add_argument("--name", default="emotion", help="remote file name stem (NAME.tflite, NAME.json)")
    p.add_argument("--service", default="emotion-edge", help="systemd unit to reload")
    p.add_argument("--ssh-opt", action="append", default=[], metavar="OPT",
                   help="extra option for both ssh and scp, in -o form or -i KEY: --ssh-opt=-oPort=2222 --ssh-opt=-i --ssh-opt=~/.ssh/pi (repeatable)")
    p.add_argument("--sudo", action="store_true", help="the remote folder needs root: stage in home, move in with sudo")
    p.add_argument("--no-reload", action="store_true", help="copy only; do not reload the service")
    p.add_argument("--dry-run", action="store_true", help="check the model and print the commands; copy nothing")
    p.add_argument("--force", action="store_true", help="deploy a model whose recorded evaluation is near chance or "
                   "stuck on one class (refused otherwise)")


def run(args: argparse.Namespace) -> int:
    deploy(args.model, args.host, remote_dir=args.remote_dir, name=args.name, ssh_opts=args.ssh_opt,
           service=args.service, sudo=args.sudo, reload=not args.no_reload, dry_run=args.dry_run, force=args.force,
           log=lambda m: print(m, file=sys.stderr, flush=True))
    return 0
