#!/usr/bin/env bash
# Runs a test against the real Linux NFS server (kernel nfsd) and its v4.2,
# v4.1 and v3 clients, inside User-Mode Linux, loopback only.
#
#   scripts/nfs/run.sh [--timeout SECS] [--client-opts OPTS] [--] [TEST [ARG...]]
#
# TEST defaults to `python3 tests/nfs/checks.py`. It runs inside the guest,
# as root, with the repository visible at its host path (hostfs root) and:
#   NFS_MOUNTS       "v42=DIR v41=DIR v3=DIR": the three client mounts of one
#                    export
#   NFS_SERVER_DIR   the exported directory itself, on the server
#   SESSIONFS        the sessionfs binary;  PLAINBOX_PYTHON  plainbox 0.38
# Its output is printed here, and this script exits with its exit status
# (non-zero too when the guest did not finish within the timeout).
#
# Environment: SESSIONFS_BIN (else `cargo build --release` is run and its
# binary used), PLAINBOX_VENV (else .venv-plainbox, created like
# scripts/test.sh does), NFS_WORK (where run directories go, default
# /var/tmp/sessionfs-nfs; each run keeps its logs in run.N/ there),
# NFS_TIMEOUT (seconds, default 420), NFS_CLIENT_OPTS (extra mount options
# for every client, e.g. "lookupcache=positive,actimeo=1").
#
# Needs root (UML's hostfs root gives the guest the host's files as root):
# installs user-mode-linux, nfs-kernel-server, rpcbind, kmod, e2fsprogs and
# gcc (for scripts/nfs/xstate_shim.c) from Debian when they are missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo_root=$PWD

timeout_s=${NFS_TIMEOUT:-420}
client_opts=${NFS_CLIENT_OPTS:-}
while [ $# -gt 0 ]; do
    case $1 in
    --timeout) timeout_s=$2; shift 2 ;;
    --client-opts) client_opts=$2; shift 2 ;;
    --) shift; break ;;
    -*) echo "run.sh: unknown option $1" >&2; exit 2 ;;
    *) break ;;
    esac
done
if [ $# -eq 0 ]; then
    set -- python3 "$repo_root/tests/nfs/checks.py"
fi

say() { echo "nfs: $*" >&2; }

# --- what the host needs -----------------------------------------------------
need_pkgs=()
[ -x /usr/bin/linux ] || need_pkgs+=(user-mode-linux)
command -v rpc.nfsd >/dev/null 2>&1 || need_pkgs+=(nfs-kernel-server)
command -v rpcbind >/dev/null 2>&1 || need_pkgs+=(rpcbind)
command -v modprobe >/dev/null 2>&1 || need_pkgs+=(kmod)
command -v mkfs.ext4 >/dev/null 2>&1 || need_pkgs+=(e2fsprogs)
command -v cc >/dev/null 2>&1 || need_pkgs+=(gcc libc6-dev)
python3 -c 'import ensurepip' >/dev/null 2>&1 || need_pkgs+=(python3-venv)
if [ ${#need_pkgs[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        say "please install: ${need_pkgs[*]}"
        exit 1
    fi
    say "installing ${need_pkgs[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    # The packages' services must not start on the host: policy-rc.d 101.
    apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi
if [ "$(id -u)" -ne 0 ]; then
    say "must run as root (the guest's root filesystem is the host's /)"
    exit 1
fi

work_base=${NFS_WORK:-/var/tmp/sessionfs-nfs}
mkdir -p "$work_base"

# UML on hosts with AVX-512/AMX needs the shim (see the file).
shim=$work_base/xstate_shim.so
shim_src=$repo_root/scripts/nfs/xstate_shim.c
if [ ! -e "$shim" ] || [ "$shim_src" -nt "$shim" ]; then
    cc -O2 -Wall -shared -fPIC -o "$shim.tmp" "$shim_src" -ldl
    mv "$shim.tmp" "$shim"
fi

if [ -n "${SESSIONFS_BIN:-}" ]; then
    sessionfs=$(realpath "$SESSIONFS_BIN")
else
    cargo build --release --locked --bin sessionfs >&2
    sessionfs=$(realpath "${CARGO_TARGET_DIR:-$repo_root/target}/release/sessionfs")
fi
[ -x "$sessionfs" ] || { say "no sessionfs binary at $sessionfs"; exit 1; }

venv=${PLAINBOX_VENV:-$repo_root/.venv-plainbox}
if ! "$venv/bin/python" -c 'import plainbox.impl.session.storage' 2>/dev/null; then
    say "installing plainbox 0.38 into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --no-input 'plainbox==0.38.0'
fi

# --- one run -----------------------------------------------------------------
# Keep the logs of the last few runs only.
ls -1dt "$work_base"/run.* 2>/dev/null | tail -n +10 | xargs -r rm -rf --
run=$(mktemp -d "$work_base/run.XXXXXX")
chmod 755 "$run"
truncate -s 512M "$run/export.img"
{
    printf 'SESSIONFS=%q\n' "$sessionfs"
    printf 'PLAINBOX_PYTHON=%q\n' "$venv/bin/python"
    printf 'NFS_CLIENT_OPTS=%q\n' "$client_opts"
    printf 'NFS_REPO_ROOT=%q\n' "$repo_root"
    printf 'NFS_TEST=('
    printf '%q ' "$@"
    printf ')\n'
    echo 'export SESSIONFS PLAINBOX_PYTHON NFS_CLIENT_OPTS NFS_REPO_ROOT'
} >"$run/env"

say "booting User-Mode Linux (logs in $run, timeout ${timeout_s}s)"
start=$(date +%s)
# setsid: UML and the host processes it forks for the guest's address spaces
# form one process group, which the watchdog kills whole.
LD_PRELOAD=$shim setsid linux \
    mem=1024M \
    root=/dev/root rootfstype=hostfs rootflags=/ rw \
    ubd1="$run/export.img" \
    init="$repo_root/scripts/nfs/guest-init.sh" \
    nfsrun="$run" \
    uml_dir="$run/uml" umid=nfs \
    con0=null,fd:1 con=null ssl=null \
    </dev/null >"$run/console.log" 2>&1 &
uml=$!
timed_out=0
while kill -0 "$uml" 2>/dev/null; do
    if [ $(($(date +%s) - start)) -ge "$timeout_s" ]; then
        say "timeout: killing User-Mode Linux after ${timeout_s}s"
        timed_out=1
        kill -KILL -- "-$uml" 2>/dev/null || true
        break
    fi
    sleep 1
done
wait "$uml" 2>/dev/null || true
# Nothing of the guest may outlive it.
kill -KILL -- "-$uml" 2>/dev/null || true
elapsed=$(($(date +%s) - start))
rm -f "$run/export.img"

if [ -s "$run/test.out" ]; then
    cat "$run/test.out"
fi
if [ "$timed_out" -eq 1 ] || [ ! -s "$run/test.rc" ]; then
    say "the guest did not finish (see $run/guest.log and $run/console.log)"
    echo "0 passed, 1 failed"
    exit 1
fi
rc=$(cat "$run/test.rc")
say "guest finished in ${elapsed}s; test exit status $rc; logs in $run"
exit "$rc"
