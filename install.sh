#!/usr/bin/env bash
# emotion-edge installer for Raspberry Pi OS (Bookworm / Trixie): apt packages, a venv in
# /opt/emotion-edge, the system user, /etc/emotion-edge/config.toml and the systemd unit.
# Safe to run again: files are rewritten only when their content changes; your config is never
# overwritten.
#
#   sudo ./install.sh                 install (or update) and start the service
#   sudo ./install.sh --uninstall     remove service and venv, keep config and data
#   sudo ./install.sh --uninstall --purge   ... and remove config, data and the user
#   ./install.sh --dev                desktop set-up: .venv in this checkout with test + export extras
#   ./install.sh --root DIR [--no-venv]   stage into DIR: files are written there, system commands
#                                      (apt, useradd, systemctl) are only printed
#   ./install.sh --dry-run            print what would happen, change nothing
set -euo pipefail
umask 022  # the code systemd runs must not be world-writable, whatever the caller's umask

APP=emotion-edge
SRC_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
PREFIX=/opt/$APP
CONF_DIR=/etc/$APP
STATE_DIR=/var/lib/$APP
UNIT_DIR=/etc/systemd/system
BIN_LINK=/usr/local/bin/$APP
MODELS_DIR=$STATE_DIR/models
# Members may write MODELS_DIR: `emotion-export deploy` logs in as them (the user who ran sudo).
DEPLOY_GROUP=$APP-deploy
APT_PACKAGES=(python3-picamera2 python3-opencv opencv-data python3-gpiozero python3-lgpio python3-venv)
SUPPORTED_CODENAMES="bookworm trixie"

MODE=install
ROOT=""
ROOT_GIVEN=0
DRY_RUN=0
PURGE=0
NO_VENV=0
PYTHON=${PYTHON:-python3}

say() { printf '%s\n' "$*"; }
die() { printf 'install.sh: error: %s\n' "$*" >&2; exit 1; }

usage() {
    sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

while (($#)); do
    case $1 in
        --uninstall) MODE=uninstall ;;
        --purge) PURGE=1 ;;
        --dev) MODE=dev ;;
        --root)
            (($# >= 2)) || die "--root needs a directory"
            ROOT=$2
            ROOT_GIVEN=1
            shift
            ;;
        --root=*) ROOT=${1#--root=}; ROOT_GIVEN=1 ;;
        --dry-run) DRY_RUN=1 ;;
        --no-venv) NO_VENV=1 ;;
        -h | --help) usage; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
    shift
done

if ((ROOT_GIVEN)); then
    # Resolved (//, /tmp/.., a link to /): any spelling of / is the running system, never a staging root.
    [[ -n $ROOT ]] || die "--root needs a directory (an empty --root would be the running system)"
    given=$ROOT
    ROOT=$(realpath -m -- "$ROOT") || die "--root $given: cannot resolve the path"
    [[ $ROOT != / ]] || die "--root $given is / and would install into the running system; leave --root out for that"
fi
((PURGE == 0)) || [[ $MODE == uninstall ]] || die "--purge only goes with --uninstall"

# True when system commands must only be printed (staging root or dry run).
staged() { [[ -n $ROOT ]] || ((DRY_RUN)); }

# Run a command that changes the system, or print it when staged.
run() {
    if staged; then
        printf 'would run:'
        printf ' %q' "$@"
        printf '\n'
    else
        "$@"
    fi
}

# Write stdin to ROOT+$1 with mode $2, only when the content differs (keeps re-runs a no-op).
put_file() {
    local dest=$ROOT$1 mode=$2 tmp
    tmp=$(mktemp)
    cat >"$tmp"
    if [[ -f $dest ]] && cmp -s "$tmp" "$dest"; then
        rm -f "$tmp"
        say "unchanged: $1"
        return 0
    fi
    if ((DRY_RUN)); then
        rm -f "$tmp"
        say "would write: $1"
        return 0
    fi
    mkdir -p "$(dirname "$dest")"
    install -m "$mode" "$tmp" "$dest"
    rm -f "$tmp"
    say "wrote: $1"
}

