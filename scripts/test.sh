#!/usr/bin/env bash
# Runs every sessionfs test: cargo test (the mount tests mount for real),
# then the NFS suite (tests/nfs, in User-Mode Linux). Installs what the
# tests need first:
# - fuse3 (fusermount3, used by --auto-unmount), xfsprogs (xfs_io, for the
#   power-cut tests) and strace (error injection in the fault tests), from
#   Debian's packages, when running as root;
# - the outside suites, through scripts/suites.sh: fsx and pjdfstest from
#   crates.io, plainbox 0.38 (the format's reference) and Checkbox 1.18.1
#   from PyPI, each in a venv.
# The mount tests need /dev/fuse: without it this script fails, it never
# skips them. As root it gives /dev/fuse the standard mode 0666 where it
# lacks it, so the tests can mount as an ordinary user too.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -c /dev/fuse ]; then
    echo "test.sh: /dev/fuse is missing: the mount tests cannot run here" >&2
    exit 1
fi

# Ordinary users mount through the setuid fusermount3, which needs the mode
# a standard system gives /dev/fuse (0666); some machines ship it 0600.
if [ "$(id -u)" -eq 0 ] && [ "$(stat -c %a /dev/fuse)" != 666 ]; then
    echo "test.sh: giving /dev/fuse the standard mode 0666 (for the unprivileged mount tests)" >&2
    chmod 0666 /dev/fuse
fi

need_pkgs=()
command -v fusermount3 >/dev/null 2>&1 || need_pkgs+=(fuse3)
command -v xfs_io >/dev/null 2>&1 || need_pkgs+=(xfsprogs)
command -v strace >/dev/null 2>&1 || need_pkgs+=(strace)
if [ ${#need_pkgs[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "test.sh: please install: ${need_pkgs[*]}" >&2
        exit 1
    fi
    echo "test.sh: installing ${need_pkgs[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi

# The outside suites the tests run against the mount (fsx, pjdfstest,
# plainbox 0.38, Checkbox 1.18.1), at pinned versions, installed when
# missing (scripts/suites.sh says what and where).
eval "$(scripts/suites.sh)"

cargo test --locked "$@"

# The NFS suite: the real kernel NFS server and its v4.2, v4.1 and v3
# clients inside User-Mode Linux (scripts/nfs/run.sh installs what it
# needs). Skipped only when cargo test was asked for a subset.
if [ $# -eq 0 ] || [ "${SESSIONFS_NFS:-}" = 1 ]; then
    SESSIONFS_BIN="$PWD/target/debug/sessionfs" scripts/nfs/run.sh
fi
