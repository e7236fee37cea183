# shellcheck shell=bash
# Shared by the Pi platform stages (.ci/pi-emulated.sh, .ci/pi-systemd.sh): tools, Debian roots made
# with mmdebstrap, stand-in Raspberry Pi packages, the source tree copied in. Sourced, not run.

CI_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd -- "$CI_DIR/.." && pwd)
MIRROR=${PI_CI_MIRROR:-http://deb.debian.org/debian}

log() { printf '[%s %s] %s\n' "$(date -u +%H:%M:%S)" "${STAGE:-pi}" "$*"; }
fail() { log "FAILED: $*"; exit 1; }

# Install what a stage needs on the CI machine (Debian): mmdebstrap, and qemu for arm64 roots.
need_tools() {
    local missing=() t
    for t in "$@"; do
        case $t in
            mmdebstrap) command -v mmdebstrap >/dev/null || missing+=(mmdebstrap) ;;
            qemu) [[ -x /usr/bin/qemu-aarch64-static ]] || missing+=(qemu-user-static) ;;
            nspawn) command -v systemd-nspawn >/dev/null || missing+=(systemd-container) ;;
            dpkg-deb) command -v dpkg-deb >/dev/null || missing+=(dpkg) ;;
        esac
    done
    ((${#missing[@]} == 0)) && return 0
    [[ $(id -u) == 0 ]] || fail "missing ${missing[*]} (and not root to install them)"
    log "installing ${missing[*]}"
    # Two stages may start at once: apt's lock is waited for, not fought over.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=600 "${missing[@]}" >/dev/null
}

# arm64 binaries through qemu-user: binfmt_misc mounted and qemu-aarch64 registered with the F
# flag (the interpreter is opened now, so it works inside a chroot that lacks it).
need_binfmt_arm64() {
    local bm=/proc/sys/fs/binfmt_misc conf=/usr/lib/binfmt.d/qemu-aarch64.conf
    [[ -e $bm/register ]] || mount -t binfmt_misc binfmt_misc "$bm" || fail "cannot mount binfmt_misc"
    if [[ ! -e $bm/qemu-aarch64 ]]; then
        [[ -r $conf ]] || fail "$conf missing (qemu-user-static not installed?)"
        grep -v '^#' "$conf" >"$bm/register" 2>/dev/null || [[ -e $bm/qemu-aarch64 ]] || fail "cannot register qemu-aarch64"
    fi
    [[ $(head -n1 "$bm/qemu-aarch64") == enabled ]] || echo 1 >"$bm/qemu-aarch64"
    grep -q '^flags: .*F' "$bm/qemu-aarch64" || log "warning: qemu-aarch64 lacks the F flag; chroots may not find the interpreter"
}

# make_root SUITE ARCH DIR PACKAGES...: a Debian root (apt variant) in DIR.
make_root() {
    local suite=$1 arch=$2 dir=$3
    shift 3
    local include
    include=$(IFS=,; printf '%s' "$*")
    rm -rf "$dir"
    # force-unsafe-io: no fsync per unpacked file; the root is thrown away after the stage.
    mmdebstrap --variant=apt --architectures="$arch" --format=directory --dpkgopt=force-unsafe-io \
        --include="$include" "$suite" "$dir" "$MIRROR" || fail "mmdebstrap $suite/$arch"
}

# Stand-ins for the Raspberry Pi archive's python3-picamera2 and python3-lgpio: empty packages (no
# Python module), so install.sh's apt line works unmodified and the Pi-only modules stay absent,
# as on a Pi whose camera stack is broken. A local apt folder DIR with a Packages index.
make_standins() {
    local dir=$1 tmp name deps deb
    rm -rf "$dir"
    mkdir -p "$dir"
    tmp=$(mktemp -d)
    for name in python3-picamera2 python3-lgpio; do
        deps=""
        [[ $name == python3-picamera2 ]] && deps="Depends: python3-numpy"$'\n'
        mkdir -p "$tmp/$name/DEBIAN" "$tmp/$name/usr/share/doc/$name"
        printf 'CI stand-in for the Raspberry Pi archive package; installs no Python module.\n' \
            >"$tmp/$name/usr/share/doc/$name/README"
        printf 'Package: %s\nVersion: 0~ci\nArchitecture: all\nMaintainer: emotion-edge CI <ci@localhost>\n%sDescription: CI stand-in for %s (empty)\n' \
            "$name" "$deps" "$name" >"$tmp/$name/DEBIAN/control"
        deb=$dir/${name}_0~ci_all.deb
        dpkg-deb --root-owner-group --build "$tmp/$name" "$deb" >/dev/null
        {
            dpkg-deb --field "$deb"
            printf 'Filename: ./%s\nSize: %s\nSHA256: %s\n\n' "$(basename "$deb")" "$(stat -c %s "$deb")" \
                "$(sha256sum "$deb" | cut -d' ' -f1)"
        } >>"$dir/Packages"
    done
    rm -rf "$tmp"
}

# Trust in ROOT what this machine trusts: CAs added locally (a TLS-inspecting egress proxy, as on
# some CI networks) go into the root too, or pip there cannot reach PyPI. Nothing to do without any.
trust_host_cas() {
    local root=$1 crts=(/usr/local/share/ca-certificates/*.crt)
    [[ -e ${crts[0]} ]] || return 0
    local bundle=$root/etc/ssl/certs/ca-certificates.crt crt
    [[ -f $bundle ]] || fail "$bundle missing (ca-certificates not in the root?)"
    mkdir -p "$root/usr/local/share/ca-certificates"
    cp "${crts[@]}" "$root/usr/local/share/ca-certificates/"  # kept by later update-ca-certificates runs
    # Appended here rather than by update-ca-certificates in the root, which takes minutes under qemu.
    for crt in "${crts[@]}"; do
        grep -qF -- "$(sed -n 2p "$crt")" "$bundle" || { cat "$crt"; echo; } >>"$bundle"
    done
}

# The checkout's tracked and new (not ignored) files, as install.sh would see them on a Pi.
copy_source() {
    local dest=$1
    mkdir -p "$dest"
    (cd "$REPO_DIR" && git ls-files -z --cached --others --exclude-standard | xargs -0 tar -c --no-recursion --ignore-failed-read 2>/dev/null) \
        | tar -x -C "$dest"
}
