#!/usr/bin/env bash
# Runs inside the systemd-nspawn container of .ci/pi-systemd.sh (as a oneshot unit, as root):
# the installer and the unit under a real systemd. Each check prints one line; the first failure
# ends the run with the journal's tail.
set -uo pipefail
SVC=emotion-edge
SRC=/home/pi/emotion-edge
STATE=/var/lib/emotion-edge
T0=$SECONDS

say() { printf '[%4d s] %s\n' "$((SECONDS - T0))" "$*"; }
fail() {
    say "FAILED: $*"
    journalctl -u "$SVC" --no-pager -n 40 -o short-monotonic || true
    exit 1
}
prop() { systemctl show -p "$1" --value "$SVC"; }
as_pi() { runuser -u pi -- "$@"; }
# wait_for SECONDS DESCRIPTION COMMAND...: poll COMMAND every 0.5 s until it succeeds.
wait_for() {
    local limit=$1 what=$2 end
    shift 2
    end=$((SECONDS + limit))
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < end)) || fail "$what (waited $limit s)"
        sleep 0.5
    done
}
# `emotion-edge status` exits 3 when the service is not running: read its text, not its status.
status_has() {
    local out
    out=$(emotion-edge status 2>&1) || true
    grep -q -- "$1" <<<"$out"
}
journal_has() { journalctl -u "$SVC" --no-pager -o cat --since "@$1" | grep -q -- "$2"; }

say "systemd $(systemctl --version | head -n1 | cut -d' ' -f2), $(. /etc/os-release && echo "$PRETTY_NAME")"
systemctl is-system-running --wait >/dev/null 2>&1 || true

# A Pi has apt lists; install.sh looks for python3-picamera2 in them before it runs apt-get update.
apt-get update -qq >/dev/null 2>&1 || fail "apt-get update"

# ------------------------------------------------------------ 1. install as pi through sudo
since=$(date +%s)
as_pi sudo -n "$SRC/install.sh" >/ci/install1.log 2>&1 || { tail -n 30 /ci/install1.log; fail "install.sh"; }
say "installed (install.sh as pi through sudo)"
id -nG pi | grep -qw emotion-edge-deploy || fail "pi is not in emotion-edge-deploy"
[[ $(stat -c %U:%G:%a $STATE) == emotion-edge:emotion-edge:755 ]] || fail "$STATE is $(stat -c %U:%G:%a $STATE)"
[[ $(stat -c %U:%G:%a $STATE/models) == emotion-edge:emotion-edge-deploy:2775 ]] || fail "models is $(stat -c %U:%G:%a $STATE/models)"

# ------------------------------------------------------------ 2. source = auto, no camera: exit 1, no mood
wait_for 90 "the no-camera start to fail with exit 1" test "$(prop ExecMainStatus)" = 1
[[ ! -e $STATE/emotion-edge.db ]] || fail "a log was written without a camera"
journal_has "$since" "no camera found" || fail "the journal does not name the missing camera"
status_has "no camera found" || fail "status does not show the camera error"
say "auto without camera: exit $(prop ExecMainStatus), $(prop ActiveState)/$(prop SubState), no log written, status names it"

# ------------------------------------------------------------ 3. a replayed clip at its own pace
mkdir -p /srv/ci-frames
/usr/bin/python3 - <<'PY' || fail "cannot extract the clip's frames"
import cv2, glob
clip = glob.glob("/opt/emotion-edge/lib/python3*/site-packages/edge/samples/sample.mp4")[0]
cap, i = cv2.VideoCapture(clip), 0
while True:
    ok, img = cap.read()
    if not ok:
        break
    cv2.imwrite(f"/srv/ci-frames/{i:04d}.png", cv2.cvtColor(img, cv2.COLOR_BGR2GRAY))
    i += 1
