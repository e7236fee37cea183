#!/usr/bin/env bash
# CI stage: install.sh and the unit under a real systemd. A Debian Bookworm root (mmdebstrap, this
# machine's architecture) with stand-in python3-picamera2/python3-lgpio packages boots in
# systemd-nspawn; a oneshot unit inside runs .ci/pi-systemd-checks.sh (install as user pi through
# sudo, no-camera start, replayed clip, status, log as pi, reloads, SIGKILL and watchdog restarts,
# deploy, stop, re-install, uninstall, purge, install again) and powers the container off.
#
#   sudo .ci/pi-systemd.sh [--keep]     (--keep: leave the root in $PI_CI_WORK for a look)
set -euo pipefail
KEEP=${1:-}
STAGE=systemd
# shellcheck source=.ci/pi-lib.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/pi-lib.sh"
[[ $(id -u) == 0 ]] || fail "needs root (mmdebstrap, systemd-nspawn)"

WORK=${PI_CI_WORK:-/var/tmp/emotion-edge-ci}
ROOT=$WORK/bookworm-systemd
T0=$SECONDS
cleanup() { if [[ $KEEP != --keep ]]; then rm -rf "$ROOT"; fi; }
trap cleanup EXIT

need_tools mmdebstrap nspawn dpkg-deb
mkdir -p "$WORK"
if [[ -x $ROOT/usr/bin/python3 && $KEEP == --keep ]]; then
    log "reusing $ROOT (without the last run's install)"
    rm -rf "$ROOT"/etc/emotion-edge "$ROOT"/var/lib/emotion-edge "$ROOT"/opt/emotion-edge "$ROOT"/srv/ci-frames \
        "$ROOT"/etc/systemd/system/emotion-edge.service* "$ROOT"/etc/systemd/system/multi-user.target.wants/emotion-edge.service
else
    log "building the bookworm root (mmdebstrap)"
    # procps: /bin/kill for ExecReload (priority "important": on every Raspberry Pi OS, not in a minimal root)
    make_root bookworm "$(dpkg --print-architecture)" "$ROOT" systemd systemd-sysv dbus sudo ca-certificates procps \
        python3-venv python3-numpy python3-opencv opencv-data
fi
log "root ready after $((SECONDS - T0)) s"

make_standins "$ROOT/opt/ci-standins"
trust_host_cas "$ROOT"
echo "deb [trusted=yes] file:/opt/ci-standins ./" >"$ROOT/etc/apt/sources.list.d/ci-standins.list"
rm -rf "$ROOT/home/pi/emotion-edge" "$ROOT/ci"
chroot "$ROOT" id pi >/dev/null 2>&1 || chroot "$ROOT" useradd --create-home --shell /bin/bash pi
echo 'pi ALL=(ALL) NOPASSWD: ALL' >"$ROOT/etc/sudoers.d/pi"
chmod 0440 "$ROOT/etc/sudoers.d/pi"
copy_source "$ROOT/home/pi/emotion-edge"
chroot "$ROOT" chown -R pi:pi /home/pi/emotion-edge
mkdir -p "$ROOT/ci"
install -m 0755 "$CI_DIR/pi-systemd-checks.sh" "$ROOT/ci/checks.sh"
cat >"$ROOT/etc/systemd/system/ci-checks.service" <<'UNIT'
[Unit]
Description=emotion-edge CI checks (then power off)
After=multi-user.target
[Service]
Type=simple
StandardOutput=file:/ci/checks.log
StandardError=inherit
ExecStart=/bin/sh -c '/ci/checks.sh; echo $? >/ci/rc; systemctl poweroff --no-block'
[Install]
WantedBy=multi-user.target
UNIT
mkdir -p "$ROOT/etc/systemd/system/multi-user.target.wants"
ln -sf /etc/systemd/system/ci-checks.service "$ROOT/etc/systemd/system/multi-user.target.wants/ci-checks.service"
# Nothing in the container needs a login prompt.
ln -sf /dev/null "$ROOT/etc/systemd/system/console-getty.service"

t=$SECONDS
log "booting the container"
rc=0
timeout "${PI_CI_SYSTEMD_TIMEOUT:-1200}" systemd-nspawn --quiet --boot --register=no --keep-unit \
    --resolv-conf=copy-host -D "$ROOT" >"$WORK/systemd-console.log" 2>&1 || rc=$?
cat "$ROOT/ci/checks.log" 2>/dev/null || true
if [[ ! -s $ROOT/ci/rc ]]; then
    tail -n 40 "$WORK/systemd-console.log"
    fail "the checks did not finish (nspawn exit $rc)"
fi
[[ $(cat "$ROOT/ci/rc") == 0 ]] || fail "checks inside the container (exit $(cat "$ROOT/ci/rc"))"
log "container: $((SECONDS - t)) s; passed in $((SECONDS - T0)) s"
