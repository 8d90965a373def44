#!/bin/bash
# PID 1 of the User-Mode Linux guest booted by scripts/nfs/run.sh.
#
# The guest's root is the host's / (hostfs), so everything this script or a
# daemon writes outside the tmpfs mounts below lands on the host: the NFS
# daemons' state (/var/lib/nfs, /run) and scratch space (/tmp) are tmpfs here,
# and the only host paths written are the run directory ($nfsrun) and the
# ext4 image behind /dev/ubdb.
#
# The kernel passes `nfsrun=DIR` from its command line in the environment;
# DIR/env (written by run.sh) says what to test. Results: DIR/test.out (the
# test's output), DIR/test.rc (its exit status, written last), DIR/guest.log
# (this script's trace), DIR/dmesg.txt, DIR/nfsd-clients.txt.
#
# Network: only the guest's loopback exists (UML has no other device unless
# one is given on its command line, and run.sh gives none); the server and
# its three clients talk over 127.0.0.1.

export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root LANG=C.UTF-8 PYTHONDONTWRITEBYTECODE=1
# UML restores only the x87/SSE/AVX part of a thread's FPU state (see
# scripts/nfs/xstate_shim.c): keep glibc off AVX-512 inside the guest.
export GLIBC_TUNABLES=glibc.cpu.hwcaps=-AVX512F,-AVX512VL,-AVX512BW,-AVX512DQ,-AVX512CD

run=${nfsrun:?the kernel command line must set nfsrun=DIR}

power_off() {
    sync
    # reboot(2) with LINUX_REBOOT_CMD_POWER_OFF: UML's process exits.
    python3 -c 'import ctypes; ctypes.CDLL(None).reboot(0x4321fedc)'
    echo o >/proc/sysrq-trigger
    sleep 10
}

exec >"$run/guest.log" 2>&1
# shellcheck source=/dev/null
. "$run/env"
echo "guest: $(uname -r), $(date -u +%FT%TZ)"
set -x

fail_setup() {
    set +x
    echo "guest setup failed: $*"
    {
        echo "NFS harness: guest setup failed: $*"
        echo "0 passed, 1 failed"
    } >"$run/test.out"
    dmesg >"$run/dmesg.txt" 2>&1
    echo 1 >"$run/test.rc"
    power_off
}

# The guest's own pseudo-filesystems first (DEVTMPFS_MOUNT may have mounted
# /dev already).
mount -t proc proc /proc || fail_setup "mount /proc"
mount -t sysfs sysfs /sys || fail_setup "mount /sys"
mountpoint -q /dev || mount -t devtmpfs devtmpfs /dev || fail_setup "mount /dev"
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
for d in /run /tmp /var/lib/nfs; do
    mount -t tmpfs -o mode=0755 tmpfs "$d" || fail_setup "tmpfs on $d"
done
chmod 1777 /tmp
ip link set lo up || fail_setup "lo up"
hostname nfs-server

# Modules: the package keeps them in /usr/lib/uml/modules/VERSION, while
# `modprobe -d BASE` looks in BASE/lib/modules/VERSION; a link on tmpfs
# bridges the two without touching the host's /lib/modules.
mkdir -p /tmp/kmod/lib
ln -s /usr/lib/uml/modules /tmp/kmod/lib/modules
modprobe -d /tmp/kmod -a nfsd nfsv3 nfsv4 fuse || fail_setup "modprobe"

# The server: state on tmpfs, daemons bound to loopback.
mkdir -p /var/lib/nfs/sm /var/lib/nfs/sm.bak /var/lib/nfs/v4recovery /run/rpcbind
touch /var/lib/nfs/etab /var/lib/nfs/rmtab /var/lib/nfs/state
mount -t nfsd nfsd /proc/fs/nfsd || fail_setup "mount nfsd"
# (rpcbind -h crashes in Debian 12's rpcbind: a double free; only lo exists anyway.)
rpcbind -w || fail_setup "rpcbind"
rpc.statd --no-notify -n 127.0.0.1 || fail_setup "rpc.statd"

