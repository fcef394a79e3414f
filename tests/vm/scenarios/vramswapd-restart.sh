# shellcheck shell=dash
# Live restart on the real kernel's nbd driver (vramswapd(8), RESTART):
#  - vramswapd on the fake CUDA driver with a spill file on a disk
#    filesystem (ext2 on a loop device), swap on its device, a process in a
#    cgroup v2 memory.max holding most of its pattern in that swap;
#  - SIGUSR2 (a restart): the daemon moves every chunk to the spill file,
#    records them and exits 0 WITHOUT disconnecting: the device stays, still
#    swap;
#  - with no daemon, the process starts reading its pages back (requests
#    the kernel must queue), and only then a new vramswapd starts: it must
#    reattach to the same /dev/nbdX with NBD_CMD_RECONFIGURE, the queued
#    requests complete, and the process verifies every word;
#  - the crash path: kill -9 of that daemon, then a new one: it must not
#    reattach (no record): it disconnects the old device, whose reads then
#    fail, and makes a new one;
#  - the crash path with a file descriptor store (fd-store-keeper playing
#    systemd's part): kill -9 while the process reads its pages back; the
#    restarted daemon takes the VRAM and block map from the store and
#    reattaches to the same /dev/nbdX; the process verifies every word.
# Needs in the initramfs: vramswapd, fd-store-keeper, the fake libcuda.so.1 at
# $FAKE_LIBCUDA, util-linux swapon/mkswap/swapoff, memhog; modules nbd, loop, ext4, crc32c_generic
# (ext4 asks for crc32c at mount, not through modules.dep).

: "${INSTANCE:=0}" "${SWAP_SIZE:=96M}" "${HOG_LIMIT:=32M}" "${HOG_SIZE:=96M}"
: "${PRIORITY:=100}" "${CONNECTIONS:=2}" "${PAGE_CLUSTER:=5}" "${GAP:=5}"
: "${FAKE_LIBCUDA:=/opt/vramswap/libcuda.so.1}"
: "${VRAMSWAP_FAKE_MEMORY:=192M}" "${VRAMSWAP_FAKE_RESERVED:=16M}"
export VRAMSWAP_LIBCUDA="$FAKE_LIBCUDA" VRAMSWAP_FAKE_MEMORY VRAMSWAP_FAKE_RESERVED

step "a disk filesystem for the spill file (ext2 on a loop device; tmpfs is refused)"
load_module nbd
load_module loop
load_module crc32c_generic
load_module ext4
dd if=/dev/zero of=/spill.img bs=1M count=200 2>/dev/null
mke2fs -F /spill.img >/dev/null 2>&1 || fail "mke2fs /spill.img failed"
mkdir -p /var/lib/vramswap
wait_for 10 "a free loop device" losetup -f
loopdev=$(losetup -f)
losetup "$loopdev" /spill.img
mount -t ext4 "$loopdev" /var/lib/vramswap || fail "cannot mount $loopdev with the ext4 driver"

cat >/etc/vramswap.conf <<CONF
[device.$INSTANCE]
size = $SWAP_SIZE
min_size = 32M
reserve = 8M
attach = yes
connections = $CONNECTIONS
priority = $PRIORITY
spill = /var/lib/vramswap/$INSTANCE.spill
swap = no
CONF

start_daemon() {
  vramswapd --config /etc/vramswap.conf --instance "$INSTANCE" >>"/run/vramswapd.$1.log" 2>&1 &
  daemon=$!
}
daemon_said() { grep -q "$2" "/run/vramswapd.$1.log"; }

