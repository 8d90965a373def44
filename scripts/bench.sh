#!/usr/bin/env bash
# Benchmarks sessionfs and prints a table of medians and ratios:
# commit latency (raw syscall floor, the core's save, the mount with and
# without FUSE passthrough), read throughput of 64 MiB and 256 MiB checkpoints (after a
# commit through the mount, after one outside it, and repeated), `ls -l`
# of a 10,000-session repository, the daemon's peak memory while a 1 GiB
# checkpoint is written through it, concurrent writers, and walks of a
# 10,000-session repository (find, ls -lR, du -s, tar cf /dev/null; warm and
# with dropped caches). bindfs is measured in the same run as an anchor for
# the read, ls and walk rows (installed with apt if missing). Full mode also
# runs `find` over 100,000 sessions and reads the daemon's peak memory after
# it (column A only: the image has too few inodes for it).
#
#   scripts/bench.sh [--quick] [--rounds N] [--no-loop]
#
# Column A is measured in target/bench on the project's own disk (never
# tmpfs, where fsync is free). Column B is measured on a journaled ext4
# image in a loop device (made under target/, removed afterwards), where
# replacing a large file is cheap even when the project's disk is mounted
# with `discard`. --no-loop skips column B. Needs root (mounts) and
# /dev/fuse. The table is also written to target/bench/report.md. In
# --quick mode the walk (500 sessions) runs in column A only, to stay
# under a minute.
#
# A full run takes about 20 minutes on 2 cores (the walks with dropped
# caches and over 100,000 sessions take most of it); --quick under 1 minute.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

quick=()
rounds=()
loop=1
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) quick=(--quick) ;;
        --rounds) rounds=(--rounds "$2"); shift ;;
        --no-loop) loop=0 ;;
        -h|--help) sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "bench.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

if [ ! -c /dev/fuse ]; then
    echo "bench.sh: /dev/fuse is missing: the mount cannot be measured here" >&2
    exit 1
fi
if [ "$(id -u)" -ne 0 ] && [ $loop = 1 ]; then
    echo "bench.sh: the journaled column needs root (losetup, mount); use --no-loop" >&2
    exit 1
fi

if ! command -v bindfs >/dev/null; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
        echo "bench.sh: installing bindfs (the anchor column)"
        apt-get install -y -q bindfs >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q bindfs >/dev/null; } ||
            echo "bench.sh: cannot install bindfs: no anchor rows" >&2
    else
        echo "bench.sh: bindfs is missing (apt-get install bindfs): no anchor rows" >&2
    fi
fi

cargo build --release --bins --examples
bench=$root/target/release/examples/bench
sessionfs=$root/target/release/sessionfs

out=$root/target/bench
mkdir -p "$out"
image=$out/journaled-ext4.img
loop_mnt=$out/journaled-mnt
loop_dev=

# Never leave a mount, a loop device or an image behind, whatever happens.
cleanup() {
    local mp
    # Mounts of the benchmark's own daemons (normally gone already).
    for mp in $(awk -v d="$out/" 'index($2, d) == 1 && $3 ~ /^fuse/ {print $2}' /proc/mounts); do
        "$sessionfs" unmount "$mp" >/dev/null 2>&1 || umount -l "$mp" 2>/dev/null || true
    done
    if mountpoint -q "$loop_mnt" 2>/dev/null; then
        umount "$loop_mnt" 2>/dev/null || umount -l "$loop_mnt" || true
    fi
    if [ -n "$loop_dev" ]; then
        losetup -d "$loop_dev" 2>/dev/null || true
    fi
    rm -f "$image"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Describes the filesystem holding $1: "ext4 on /dev/vda, no journal, discard".
describe() {
    local dir=$1 type dev base opts journal
    type=$(stat -f -c %T "$dir")
    dev=$(df --output=source "$dir" | tail -1)
    opts=$(awk -v m="$(df --output=target "$dir" | tail -1)" '$2 == m {o=$4} END {print o}' /proc/mounts)
    base=$(basename "$(readlink -f "$dev")")
    case "$type" in
        tmpfs|ramfs)
            echo "bench.sh: $dir is on $type, where fsync is free: measure on a real disk" >&2
            exit 1 ;;
    esac
    if [ "$type" = ext2/ext3 ]; then type=$(awk -v m="$(df --output=target "$dir" | tail -1)" '$2 == m {t=$3} END {print t}' /proc/mounts); fi
    journal=
    if [ "$type" = ext4 ] || [ "$type" = ext3 ]; then
        if compgen -G "/proc/fs/jbd2/$base-*" >/dev/null; then journal=", journaled"; else journal=", no journal"; fi
    fi
    local discard=
    case ",$opts," in *,discard,*) discard=", mounted with discard" ;; esac
    echo "$type on $dev$journal$discard"
}

results=()

disk_dir=$out/disk
mkdir -p "$disk_dir"
label_a=$(describe "$disk_dir")
echo "== column A: $label_a ($disk_dir)"
"$bench" run --dir "$disk_dir" --label "project disk: $label_a" --sessionfs "$sessionfs" \
    --out "$out/disk.tsv" "${quick[@]}" "${rounds[@]}"
results+=("$out/disk.tsv")

if [ $loop = 1 ]; then
    size=3G
    [ ${#quick[@]} -gt 0 ] && size=2G
    rm -f "$image"
    truncate -s "$size" "$image"
    # No lazy inode-table or journal init: a background thread writing
    # zeroes would disturb the first rounds.
    mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$image"
    loop_dev=$(losetup -f --show "$image")
    mkdir -p "$loop_mnt"
    mount "$loop_dev" "$loop_mnt"
    label_b="$(describe "$loop_mnt"), image on the project disk"
    echo
    echo "== column B: $label_b ($loop_mnt)"
    # No 100,000-session walk here (half a million inodes); no walk at all
    # in --quick mode (the minute).
    phases_b=commit,read,ls,rss,writers,walk
    [ ${#quick[@]} -gt 0 ] && phases_b=commit,read,ls,rss,writers
    "$bench" run --dir "$loop_mnt/work" --label "loop device: $label_b" --sessionfs "$sessionfs" \
        --out "$out/journaled.tsv" --phases "$phases_b" "${quick[@]}" "${rounds[@]}"
    results+=("$out/journaled.tsv")
fi

command="scripts/bench.sh${quick[*]:+ ${quick[*]}}${rounds[*]:+ ${rounds[*]}}"
[ $loop = 0 ] && command="$command --no-loop"
echo
{
    echo "Measured with \`$command\` on $(date -u +%Y-%m-%d)."
    echo
    "$bench" report "${results[@]}"
} | tee "$out/report.md"