# hostfs cannot be exported ("does not support NFS export": it has no export
# operations), so the exported filesystem is ext4 on the UML block device
# that run.sh backs with an image file on the host.
export_dir=/tmp/nfs-export
mkdir -p "$export_dir"
mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 /dev/ubdb || fail_setup "mkfs"
mount -t ext4 /dev/ubdb "$export_dir" || fail_setup "mount ext4"
# fsid=0: the export is the NFSv4 pseudo-root (the guest's / is hostfs and
# cannot be part of a pseudo-filesystem); v3 mounts it by its path.
exportfs -i -o rw,sync,no_root_squash,no_subtree_check,insecure,fsid=0 \
    "127.0.0.1:$export_dir" || fail_setup "exportfs"
rpc.mountd -H 127.0.0.1 2>/dev/null || rpc.mountd || fail_setup "rpc.mountd"
# A 10 s grace period (the shortest nfsd accepts) instead of 90 s; the lease
# stays at its default (90 s) as on a real server.
rpc.nfsd -H 127.0.0.1 -G 10 8 || fail_setup "rpc.nfsd"
grace_end=$(($(date +%s) + 11))
cat /proc/fs/nfsd/versions /proc/fs/nfsd/nfsv4gracetime /proc/fs/nfsd/nfsv4leasetime
cat /proc/sys/fs/nfs/nlm_grace_period 2>/dev/null

# Three clients: v4.2, v4.1, v3, each its own superblock (nosharecache: its
# own inode, dentry, attribute and page caches) and its own node name (a UTS
# namespace per mount), so the server sees three NFSv4/NLM clients with
# distinct identities. NFS_CLIENT_OPTS (from run.sh) adds options to all.
mnt_base=/tmp/nfs
opts=${NFS_CLIENT_OPTS:+,$NFS_CLIENT_OPTS}
while read -r name vers path host; do
    mkdir -p "$mnt_base/$name"
    unshare --uts sh -c "hostname $host && exec mount -t nfs -o vers=$vers,nosharecache$opts 127.0.0.1:$path $mnt_base/$name" ||
        fail_setup "mount $name"
done <<EOF
v42 4.2 / nfs-client-a
v41 4.1 / nfs-client-b
v3 3 $export_dir nfs-client-c
EOF
grep ' nfs' /proc/mounts

# Until the server's grace period ends, new opens (v4) and locks (v3, v4)
# are refused and the clients retry with a growing back-off (the first
# probe would then take ~25 s): wait it out, then take one lock through
# every client so the tests start after it.
grace_start=$(date +%s)
while [ "$(date +%s)" -lt "$grace_end" ]; do sleep 0.2; done
for name in v42 v41 v3; do
    timeout 60 python3 -c 'import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
fcntl.lockf(fd, fcntl.LOCK_EX)' "$mnt_base/$name/.grace-probe" || fail_setup "first lock on $name"
done
rm -f "$mnt_base/v42/.grace-probe"
echo "grace period over after $(($(date +%s) - grace_start)) s"

set +x
for f in /proc/fs/nfsd/clients/*/info; do
    [ -e "$f" ] && { echo "== $f"; cat "$f"; }
done >"$run/nfsd-clients.txt" 2>&1

echo "running: ${NFS_TEST[*]}"
start=$(date +%s.%N)
env NFS_MOUNTS="v42=$mnt_base/v42 v41=$mnt_base/v41 v3=$mnt_base/v3" \
    NFS_SERVER_DIR="$export_dir" \
    "${NFS_TEST[@]}" >"$run/test.out" 2>&1 </dev/null
rc=$?
end=$(date +%s.%N)
echo "test exited $rc after $(awk "BEGIN { printf \"%.1f\", $end - $start }") s"

for f in /proc/fs/nfsd/clients/*/info; do
    [ -e "$f" ] && { echo "== $f"; cat "$f"; }
done >>"$run/nfsd-clients.txt" 2>&1
dmesg >"$run/dmesg.txt" 2>&1
set -x
for name in v42 v41 v3; do
    umount "$mnt_base/$name" || umount -l "$mnt_base/$name"
done
echo "$rc" >"$run/test.rc"
power_off