step "first vramswapd: attach, swap on, a process's pages swapped out"
start_daemon 1
attached() {
  kill -0 "$daemon" 2>/dev/null || { cat /run/vramswapd.1.log; fail "vramswapd exited before attaching"; }
  nbd_for_backend "vramswap/$INSTANCE"
}
wait_for 120 "an nbd device with backend vramswap/$INSTANCE" attached
device=$(nbd_for_backend "vramswap/$INSTANCE")
nbd=${device#/dev/}
wait_for 30 "$device to connect" nbd_connected "$nbd"
wait_for 60 "vramswapd ready" daemon_said 1 "ready:"
swap_readahead "$PAGE_CLUSTER"
mkswap "$device" >/dev/null
swapon -p "$PRIORITY" "$device"
cgroup_create hog "$HOG_LIMIT" max
vmstat_save before
cgroup_exec hog memhog --size "$HOG_SIZE" --passes 1 \
  --ready-file /run/memhog.ready --wait-file /run/memhog.go &
hog=$!
until [ -e /run/memhog.ready ]; do
  kill -0 "$hog" 2>/dev/null || fail "memhog ended before its data was in place"
  sleep 1
done
excess_pages=$((($(size_bytes "$HOG_SIZE") - $(size_bytes "$HOG_LIMIT")) / 4096))
assert_ge "$(vmstat_delta before pswpout)" "$excess_pages" "pages swapped out before the restart"

step "SIGUSR2: the daemon hands the device over through the spill file and exits"
kill -USR2 "$daemon"
wait_for 120 "vramswapd to exit after SIGUSR2" sh -c "! kill -0 $daemon 2>/dev/null"
status=0
wait "$daemon" || status=$?
cat /run/vramswapd.1.log
assert_eq "$status" 0 "exit status of the daemon that handed over"
assert daemon_said 1 "handed over $device"
assert_eq "$(nbd_for_backend "vramswap/$INSTANCE")" "$device" "device left configured"
assert_eq "$(swap_priority "$device")" "$PRIORITY" "$device still swap with no daemon"

step "no daemon: the process reads its pages back (the kernel queues), $GAP s later a new vramswapd"
vmstat_save held
gap_start=$(uptime_s)
touch /run/memhog.go
sleep "$GAP"
kill -0 "$hog" 2>/dev/null || fail "memhog ended while no daemon served its swap"
start_daemon 2
wait_for 120 "the new vramswapd to reattach" daemon_said 2 "reattached $device"
vt_log "reattached $(elapsed_since "$gap_start") s after the process began reading"
wait "$hog" || { cat /run/vramswapd.2.log; fail "memhog found wrong data or was killed (exit status $?)"; }
vt_log "memhog verified every word, $(elapsed_since "$gap_start") s after it began reading"
cat /run/vramswapd.2.log
assert_ge "$(vmstat_delta held pswpin)" "$excess_pages" "pages swapped in across the restart"
assert_eq "$(nbd_for_backend "vramswap/$INSTANCE")" "$device" "the same device after the restart"
assert_eq "$(swap_priority "$device")" "$PRIORITY" "$device still swap after the restart"
if dmesg | grep -q "I/O error.*$nbd"; then
  dmesg | grep "$nbd" | tail -20
  fail "the kernel logged I/O errors on $device across the restart"
fi

step "crash: kill -9, then a new vramswapd must not reattach (no record)"
kill -9 "$daemon"
wait "$daemon" 2>/dev/null || true
start_daemon 3
wait_for 120 "the third vramswapd to be ready" daemon_said 3 "ready:"
cat /run/vramswapd.3.log
assert daemon_said 3 "$device was left by an earlier vramswapd"
daemon_said 3 "reattached" && fail "the daemon after a crash reattached to $device"
# Nothing else turns that swap off (under systemd the swap unit no longer
# goes down with its daemon): the new daemon does, once the reads fail.
assert daemon_said 3 "swap off $device"
if dd if="$device" of=/dev/null bs=4096 count=1 iflag=direct 2>/dev/null; then
  fail "$device still reads after the crash path disconnected it"
fi
vt_log "ok: $device fails its reads after the crash"
# Once swap lets go of the old device it is deleted.
wait_for 30 "$device to go away" sh -c "[ ! -e /sys/block/$nbd ]"
new_device=$(nbd_for_backend "vramswap/$INSTANCE")
[ -n "$new_device" ] || fail "no device with backend vramswap/$INSTANCE after the crash path"
assert nbd_connected "${new_device#/dev/}"
vt_log "ok: the daemon after the crash serves a new device, $new_device"
kill -TERM "$daemon"
wait_for 60 "the third vramswapd to exit" sh -c "! kill -0 $daemon 2>/dev/null"

# The kernel side of a crash that loses nothing: fd-store-keeper stands in
# for systemd (notify socket, file descriptor store, Restart=), so the daemon
# keeps its VRAM and block map there; after kill -9 the next one takes the
# same /dev/nbdX over while the process's swap-ins wait in the kernel.
step "crash with a file descriptor store: kill -9 under fd-store-keeper, the next vramswapd takes over"
wait_for 30 "$new_device to go away" sh -c "[ ! -e /sys/block/${new_device#/dev/} ]"
fd-store-keeper /run/vramswap-notify /run/vramswapd.pid \
  vramswapd --config /etc/vramswap.conf --instance "$INSTANCE" >>/run/vramswapd.4.log 2>&1 &
keeper=$!
keeper_ready() {
  kill -0 "$keeper" 2>/dev/null || { cat /run/vramswapd.4.log; fail "fd-store-keeper exited"; }
  grep -q "fd-store-keeper: pid [0-9]* ready" /run/vramswapd.4.log
}
wait_for 120 "the fourth vramswapd to be ready" keeper_ready
grep -qE "ready, [1-9][0-9]* descriptors stored" /run/vramswapd.4.log ||
  { cat /run/vramswapd.4.log; fail "the daemon stored nothing in the file descriptor store"; }
kept=$(nbd_for_backend "vramswap/$INSTANCE")
[ -n "$kept" ] || fail "no device with backend vramswap/$INSTANCE under fd-store-keeper"
wait_for 30 "$kept to connect" nbd_connected "${kept#/dev/}"
mkswap "$kept" >/dev/null
swapon -p "$PRIORITY" "$kept"
rm -f /run/memhog.ready /run/memhog.go
vmstat_save before_kill
cgroup_exec hog memhog --size "$HOG_SIZE" --passes 1 \
  --ready-file /run/memhog.ready --wait-file /run/memhog.go &
hog=$!
until [ -e /run/memhog.ready ]; do
  kill -0 "$hog" 2>/dev/null || fail "the second memhog ended before its data was in place"
  sleep 1
done
assert_ge "$(vmstat_delta before_kill pswpout)" "$excess_pages" "pages swapped out before kill -9"
victim=$(cat /run/vramswapd.pid)
vmstat_save killed
kill_start=$(uptime_s)
# The process starts reading its pages back as the daemon dies.
touch /run/memhog.go
kill -9 "$victim"
taken_over() {
  if daemon_said 4 "was left by an earlier vramswapd" || daemon_said 4 "cannot take over"; then
    cat /run/vramswapd.4.log
    fail "the vramswapd after kill -9 did not take $kept over"
  fi
  daemon_said 4 "reattached $kept"
}
wait_for 120 "a new vramswapd to reattach $kept" taken_over
vt_log "reattached $(elapsed_since "$kill_start") s after kill -9"
wait "$hog" || { cat /run/vramswapd.4.log; fail "memhog found wrong data or was killed after kill -9 (exit status $?)"; }
vt_log "memhog verified every word, $(elapsed_since "$kill_start") s after kill -9"
cat /run/vramswapd.4.log
assert daemon_said 4 "killed by signal 9; starting it again with"
assert daemon_said 4 "$kept was handed over by the vramswapd before (it died)"
assert daemon_said 4 "this daemon took $kept over with every written page"
assert_ge "$(vmstat_delta killed pswpin)" "$excess_pages" "pages swapped in across kill -9"
assert_eq "$(nbd_for_backend "vramswap/$INSTANCE")" "$kept" "the same device after kill -9"
assert_eq "$(swap_priority "$kept")" "$PRIORITY" "$kept still swap after kill -9"
if dmesg | grep -q "I/O error.*${kept#/dev/}"; then
  dmesg | grep "${kept#/dev/}" | tail -20
  fail "the kernel logged I/O errors on $kept across kill -9"
fi
swapoff "$kept"
kill -TERM "$(cat /run/vramswapd.pid)"
wait_for 60 "fd-store-keeper to exit with its daemon" sh -c "! kill -0 $keeper 2>/dev/null"
nbd_report_timeouts