assert i > 300, i
PY
good_config() { printf '[source]\nsource = "/srv/ci-frames"\nrealtime = true\nfps = 4.0\n[log]\nsummary_interval = 3.0\n[mood]\nhalf_life = %s\n' "$1" >/etc/emotion-edge/config.toml; }
good_config 1.0
mkdir -p /etc/systemd/system/$SVC.service.d
printf '[Service]\nRestartSec=2\nWatchdogSec=8\n' >/etc/systemd/system/$SVC.service.d/ci.conf
systemctl daemon-reload
since=$(date +%s)
systemctl restart $SVC || fail "start on the replayed clip"
[[ $(prop ActiveState) == active ]] || fail "not active after start: $(prop ActiveState)"
say "started (Type=notify: READY=1 came): pid $(prop MainPID)"
wait_for 15 "STATUS= from the service" sh -c "systemctl show -p StatusText --value $SVC | grep -q fps"
say "STATUS=$(prop StatusText)"
as_pi emotion-edge status >/ci/status.txt 2>&1 || { cat /ci/status.txt; fail "emotion-edge status as pi"; }
grep -qi "running" /ci/status.txt || { cat /ci/status.txt; fail "status does not say running"; }
wait_for 20 "log rows readable by pi while the service runs" sh -c "runuser -u pi -- emotion-edge log | grep -q ."
say "pi reads status and log while the service runs ($(as_pi emotion-edge log | wc -l) lines)"
# pi asks the running service for a calibration through its request folder (group emotion-edge) and
# takes only the service's own answer: done, or a failure the service names (the clip may be smiling)
as_pi emotion-edge calibrate --seconds 3 >/ci/cal.txt 2>&1
grep -Eq "calibrated from|calibration failed:" /ci/cal.txt || { cat /ci/cal.txt; fail "calibrate through the service as pi"; }
say "pi calibrates through the service: $(tail -1 /ci/cal.txt | cut -c1-100)"

# ------------------------------------------------------------ 4. reload: good, then broken config
pid=$(prop MainPID)
since=$(date +%s)
good_config 2.0
systemctl reload $SVC || fail "reload"
wait_for 15 "'reloaded' in the journal" journal_has "$since" "reloaded: model"
[[ $(prop MainPID) == "$pid" && $(prop ActiveState) == active ]] || fail "reload restarted the service"
printf '[led]\ncolour = "red"\n' >/etc/emotion-edge/config.toml
since=$(date +%s)
systemctl reload $SVC || fail "reload with a broken config"
wait_for 15 "'reload failed' in the journal" journal_has "$since" "reload failed"
[[ $(prop MainPID) == "$pid" && $(prop ActiveState) == active ]] || fail "a broken config stopped the service"
status_has "reload failed" || fail "status does not show the failed reload"
good_config 1.0
say "reload: good config applied, broken config refused, same pid $pid"

# ------------------------------------------------------------ 5. SIGKILL, then a hung process: restarts
n0=$(prop NRestarts)
systemctl kill -s KILL $SVC
wait_for 30 "a restart after SIGKILL" sh -c "[ \"\$(systemctl show -p MainPID --value $SVC)\" != $pid ] && [ \"\$(systemctl show -p MainPID --value $SVC)\" != 0 ] && systemctl is-active -q $SVC"
pid=$(prop MainPID)
say "SIGKILL: restarted as pid $pid (NRestarts $n0 -> $(prop NRestarts))"
since=$(date +%s)
kill -STOP "$pid"
wait_for 40 "a watchdog restart of the stopped process" sh -c "[ \"\$(systemctl show -p MainPID --value $SVC)\" != $pid ] && [ \"\$(systemctl show -p MainPID --value $SVC)\" != 0 ] && systemctl is-active -q $SVC"
journal_has "$since" "Watchdog timeout" || journalctl -u $SVC --no-pager -o cat --since "@$since" | grep -qi watchdog \
    || fail "no watchdog line in the journal"
pid=$(prop MainPID)
say "watchdog: the hung process was restarted as pid $pid (NRestarts $(prop NRestarts))"

