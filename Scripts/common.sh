# Sourced by the other scripts: strict mode, repo root, Swift on PATH, helpers.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if ! command -v swift >/dev/null 2>&1 && [ -x /opt/swift/usr/bin/swift ]; then
  export PATH="/opt/swift/usr/bin:$PATH"
fi
export PATH="$PATH:/usr/sbin:/sbin"

die() { echo "error: $*" >&2; exit 1; }

# Root runs commands directly; anyone else goes through sudo.
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# Makes /dev/fuse usable or fails with a clear message.
ensure_fuse() {
  if [ ! -c /dev/fuse ]; then
    if command -v modprobe >/dev/null 2>&1; then as_root modprobe fuse || true; fi
    if [ ! -c /dev/fuse ] && grep -qw fuse /proc/filesystems 2>/dev/null; then
      as_root mknod -m 0666 /dev/fuse c 10 229 || true
    fi
  fi
  [ -c /dev/fuse ] || die "/dev/fuse is missing: load the fuse kernel module (modprobe fuse) or run on a host/container with FUSE access (--device /dev/fuse --cap-add SYS_ADMIN)"
}
