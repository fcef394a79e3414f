# shellcheck shell=dash
# vramswapd on the fake CUDA driver, attached to the kernel's nbd driver by
# itself (attach = yes, two connections): real swap through it, then the
# promise that matters most, that it never lets go of swapped pages:
#  - swap on its device at a priority; a process in a cgroup v2 memory.max of
#    a quarter of the swap size writes 4x that: pswpout must cover the excess;
#  - SIGTERM while swap is on and the pages are out: the daemon must keep
#    serving (not exit, device still connected, swap still listed) and the
#    process must get every word back;
#  - swapoff: now the daemon disconnects and exits 0, and the nbd device shows
#    no server any more.
# VERIFY=yes runs it all with a checksum of every block (verify = yes): the
# kernel's swap I/O must pass every check.
# Needs in the initramfs: vramswapd, the fake libcuda.so.1 at $FAKE_LIBCUDA,
# util-linux swapon/mkswap/swapoff, memhog; module nbd.

: "${INSTANCE:=0}" "${SWAP_SIZE:=128M}" "${HOG_LIMIT:=32M}" "${HOG_SIZE:=128M}" "${HOG_PASSES:=1}"
: "${PRIORITY:=100}" "${CONNECTIONS:=2}" "${PAGE_CLUSTER:=5}" "${VERIFY:=no}"
: "${FAKE_LIBCUDA:=/opt/vramswap/libcuda.so.1}"
# The fake GPU's memory: a little more than the device, and all of it in the
# guest's RAM, so keep it small.
: "${VRAMSWAP_FAKE_MEMORY:=192M}" "${VRAMSWAP_FAKE_RESERVED:=16M}"
export VRAMSWAP_LIBCUDA="$FAKE_LIBCUDA" VRAMSWAP_FAKE_MEMORY VRAMSWAP_FAKE_RESERVED

step "start vramswapd --instance $INSTANCE: size $SWAP_SIZE, attach, $CONNECTIONS connections"
load_module nbd
cat >/etc/vramswap.conf <<EOF
[device.$INSTANCE]
size = $SWAP_SIZE
min_size = 64M
# The fake GPU is smaller than the default 1 GiB reserve.
reserve = 8M
attach = yes
connections = $CONNECTIONS
priority = $PRIORITY
verify = $VERIFY
# The scenario turns swap on and off itself: that is the SIGTERM case below.
swap = no
EOF
cat /etc/vramswap.conf
vramswapd --config /etc/vramswap.conf --instance "$INSTANCE" &
daemon=$!

# The daemon attached once a device carries its backend; if it exits first,
# say so at once (its error is on the console above) instead of timing out.
attached() {
  kill -0 "$daemon" 2>/dev/null || fail "vramswapd exited before attaching a device"
  nbd_for_backend "vramswap/$INSTANCE"
}
wait_for 60 "an nbd device with backend vramswap/$INSTANCE" attached
device=$(nbd_for_backend "vramswap/$INSTANCE")
nbd=${device#/dev/}
wait_for 30 "$device to connect" nbd_connected "$nbd"
vt_log "vramswapd (pid $daemon) serves $device"
assert_eq "$(($(cat "/sys/block/$nbd/size") * 512))" "$(size_bytes "$SWAP_SIZE")" "$device size in bytes"
assert_eq "$(nbd_connections "$nbd")" "$CONNECTIONS" "$device connections (hardware queues)"

step "swap on $device at priority $PRIORITY"
swap_readahead "$PAGE_CLUSTER"
mkswap "$device" >/dev/null
swapon -p "$PRIORITY" "$device"
assert_eq "$(swap_priority "$device")" "$PRIORITY" "swap priority of $device in /proc/swaps"

step "memhog $HOG_SIZE in a cgroup with memory.max $HOG_LIMIT: write, $HOG_PASSES re-touch pass(es), then hold"
cgroup_create hog "$HOG_LIMIT" max
vmstat_save before
cgroup_exec hog memhog --size "$HOG_SIZE" --passes "$HOG_PASSES" \
  --ready-file /run/memhog.ready --wait-file /run/memhog.go &
hog=$!
until [ -e /run/memhog.ready ]; do
  if ! kill -0 "$hog" 2>/dev/null; then
    status=0
    wait "$hog" || status=$?
    fail "memhog ended before its data was in place (exit status $status)"
  fi
  sleep 1
done
vmstat_report before
excess_pages=$((($(size_bytes "$HOG_SIZE") - $(size_bytes "$HOG_LIMIT")) / 4096))
assert_ge "$(vmstat_delta before pswpout)" "$excess_pages" "pages swapped out (pswpout) vs the hog's excess over its limit"

step "SIGTERM vramswapd while swap is on: it must keep serving"
kill -TERM "$daemon"
sleep 5
kill -0 "$daemon" 2>/dev/null || fail "vramswapd exited on SIGTERM while $device was still swap"
assert nbd_connected "$nbd"
assert_eq "$(swap_priority "$device")" "$PRIORITY" "$device still swap after SIGTERM"

step "memhog checks every word, reading its pages back through the terminated daemon"
vmstat_save held
touch /run/memhog.go
wait "$hog" || fail "memhog found wrong data or was killed (exit status $?)"
vmstat_report held
cgroup_report hog
assert_ge "$(vmstat_delta held pswpin)" "$excess_pages" "pages swapped in (pswpin) after SIGTERM vs the hog's excess"
kill -0 "$daemon" 2>/dev/null || fail "vramswapd exited before swapoff"

step "swapoff: now vramswapd disconnects and exits 0"
swapoff "$device"
wait_for 60 "vramswapd to exit after swapoff" sh -c "! kill -0 $daemon 2>/dev/null"
status=0
wait "$daemon" || status=$?
assert_eq "$status" 0 "vramswapd exit status"
# The daemon connects with DESTROY_ON_DISCONNECT: the device goes away with
# its connection, leaving nothing behind for a later attach to trip over.
wait_for 10 "$device to be removed after the disconnect" sh -c "[ ! -e /sys/block/$nbd ]"
[ -z "$(nbd_for_backend "vramswap/$INSTANCE")" ] || fail "a device still carries backend vramswap/$INSTANCE"
nbd_report_timeouts