put_dir() {
    if [[ -d $ROOT$1 ]]; then return 0; fi
    if ((DRY_RUN)); then say "would create: $1"; return 0; fi
    mkdir -p "$ROOT$1"
}

# Symlink ROOT+$2 -> $1 (target as seen on the installed system), only when it differs.
put_link() {
    local target=$1 link=$ROOT$2
    if [[ -L $link && $(readlink "$link") == "$target" ]]; then return 0; fi
    if ((DRY_RUN)); then say "would link: $2 -> $target"; return 0; fi
    mkdir -p "$(dirname "$link")"
    ln -sfn "$target" "$link"
    say "linked: $2 -> $target"
}

remove() {
    local p
    for p in "$@"; do
        if [[ -e $ROOT$p || -L $ROOT$p ]]; then
            if ((DRY_RUN)); then say "would remove: $p"; else rm -rf -- "$ROOT$p"; say "removed: $p"; fi
        fi
    done
}

# ------------------------------------------------------------------ checks (before any change)
os_release_value() {  # KEY FILE: KEY's value with its quotes removed; the file is parsed, never run
    local key=$1 file=$2 line value=""
    [[ -f $file ]] || return 0
    while IFS= read -r line || [[ -n $line ]]; do
        if [[ $line == "$key="* ]]; then
            value=${line#"$key="}
            value=${value#[\"\']}
            value=${value%[\"\']}
        fi
    done < <(head -c 65536 -- "$file")
    printf '%s' "${value//[^[:print:]]/?}"
}

check_os() {
    local file=${ROOT:-}/etc/os-release id="" codename="" version=""
    if [[ ! -r $file ]]; then
        [[ -n $ROOT ]] && return 0  # a bare staging root: nothing to check
        die "cannot read /etc/os-release; emotion-edge supports Raspberry Pi OS Bookworm or Trixie (use --dev on a desktop)"
    fi
    id=$(os_release_value ID "$file")
    codename=$(os_release_value VERSION_CODENAME "$file")
    version=$(os_release_value PRETTY_NAME "$file")
    version=${version:-$id}
    case $id in
        raspbian | debian) ;;
        *) die "unsupported OS '$version': emotion-edge installs on Raspberry Pi OS (Debian) Bookworm or Trixie; on a desktop use ./install.sh --dev" ;;
    esac
    case " $SUPPORTED_CODENAMES " in
        *" $codename "*) ;;
        *) die "unsupported release '$version' (codename '${codename:-?}'): need Bookworm or Trixie (Python 3.11 / 3.13); on a desktop use ./install.sh --dev" ;;
    esac
}

# ai-edge-litert has wheels for 64-bit userlands only. Ask dpkg, not uname: a 32-bit Raspberry Pi
# OS on a 64-bit kernel reports aarch64 to uname (and to pip's platform_machine).
check_arch() {
    local arch
    arch=$(dpkg --print-architecture 2>/dev/null) || die "cannot run dpkg --print-architecture: emotion-edge installs on Raspberry Pi OS (Debian)"
    case $arch in
        arm64 | amd64) ;;
        armhf | armel) die "32-bit Raspberry Pi OS ($arch) is not supported: ai-edge-litert has no 32-bit ARM build; install Raspberry Pi OS (64-bit), then run this again" ;;
        *) die "unsupported architecture '$arch': emotion-edge needs 64-bit Raspberry Pi OS (arm64)" ;;
    esac
}