# ------------------------------------------------------------ 6. emotion-export deploy as pi (ssh/scp to this machine)
mkdir -p /ci/bin
cat >/ci/bin/ssh <<'SH'
#!/bin/sh
while [ "$1" != "--" ]; do shift; done
shift; shift
exec sh -c "$1"
SH
cat >/ci/bin/scp <<'SH'
#!/bin/sh
while [ "$1" != "--" ]; do shift; done
exec cp "$2" "${3#*:}"
SH
chmod 0755 /ci/bin/ssh /ci/bin/scp
model=$(ls /opt/emotion-edge/lib/python3*/site-packages/edge/models/emotion.tflite)
cp "$model" "${model%.tflite}.json" /home/pi/ && chown pi: /home/pi/emotion.*
since=$(date +%s)
as_pi env PATH="/ci/bin:$PATH" /opt/emotion-edge/bin/emotion-export deploy /home/pi/emotion.tflite pi@localhost \
    >/ci/deploy.log 2>&1 || { cat /ci/deploy.log; fail "emotion-export deploy as pi (the documented command)"; }
[[ $(stat -c %G $STATE/models/emotion.tflite) == emotion-edge-deploy ]] || fail "deployed file group $(stat -c %G $STATE/models/emotion.tflite)"
wait_for 15 "the deployed model in use" journal_has "$since" "reloaded: model $STATE/models/emotion.tflite"
say "deploy as pi without --sudo: copied, reloaded, in use"

# ------------------------------------------------------------ 7. stop; the log as pi afterwards
systemctl stop $SVC || fail "stop"
[[ $(prop ActiveState) == inactive && $(prop Result) == success ]] || fail "stop: $(prop ActiveState)/$(prop Result)"
[[ ! -e $STATE/emotion-edge.db-wal ]] || fail "the WAL file is still there after stop"
as_pi emotion-edge log >/ci/log-after.txt 2>&1 || { cat /ci/log-after.txt; fail "emotion-edge log as pi after stop"; }
[[ -s /ci/log-after.txt ]] || fail "no rows after stop"
say "stopped cleanly; pi reads $(wc -l </ci/log-after.txt) log lines after stop"

# ------------------------------------------------------------ 8. install again: nothing changes
rm -f /etc/systemd/system/$SVC.service.d/ci.conf
rmdir /etc/systemd/system/$SVC.service.d
as_pi sudo -n "$SRC/install.sh" >/ci/install2.log 2>&1 || { tail -n 30 /ci/install2.log; fail "second install.sh"; }
! grep -E "^(wrote|linked):" /ci/install2.log || fail "the second install changed files"
grep -q "keeping your /etc/emotion-edge/config.toml" /ci/install2.log || fail "config not kept"
wait_for 30 "the service up again after the re-install" systemctl is-active -q $SVC
say "install again: no file changed, config kept, service running"

# ------------------------------------------------------------ 9. uninstall, purge, install again
as_pi sudo -n "$SRC/install.sh" --uninstall >/ci/uninstall.log 2>&1 || { cat /ci/uninstall.log; fail "--uninstall"; }
[[ ! -e /etc/systemd/system/$SVC.service && ! -e /opt/emotion-edge && ! -e /usr/local/bin/emotion-edge ]] || fail "--uninstall left files"
[[ -e /etc/emotion-edge/config.toml && -e $STATE/emotion-edge.db ]] || fail "--uninstall removed config or data"
[[ $(systemctl show -p LoadState --value $SVC) == not-found ]] || fail "unit still loaded"
as_pi sudo -n "$SRC/install.sh" --uninstall --purge >/ci/purge.log 2>&1 || { cat /ci/purge.log; fail "--uninstall --purge"; }
[[ ! -e /etc/emotion-edge && ! -e $STATE ]] || fail "--purge left config or data"
! getent passwd emotion-edge >/dev/null || fail "--purge left the user"
! getent group emotion-edge >/dev/null || fail "--purge left the service group (pi is a member)"
! getent group emotion-edge-deploy >/dev/null || fail "--purge left the deploy group"
as_pi sudo -n "$SRC/install.sh" >/ci/install3.log 2>&1 || { tail -n 30 /ci/install3.log; fail "install after purge"; }
systemctl is-enabled -q $SVC || fail "not enabled after re-install"
say "uninstall keeps config and data; purge removes all; install after purge works"
say "all checks passed"
