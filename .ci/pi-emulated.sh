#!/usr/bin/env bash
# CI stage: the Pi's own platform under arm64 emulation (qemu-user through binfmt_misc).
# An arm64 Debian root (bookworm: Python 3.11, NumPy 1.24, OpenCV 4.6; trixie: Python 3.13,
# NumPy 2.x, OpenCV 4.10) gets the project through install.sh itself, unmodified (stand-in
# python3-picamera2/python3-lgpio, so the Pi-only modules are absent; in a chroot systemctl ignores
# start/reload), then: `emotion-edge check`, `run --source sample --led console`, the service with
# source = "auto" and no camera (exit 1, no mood written), and a small TensorFlow-free test set.
# Timings under emulation are not performance figures (the classifier runs ~100x slower).
#
#   sudo .ci/pi-emulated.sh bookworm|trixie [--keep]     (--keep: leave the root in $PI_CI_WORK)
set -euo pipefail
SUITE=${1:?usage: $0 bookworm|trixie [--keep]}
KEEP=${2:-}
STAGE="emulated-$SUITE"
# shellcheck source=.ci/pi-lib.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/pi-lib.sh"
case $SUITE in bookworm | trixie) ;; *) fail "suite must be bookworm or trixie" ;; esac
[[ $(id -u) == 0 ]] || fail "needs root (mmdebstrap, chroot, binfmt_misc)"

WORK=${PI_CI_WORK:-/var/tmp/emotion-edge-ci}
ROOT=$WORK/$SUITE-arm64
# The tests the Pi's platform can change: NumPy/OpenCV/LiteRT/SQLite/gpiozero versions. No TF.
TESTS=(tests/test_preprocess.py tests/test_classify.py tests/test_detect.py tests/test_sources.py
       tests/test_config.py tests/test_mood.py tests/test_led.py tests/test_eventlog.py
       tests/test_eventlog_reader.py tests/test_contract.py tests/test_pi_failures.py)
T0=$SECONDS
mounted=()

cleanup() {
    local m
    for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount -l "${mounted[i]}" 2>/dev/null || true; done
    if [[ $KEEP != --keep ]]; then rm -rf "$ROOT"; fi
}
trap cleanup EXIT

# SYSTEMD_OFFLINE=1: systemctl enables units and ignores daemon-reload/restart, as in any chroot
# (its own chroot test fails when the host's PID 1 is not systemd).
in_root() {
    chroot "$ROOT" /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin HOME=/root LANG=C.UTF-8 \
        SYSTEMD_OFFLINE=1 "$@"
}

need_tools mmdebstrap qemu dpkg-deb
need_binfmt_arm64
mkdir -p "$WORK"

if [[ -x $ROOT/usr/bin/python3 && $KEEP == --keep ]]; then
    log "reusing $ROOT"
else
    log "building the arm64 $SUITE root (mmdebstrap)"
    make_root "$SUITE" arm64 "$ROOT" ca-certificates python3 python3-venv python3-numpy python3-opencv \
        opencv-data python3-gpiozero systemd
fi
log "root ready after $((SECONDS - T0)) s"

make_standins "$ROOT/opt/ci-standins"
trust_host_cas "$ROOT"
echo "deb [trusted=yes] file:/opt/ci-standins ./" >"$ROOT/etc/apt/sources.list.d/ci-standins.list"
rm -rf "$ROOT/src"
copy_source "$ROOT/src"
cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf"
# No /sys: XNNPACK's cpuinfo reads the (x86) host's CPU topology there and crashes under qemu-user;
# without it, it prints three "Error in cpuinfo" lines and runs on one core.
for m in proc dev; do
    mkdir -p "$ROOT/$m"
    case $m in
        proc) mount -t proc proc "$ROOT/proc" ;;
        *) mount --bind "/$m" "$ROOT/$m" ;;
    esac
    mounted+=("$ROOT/$m")
done

t=$SECONDS
# A Pi has apt lists; install.sh looks for python3-picamera2 in them before it runs apt-get update.
in_root apt-get update -qq >/dev/null || fail "apt-get update in the root"
log "install.sh inside the root"
in_root bash -c 'cd /src && ./install.sh' >"$WORK/$SUITE-install.log" 2>&1 \
    || { tail -n 30 "$WORK/$SUITE-install.log"; fail "install.sh"; }
grep -q "Running in chroot, ignoring" "$WORK/$SUITE-install.log" || log "note: systemctl did not say it ignored the start"
log "install.sh done in $((SECONDS - t)) s"
in_root /opt/emotion-edge/bin/python -c 'import sys, numpy, cv2
from ai_edge_litert.interpreter import Interpreter
print(f"python {sys.version.split()[0]}, numpy {numpy.__version__} ({numpy.__file__}), opencv {cv2.__version__}")'
in_root /opt/emotion-edge/bin/python -c 'import numpy; assert numpy.__file__.startswith("/usr/lib/python3/"), numpy.__file__' \
    || fail "the venv's NumPy is not the system one"
for mod in picamera2 lgpio; do
    if in_root /opt/emotion-edge/bin/python -c "import $mod" 2>/dev/null; then fail "$mod importable: the stand-in should leave it absent"; fi
done

t=$SECONDS
in_root emotion-edge check || fail "emotion-edge check"
log "check: $((SECONDS - t)) s"

t=$SECONDS
in_root emotion-edge run --source sample --led console --max-frames "${PI_CI_FRAMES:-60}" --db /tmp/ci-run.db \
    | tee "$WORK/$SUITE-run.log" || fail "emotion-edge run"
grep -q "^stopped (max_frames)" "$WORK/$SUITE-run.log" || fail "run did not stop after its frames"
grep -q "mood " "$WORK/$SUITE-run.log" || fail "run showed no mood on the console LED"
log "run: $((SECONDS - t)) s"

t=$SECONDS
rc=0
in_root /opt/emotion-edge/bin/python -P -m edge.service --config /etc/emotion-edge/config.toml \
    --db /tmp/ci-service.db --status-file /tmp/ci-status.json 2>"$WORK/$SUITE-service.err" || rc=$?
cat "$WORK/$SUITE-service.err"
[[ $rc == 1 ]] || fail "service with source = auto and no camera: exit $rc, want 1"
grep -q "no camera found" "$WORK/$SUITE-service.err" || fail "service did not name the missing camera"
[[ ! -e $ROOT/tmp/ci-service.db ]] || fail "service wrote a log without a camera"
log "service without camera: exit 1, no log ($((SECONDS - t)) s)"

t=$SECONDS
in_root /opt/emotion-edge/bin/python -m pip install --quiet --disable-pip-version-check \
    --constraint /opt/emotion-edge/constraints.txt "pytest>=8" >/dev/null || fail "pip install pytest"
# Wall-clock pacing tests measure the emulator, not the code: left to the native run.
in_root bash -c "cd /src && /opt/emotion-edge/bin/python -m pytest -q -p no:cacheprovider -m 'not tf and not data and not slow' \
    --deselect tests/test_sources.py::test_video_file_realtime_sleeps_to_clip_pace ${TESTS[*]}" \
    || fail "tests"
log "tests: $((SECONDS - t)) s"
log "passed in $((SECONDS - T0)) s"
