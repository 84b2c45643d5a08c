#!/bin/bash
# Build the Debian trixie cbootc test image as an OCI image layout.
#
# Usage: tests/images/build-debian.sh --cbootc PATH --out DIR [--variant v1|v2]
#                                     [--tag TAG] [--rebuild-base]
#
#   --cbootc PATH   cbootc binary, installed as /usr/bin/cbootc
#   --out DIR       OCI layout directory (created; other tags in it are kept)
#   --variant       v1 (default): layers base + cbootc, /usr/lib/cbootc-test-version = v1
#                   v2: the same two layers + one layer setting the file to v2
#   --tag TAG       tag in the layout (default: the variant)
#   --rebuild-base  ignore the cached base layer
#
# Prints the image reference oci:DIR:TAG as the last line of stdout; logs go
# to stderr. Needs root (mmdebstrap --mode=root, chroot) on a Debian/Ubuntu
# host with network access to a Debian mirror; installs its host packages
# with apt-get.
#
# Layers:
#   1. base: mmdebstrap trixie rootfs + contrib/image/finish-rootfs.sh +
#      tests/images/debian/customize-rootfs.sh. Slow, so cached as an
#      uncompressed tar in $CBOOTC_TEST_CACHE (default /var/cache/cbootc-test)
#      under a sha256 of its inputs.
#   2. cbootc: /usr/bin/cbootc, units/* -> /usr/lib/systemd/system (timers
#      enabled), /usr/lib/cbootc-test-version = v1. Rebuilt every run.
#   3. (v2 only) /usr/lib/cbootc-test-version = v2.
#
# Environment: CBOOTC_TEST_CACHE, DEBIAN_MIRROR (default http://deb.debian.org/debian),
# CARGO (for installing composefs-setup-root when not cached).
set -euo pipefail

SUITE=trixie
CSR_VERSION=0.9.4
# Bump to force a base rebuild when something not hashed below changes.
BASE_RECIPE=4

log() { echo "build-debian: $*" >&2; }
die() { echo "build-debian: ERROR: $*" >&2; exit 1; }
usage() { sed -n '2,12s/^# \{0,1\}//p' "$0" >&2; exit "${1:-2}"; }

HERE=$(dirname -- "$(realpath -e -- "${BASH_SOURCE[0]}")")
REPO=$(realpath -e -- "$HERE/../..")
CONTRIB=$REPO/contrib
DEB=$HERE/debian

cbootc= out= variant=v1 tag= rebuild_base=0
while [[ $# -gt 0 ]]; do
    case $1 in
    --cbootc) cbootc=${2:?--cbootc needs a path}; shift 2 ;;
    --out) out=${2:?--out needs a directory}; shift 2 ;;
    --variant) variant=${2:?--variant needs v1 or v2}; shift 2 ;;
    --tag) tag=${2:?--tag needs a value}; shift 2 ;;
    --rebuild-base) rebuild_base=1; shift ;;
    -h | --help) usage 0 ;;
    *) log "unknown argument: $1"; usage ;;
    esac
done
[[ -n $cbootc && -n $out ]] || { log "--cbootc and --out are required"; usage; }
[[ $variant == v1 || $variant == v2 ]] || die "--variant must be v1 or v2, not '$variant'"
tag=${tag:-$variant}
[[ $tag =~ ^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$ ]] || die "invalid tag '$tag'"
[[ -f $cbootc && -x $cbootc ]] || die "cbootc binary '$cbootc' not found or not executable"
cbootc=$(realpath -e -- "$cbootc")
[[ $(id -u) -eq 0 ]] || die "must run as root (mmdebstrap --mode=root, chroot, mount)"
[[ $(uname -m) == x86_64 ]] || die "only x86_64 hosts are supported"
mkdir -p -- "$out"
out=$(realpath -e -- "$out")

CACHE=${CBOOTC_TEST_CACHE:-/var/cache/cbootc-test}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
mkdir -p "$CACHE"
# One build at a time per cache (a second run waits, then reuses the cache).
exec 9>"$CACHE/.lock"
flock 9