check_system() {
    [[ -n $ROOT ]] && return 0  # a staging root is not this machine; --dry-run still checks (read-only)
    check_arch
    ((DRY_RUN || EUID == 0)) || die "installing the service needs root: sudo $0"
    command -v systemctl >/dev/null || die "systemctl not found: emotion-edge runs as a systemd service"
    if ! apt-cache show python3-picamera2 >/dev/null 2>&1; then
        die "camera stack missing: apt has no python3-picamera2 (is this Raspberry Pi OS with archive.raspberrypi.com?); on a desktop use ./install.sh --dev"
    fi
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
        || die "$PYTHON is older than 3.11; Raspberry Pi OS Bookworm or newer is needed"
    if ! grep -qs "Raspberry Pi" /proc/device-tree/model; then
        say "warning: this does not look like a Raspberry Pi; the LED will fall back to console output"
    fi
}

default_config() {
    cat <<'EOF'
# emotion-edge configuration. Every key is optional: to change one, uncomment it and its [section].
# Apply changes with: sudo systemctl reload emotion-edge   (camera, LED and log settings: restart)
# Check a file with:   emotion-edge check --config /etc/emotion-edge/config.toml

EOF
    PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=$SRC_DIR "$PYTHON" -c 'from edge.config import Config, dump_config; print(dump_config(Config(), commented=True), end="")' 2>/dev/null \
        || cat "$SRC_DIR/edge/config.default.toml" 2>/dev/null \
        || die "cannot generate the default config ($PYTHON with edge.config failed and edge/config.default.toml is missing)"
}

# The [mqtt] host of the installed config ("" when unset, or when the file has errors).
mqtt_host() {
    local conf=$ROOT$CONF_DIR/config.toml
    [[ -r $conf ]] || return 0
    PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=$SRC_DIR "$PYTHON" -c 'import sys; from edge.config import load_config; print(load_config(sys.argv[1]).mqtt.host)' \
        "$conf" 2>/dev/null || say "warning: $CONF_DIR/config.toml has errors (emotion-edge check --config ...); MQTT left off" >&2
}

# emotion-edge-mqtt.service (written with the main unit): enabled (and started) only when [mqtt] host is set.
install_mqtt_unit() {
    local unit=$APP-mqtt.service host
    host=$(mqtt_host)
    if [[ -n $host ]]; then
        say "MQTT: publishing to $host ($unit)"
        if staged; then
            put_link "$UNIT_DIR/$unit" "$UNIT_DIR/multi-user.target.wants/$unit"
        fi
        run systemctl enable "$unit"
        run systemctl restart "$unit"
    else
        say "MQTT: off ([mqtt] host is not set); $unit installed but not enabled"
        if staged; then
            remove "$UNIT_DIR/multi-user.target.wants/$unit"
        elif systemctl is-enabled --quiet "$unit" 2>/dev/null; then
            run systemctl disable --now "$unit"
        fi
    fi
}

# ------------------------------------------------------------------ modes
install_dev() {
    local venv=$SRC_DIR/.venv
    if [[ ! -x $venv/bin/python ]]; then
        run "$PYTHON" -m venv "$venv"
    fi
    run "$venv/bin/python" -m pip install --quiet --upgrade pip
    # opencv: the pip wheel on every desktop (the base dependency leaves it out on ARM, where a Pi
    # service uses apt's python3-opencv instead).
    run "$venv/bin/python" -m pip install --quiet -e "${SRC_DIR}[test,export,jax,opencv,mqtt]"
    say "dev set-up ready: $venv/bin/python -m pytest -q"
}

