#!/usr/bin/env bash
# Soak test: runs the crash and concurrency scenarios over and over for a
# chosen time, then prints one summary line:
#
#   soak: 300s trials=… commits=… torn=0 lost=0 killed_committed=0 … PASS
#
# - torn:  `session` found not to be one whole checkpoint (must be 0)
# - lost:  a checkpoint whose commit returned success, missing (must be 0)
# - killed_committed: a writer killed before close() whose data was
#   committed (must be 0)
#
# Usage: scripts/soak.sh [DURATION]    DURATION: seconds, or 90s, 5m, 1h
#                                      (default 5m)
# Needs root, /dev/fuse, loop devices, mkfs.ext4 and xfs_io, like the tests.
# Set SESSIONFS_TEST_SEED to replay a run; the seeds used are in the log.
set -euo pipefail
cd "$(dirname "$0")/.."

duration=${1:-5m}
case "$duration" in
    *h) secs=$(( ${duration%h} * 3600 )) ;;
    *m) secs=$(( ${duration%m} * 60 )) ;;
    *s) secs=${duration%s} ;;
    *) secs=$duration ;;
esac
if ! [[ "$secs" =~ ^[0-9]+$ ]] || [ "$secs" -lt 10 ]; then
    echo "soak.sh: DURATION must be at least 10 seconds (got '$duration')" >&2
    exit 2
fi

# Each test binary gets a share of the time; a binary whose scenarios run
# one after the other (they share this process' descriptors) divides its
# share among them.
#   binary              scenarios run in sequence
binaries=(
    "crash_mount_writer  1"
    "crash_core_writer   1"
    "crash_daemon_kill   2"
    "crash_power_cut     1"
    "concurrency_writers 1"
)
share=$(( secs / ${#binaries[@]} ))

log_dir=$(mktemp -d "${TMPDIR:-/tmp}/sessionfs-soak.XXXXXX")
stats="$log_dir/stats"
: > "$stats"
echo "soak.sh: ${secs}s, ${share}s per scenario group; logs in $log_dir" >&2

args=()
for entry in "${binaries[@]}"; do
    read -r name _ <<<"$entry"
    args+=(--test "$name")
done
cargo test --locked --no-run "${args[@]}" >"$log_dir/build.log" 2>&1 || {
    cat "$log_dir/build.log" >&2
    exit 1
}

failed=()
for entry in "${binaries[@]}"; do
    read -r name sequential <<<"$entry"
    per=$(( share / sequential ))
    [ "$per" -ge 1 ] || per=1
    echo "soak.sh: $name (${per}s per scenario)" >&2
    if ! SESSIONFS_SOAK_SECONDS=$per SESSIONFS_SOAK_STATS_FILE="$stats" \
        cargo test --locked -q --test "$name" -- --nocapture \
        >"$log_dir/$name.log" 2>&1; then
        failed+=("$name")
        echo "soak.sh: $name FAILED (see $log_dir/$name.log)" >&2
        grep -E "PROBLEM|panicked" "$log_dir/$name.log" | head -20 >&2 || true
    fi
done

awk -v secs="$secs" -v failed="${failed[*]:-}" '
{
    for (i = 2; i <= NF; i++) {
        split($i, kv, "=")
        if (kv[1] != "scenario") sum[kv[1]] += kv[2]
    }
    scenarios++
}
END {
    ok = (failed == "" && sum["torn"] == 0 && sum["lost"] == 0 \
          && sum["killed_committed"] == 0 && sum["problems"] == 0)
    printf "soak: %ss scenarios=%d trials=%d commits=%d torn=%d lost=%d " \
           "killed_committed=%d killed_before_close=%d killed_in_close=%d " \
           "stale_locks_cleared=%d problems=%d %s\n",
           secs, scenarios, sum["trials"], sum["commits"], sum["torn"], sum["lost"],
           sum["killed_committed"], sum["killed_before_close"], sum["killed_in_close"],
           sum["stale_locks"], sum["problems"],
           ok ? "PASS" : "FAIL" (failed == "" ? "" : " (failed: " failed ")")
    exit ok ? 0 : 1
}' "$stats"