WORK=$(mktemp -d "$CACHE/work.XXXXXX")
chmod 0755 "$WORK"   # apt downloads as _apt
cleanup() { rm -rf --one-file-system -- "$WORK"; }
trap cleanup EXIT
trap 'die "failed at line $LINENO: $BASH_COMMAND"' ERR

# --- host dependencies --------------------------------------------------------
need_pkgs=()
command -v mmdebstrap >/dev/null || need_pkgs+=(mmdebstrap)
command -v python3 >/dev/null || need_pkgs+=(python3)
command -v unshare >/dev/null || need_pkgs+=(util-linux)
command -v sha256sum >/dev/null || need_pkgs+=(coreutils)
[[ -f /usr/share/keyrings/debian-archive-trixie-stable.gpg ]] ||
    need_pkgs+=(debian-archive-keyring)
tar --version 2>/dev/null | grep -q 'GNU tar' || need_pkgs+=(tar)
if [[ ${#need_pkgs[@]} -gt 0 ]]; then
    command -v apt-get >/dev/null || die "missing ${need_pkgs[*]} and no apt-get to install them"
    log "installing host packages: ${need_pkgs[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >&2 || die "apt-get update failed"
    apt-get install -y -q --no-install-recommends "${need_pkgs[@]}" >&2 ||
        die "apt-get install ${need_pkgs[*]} failed"
fi
[[ -f /usr/share/keyrings/debian-archive-trixie-stable.gpg ]] ||
    die "no trixie archive key (/usr/share/keyrings/debian-archive-trixie-stable.gpg): upgrade debian-archive-keyring"

# --- composefs-setup-root (crates.io, cached) --------------------------------
CSR=$CACHE/composefs-setup-root-$CSR_VERSION/bin/composefs-setup-root
if [[ ! -x $CSR ]]; then
    cargo=${CARGO:-$(command -v cargo || echo "$HOME/.cargo/bin/cargo")}
    [[ -x $cargo ]] || die "composefs-setup-root is not cached and cargo was not found (install Rust, or set CARGO)"
    log "cargo install composefs-setup-root@$CSR_VERSION (a few minutes)"
    # Default features: 'pre-6.15' is needed for trixie's 6.12 kernel.
    "$cargo" install --locked --root "$WORK/csr" "composefs-setup-root@$CSR_VERSION" >&2 ||
        die "cargo install composefs-setup-root@$CSR_VERSION failed"
    strip "$WORK/csr/bin/composefs-setup-root" 2>/dev/null || :
    rm -rf "$CACHE/composefs-setup-root-$CSR_VERSION"
    mkdir -p "$CACHE/composefs-setup-root-$CSR_VERSION"
    mv "$WORK/csr/bin" "$CACHE/composefs-setup-root-$CSR_VERSION/bin"
fi

# Deterministic layer tars: sorted, numeric owners, xattrs (file caps), no atime/ctime.
# mktar DIR OUT [MTIME]: tar the contents of DIR (no ./ prefix).
mktar() {
    local dir=$1 dest=$2 mtime=${3:-}
    local -a opts=(--create --file="$dest" --format=posix --numeric-owner
        --xattrs --xattrs-include='*' --sort=name --one-file-system
        --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime
        --directory="$dir")
    [[ -n $mtime ]] && opts+=(--mtime="@$mtime" --owner=0 --group=0)
    (cd "$dir" && find . -mindepth 1 -maxdepth 1 -printf '%P\n' | LC_ALL=C sort) >"$WORK/toplevel"
    [[ -s $WORK/toplevel ]] || die "mktar: $dir is empty"
    tar "${opts[@]}" --files-from="$WORK/toplevel"
}

# --- layer 1: base (cached) ---------------------------------------------------
mapfile -t packages < <(sed -e 's/#.*//' -e 's/[[:space:]]//g' -e '/^$/d' "$DEB/packages.txt")
[[ ${#packages[@]} -gt 0 ]] || die "no packages in $DEB/packages.txt"
pkglist=$(IFS=,; echo "${packages[*]}")
MMDEBSTRAP_OPTS=(--mode=root --variant=minbase --components=main
    --aptopt='Apt::Install-Recommends "false"'
    --dpkgopt='path-exclude=/usr/share/man/*'
    --dpkgopt='path-exclude=/usr/share/info/*'
    --dpkgopt='path-exclude=/usr/share/doc/*'
    --dpkgopt='path-include=/usr/share/doc/*/copyright'
    --dpkgopt='path-exclude=/usr/share/locale/*'
    --dpkgopt='path-include=/usr/share/locale/locale.alias'
    --dpkgopt='path-exclude=/usr/share/lintian/*'
    --include="$pkglist")

base_key=$(
    {
        echo "recipe=$BASE_RECIPE suite=$SUITE composefs-setup-root=$CSR_VERSION"
        printf '%s\n' "${MMDEBSTRAP_OPTS[@]}"
        # Content, symlinks and x bits of everything that goes into the base.
        tar -C "$REPO" --create --sort=name --mtime=@0 --owner=0 --group=0 \
            --numeric-owner --mode=go-w --format=gnu \
            contrib/image/finish-rootfs.sh contrib/dracut tests/images/debian
    } | sha256sum | cut -c1-16
)
BASE_TAR=$CACHE/base-$SUITE-$base_key.tar

if [[ $rebuild_base -eq 1 || ! -f $BASE_TAR || ! -f $BASE_TAR.sha256 ]]; then
    log "building base layer $base_key (mmdebstrap $SUITE, dracut: ~5 min)"
    t0=$SECONDS
    rootfs=$WORK/rootfs
    # INITRD=No: skip the kernel postinst's dracut run (finish-rootfs.sh
    # builds the initramfs).
    INITRD=No mmdebstrap "${MMDEBSTRAP_OPTS[@]}" "$SUITE" "$rootfs" "$MIRROR" >&2 ||
        die "mmdebstrap $SUITE failed (network? package names in $DEB/packages.txt?)"
    log "mmdebstrap done in $((SECONDS - t0)) s"

    COMPOSEFS_SETUP_ROOT=$CSR "$CONTRIB/image/finish-rootfs.sh" "$rootfs" >&2 ||
        die "contrib/image/finish-rootfs.sh failed"
    "$DEB/customize-rootfs.sh" "$rootfs" >&2 || die "customize-rootfs.sh failed"

    # Sanity checks on what the boot path needs.
    nk=0
    for kdir in "$rootfs"/usr/lib/modules/*/; do
        [[ -f $kdir/vmlinuz ]] || continue
        nk=$((nk + 1))
        [[ -s $kdir/initramfs.img ]] || die "no initramfs.img in $kdir"
        kver=$(basename "$kdir")
        listing=$(unshare --mount --propagation private -- /bin/sh -ec '
            mount --rbind /dev "$1/dev"; mount --rbind /proc "$1/proc"
            exec chroot "$1" lsinitrd "$2"' sh "$rootfs" "/usr/lib/modules/$kver/initramfs.img") ||
            die "lsinitrd failed on the $kver initramfs"
        for want in usr/bin/composefs-setup-root \
            usr/lib/systemd/system/composefs-setup-root.service \
            initrd-root-fs.target.wants/composefs-setup-root.service \
            '/erofs.ko' '/overlay.ko' '/virtio_blk.ko'; do
            grep -q -- "$want" <<<"$listing" || die "initramfs of $kver lacks $want"
        done
    done
    [[ $nk -gt 0 ]] || die "no kernel in the base rootfs"
    for p in sysroot boot; do [[ -d $rootfs/$p ]] || die "/$p missing"; done
    [[ -z $(ls -A "$rootfs/boot") ]] || die "/boot is not empty"

    # API file systems are mounted at boot: ship them empty (mmdebstrap
    # leaves device nodes in /dev).
    for d in dev proc sys run tmp; do
        find "$rootfs/$d" -mindepth 1 -delete
    done

    log "writing base layer tar"
    mktar "$rootfs" "$WORK/base.tar"
    (cd "$WORK" && sha256sum base.tar) >"$WORK/base.tar.sha256"
    mv "$WORK/base.tar" "$BASE_TAR"
    mv "$WORK/base.tar.sha256" "$BASE_TAR.sha256"
    rm -rf --one-file-system "$rootfs"
    # Keep the two most recent base layers.
    ls -1t "$CACHE"/base-*.tar 2>/dev/null | tail -n +3 | while read -r old; do
        log "pruning old base layer $old"
        rm -f -- "$old" "$old.sha256"
    done
    log "base layer built in $((SECONDS - t0)) s"
else
    log "using cached base layer $BASE_TAR"
fi

# --- layer 2: cbootc + units + version v1 -------------------------------------
MTIME=${SOURCE_DATE_EPOCH:-1700000000}
l2=$WORK/l2
install -d -m 0755 "$l2/usr" "$l2/usr/bin" "$l2/usr/lib"
install -m 0755 "$cbootc" "$l2/usr/bin/cbootc"
echo v1 >"$l2/usr/lib/cbootc-test-version"
units=()
if [[ -d $REPO/units ]]; then
    for u in "$REPO"/units/*; do [[ -f $u ]] && units+=("$u"); done
fi
if [[ ${#units[@]} -gt 0 ]]; then
    install -d -m 0755 "$l2/usr/lib/systemd" "$l2/usr/lib/systemd/system"
    install -m 0644 "${units[@]}" "$l2/usr/lib/systemd/system/"
    # Enable each unit for the target its [Install] WantedBy= names
    # (README "Putting cbootc in an image"): the update timer in the
    # image's /etc, as `systemctl enable` in a Containerfile does, so that
    # `systemctl disable` turns automatic updates off and the choice
    # survives upgrades; the services a deployment needs in /usr.
    for u in "${units[@]}"; do
        name=${u##*/}
        wanted=$(sed -n 's/^WantedBy=//p' "$u")
        for target in $wanted; do
            if [[ $name == cbootc-update.timer ]]; then
                install -d -m 0755 "$l2/etc/systemd/system/$target.wants"
                ln -sf "/usr/lib/systemd/system/$name" "$l2/etc/systemd/system/$target.wants/$name"
            else
                install -d -m 0755 "$l2/usr/lib/systemd/system/$target.wants"
                ln -sf "../$name" "$l2/usr/lib/systemd/system/$target.wants/$name"
            fi
        done
    done
fi
mktar "$l2" "$WORK/cbootc.tar" "$MTIME"
layers=("$BASE_TAR" "$WORK/cbootc.tar")
history=("debian $SUITE base ($base_key)" "cbootc $(sha256sum <"$cbootc" | cut -c1-12), units, test-version v1")

# --- layer 3 (v2): version file -----------------------------------------------
if [[ $variant == v2 ]]; then
    l3=$WORK/l3
    install -d -m 0755 "$l3/usr" "$l3/usr/lib"
    echo v2 >"$l3/usr/lib/cbootc-test-version"
    mktar "$l3" "$WORK/v2.tar" "$MTIME"
    layers+=("$WORK/v2.tar")
    history+=("test-version v2")
fi

# --- OCI layout ---------------------------------------------------------------
args=(--out "$out" --tag "$tag" --label containers.bootc=1 --cmd /sbin/init --gc)
for i in "${!layers[@]}"; do args+=(--layer "${layers[$i]}" --history "${history[$i]}"); done
manifest=$(python3 "$CONTRIB/image/mkoci.py" "${args[@]}") || die "mkoci.py failed"
log "wrote $tag ($manifest) to $out; layers:"
for l in "${layers[@]}"; do log "  $(du -h --apparent-size "$l" | cut -f1)  ${l##*/}"; done
echo "oci:$out:$tag"