install_venv() {
    if ((NO_VENV)); then
        say "skipping the venv (--no-venv)"
        return 0
    fi
    if [[ ! -x $ROOT$PREFIX/bin/python ]]; then
        if ((DRY_RUN)); then
            say "would run: $PYTHON -m venv --system-site-packages $PREFIX"
        else
            "$PYTHON" -m venv --system-site-packages "$ROOT$PREFIX"
        fi
    fi
    # Pin the system NumPy: picamera2's simplejpeg is built against it, a pip NumPy would break it.
    local numpy_version
    if staged; then
        numpy_version=$("$PYTHON" -c 'import numpy; print(numpy.__version__)' 2>/dev/null || echo unknown)
    else
        numpy_version=$(/usr/bin/python3 -c 'import numpy; print(numpy.__version__)') \
            || die "system NumPy not importable (python3-numpy should come with python3-picamera2)"
    fi
    printf '# the system NumPy (apt python3-numpy); picamera2/simplejpeg need exactly this one\nnumpy==%s\n' "$numpy_version" \
        | put_file "$PREFIX/constraints.txt" 0644
    if ((DRY_RUN)); then
        say "would run: $PREFIX/bin/python -m pip install --constraint $PREFIX/constraints.txt ${SRC_DIR}[mqtt]"
    else
        # pip builds in the folder it installs from (build/, *.egg-info): as root in the user's checkout that
        # left root-owned files there, so it builds from a copy of what the package needs.
        local src
        src=$(mktemp -d)
        # (model_export/runs: 21 MB of training runs, no Python package, never installed)
        tar -C "$SRC_DIR" --exclude=__pycache__ --exclude=./model_export/runs \
            -cf - ./pyproject.toml ./README.md ./edge ./model_export | tar -C "$src" -xf -
        # [mqtt]: paho-mqtt 2.x for emotion-edge-mqtt.service (Debian's python3-paho-mqtt is 1.6).
        "$ROOT$PREFIX/bin/python" -m pip install --quiet --disable-pip-version-check \
            --constraint "$ROOT$PREFIX/constraints.txt" "${src}[mqtt]" || { rm -rf -- "$src"; exit 1; }
        rm -rf -- "$src"
    fi
}

install_service() {
    check_os
    check_system
    if staged; then say "staging into ${ROOT:-(dry run)}: system commands are printed, not run"; fi

    run apt-get update
    run apt-get install -y --no-install-recommends "${APT_PACKAGES[@]}"

    local group
    for group in video gpio; do
        if staged || ! getent group "$group" >/dev/null; then
            run groupadd --system -f "$group"
        fi
    done
    if staged || ! getent passwd "$APP" >/dev/null; then
        # The group may outlive the user (userdel keeps a private group that still has members).
        local user_group=(--user-group)
        if ! staged && getent group "$APP" >/dev/null; then
            user_group=(--gid "$APP")
        fi
        run useradd --system "${user_group[@]}" --home-dir "$STATE_DIR" --no-create-home \
            --shell /usr/sbin/nologin --comment "emotion-edge mood light" "$APP"
    fi
    # Members of the service's group may ask it for a calibration (`emotion-edge calibrate`).
    if [[ -n ${SUDO_USER:-} && $SUDO_USER != root ]]; then
        run usermod -aG "$APP" "$SUDO_USER"
    fi

    # The state folder belongs to the service user before systemd first sees it (else its first
    # start chowns it recursively, models included); models/ is writable by the deploy group.
    run groupadd --system -f "$DEPLOY_GROUP"
    if [[ -n ${SUDO_USER:-} && $SUDO_USER != root ]]; then
        run usermod -a -G "$DEPLOY_GROUP" "$SUDO_USER"
    fi
    if staged || [[ ! -d $STATE_DIR ]]; then
        run install -d -o "$APP" -g "$APP" -m 0755 "$STATE_DIR"
    fi
    run install -d -o "$APP" -g "$DEPLOY_GROUP" -m 2775 "$MODELS_DIR"
    # The request folder through which members of the group ask the service (calibrate, view): setgid
    # here, since the unit's RestrictSUIDSGID=yes stops the service from setting that bit itself.
    run install -d -o "$APP" -g "$APP" -m 2770 "$STATE_DIR/requests"

    put_dir "$PREFIX"
    install_venv
    put_file "$PREFIX/share/PI.md" 0644 <"$SRC_DIR/docs/PI.md"
    put_link "$PREFIX/bin/$APP" "$BIN_LINK"

    put_dir "$CONF_DIR"
    if [[ -e $ROOT$CONF_DIR/config.toml ]]; then
        say "keeping your $CONF_DIR/config.toml (the current defaults are in config.toml.default)"
    else
        default_config | put_file "$CONF_DIR/config.toml" 0644
    fi
    default_config | put_file "$CONF_DIR/config.toml.default" 0644

    put_file "$UNIT_DIR/$APP.service" 0644 <"$SRC_DIR/systemd/$APP.service"
    if staged; then
        put_link "$UNIT_DIR/$APP.service" "$UNIT_DIR/multi-user.target.wants/$APP.service"
    fi
    put_file "$UNIT_DIR/$APP-mqtt.service" 0644 <"$SRC_DIR/systemd/$APP-mqtt.service"
    run systemctl daemon-reload
    run systemctl enable "$APP.service"
    # Installed either way: a start that fails (no camera yet) is retried by systemd every 30 s.
    run systemctl restart "$APP.service" \
        || say "warning: $APP did not start yet (no camera?): see '$APP status' and 'journalctl -u $APP'; systemd retries every 30 s"
    install_mqtt_unit

    if ((DRY_RUN)); then
        say "dry run: nothing was changed"
        return 0
    fi
    cat <<EOF

emotion-edge is installed. Over ssh:
  journalctl -u $APP -f        follow the service log (members of 'adm' need no sudo:
                                sudo usermod -aG adm \$USER, then log in again)
  $APP status            service state, mood, frames/s, model, last error
  $APP log               the mood log
  $APP calibrate         learn your resting face (look at the camera for 5 s;
                                ${SUDO_USER:-you} may ask the service after logging in again)
  sudo nano $CONF_DIR/config.toml && sudo systemctl reload $APP
EOF
    if [[ -n ${SUDO_USER:-} && $SUDO_USER != root ]]; then
        say "  $SUDO_USER may now deploy models to $MODELS_DIR (group $DEPLOY_GROUP; log in again first)"
    fi
}

uninstall_service() {
    if [[ -z $ROOT ]] && ! ((DRY_RUN)) && ((EUID != 0)); then
        die "uninstalling the service needs root: sudo $0 --uninstall"
    fi
    if staged || systemctl list-unit-files "$APP.service" >/dev/null 2>&1; then
        run systemctl disable --now "$APP.service"
    fi
    if staged || systemctl list-unit-files "$APP-mqtt.service" >/dev/null 2>&1; then
        run systemctl disable --now "$APP-mqtt.service"
    fi
    local host
    host=$(mqtt_host)
    if [[ -n $host ]] && { staged || [[ -x $PREFIX/bin/python ]]; }; then  # Home Assistant drops the device
        run "$PREFIX/bin/python" -P -m edge.cli --config "$CONF_DIR/config.toml" publish --uninstall \
            || say "warning: the device stays on MQTT broker $host (emotion-edge publish --uninstall failed)" >&2
    fi
    remove "$UNIT_DIR/multi-user.target.wants/$APP.service" "$UNIT_DIR/$APP.service" \
        "$UNIT_DIR/multi-user.target.wants/$APP-mqtt.service" "$UNIT_DIR/$APP-mqtt.service"
    run systemctl daemon-reload
    remove "$BIN_LINK" "$PREFIX"
    if ((PURGE)); then
        remove "$CONF_DIR" "$STATE_DIR"
        if staged || getent passwd "$APP" >/dev/null; then
            run userdel "$APP"
        fi
        # userdel keeps the user's group while others (the installing user) are members of it.
        if staged || getent group "$APP" >/dev/null; then
            run groupdel "$APP"
        fi
        if staged || getent group "$DEPLOY_GROUP" >/dev/null; then
            run groupdel "$DEPLOY_GROUP"
        fi
        say "emotion-edge removed with its config, data and user"
    else
        say "emotion-edge removed; kept $CONF_DIR and $STATE_DIR (use --uninstall --purge to remove them)"
    fi
}

case $MODE in
    dev) install_dev ;;
    install) install_service ;;
    uninstall) uninstall_service ;;
esac
