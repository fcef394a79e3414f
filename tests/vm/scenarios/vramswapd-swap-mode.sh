# shellcheck shell=dash
# vramswapd with swap = yes, the mode for machines without systemd: the
# daemon makes the swap area itself (mkswap, swapon at the configured
# priority, with discard), serves its listen socket beside the kernel device,
# and on SIGTERM turns swap off first and only then disconnects and exits 0.
# Needs in the initramfs: vramswapd, the fake libcuda.so.1 at $FAKE_LIBCUDA,
# util-linux mkswap (the daemon runs it), nbdinfo; module nbd.

: "${INSTANCE:=swapmode}" "${SWAP_SIZE:=64M}" "${PRIORITY:=77}" "${CONNECTIONS:=2}"
: "${FAKE_LIBCUDA:=/opt/vramswap/libcuda.so.1}"
: "${VRAMSWAP_FAKE_MEMORY:=128M}" "${VRAMSWAP_FAKE_RESERVED:=16M}"
export VRAMSWAP_LIBCUDA="$FAKE_LIBCUDA" VRAMSWAP_FAKE_MEMORY VRAMSWAP_FAKE_RESERVED

step "start vramswapd with swap = yes, priority $PRIORITY, discard, and a listen socket"
load_module nbd
mkdir -p -m 0700 /run/vramswap
cat >/etc/vramswap.conf <<EOF2
[device.$INSTANCE]
size = $SWAP_SIZE
min_size = 32M
# The fake GPU is smaller than the default 1 GiB reserve.
reserve = 8M
connections = $CONNECTIONS
swap = yes
priority = $PRIORITY
discard = yes
listen = /run/vramswap/$INSTANCE.sock
EOF2
vramswapd --config /etc/vramswap.conf --instance "$INSTANCE" &
daemon=$!

swapped_on() {
  kill -0 "$daemon" 2>/dev/null || fail "vramswapd exited before turning swap on"
  device=$(nbd_for_backend "vramswap/$INSTANCE") && [ -n "$(swap_priority "$device")" ]
}
wait_for 60 "vramswapd to turn swap on" swapped_on
device=$(nbd_for_backend "vramswap/$INSTANCE")
nbd=${device#/dev/}
vt_log "vramswapd (pid $daemon) made $device swap by itself"
assert_eq "$(swap_priority "$device")" "$PRIORITY" "swap priority of $device in /proc/swaps"
assert_eq "$(awk -v d="$device" '$1 == d { print $3 }' /proc/swaps)" "$((($(size_bytes "$SWAP_SIZE") - 4096) / 1024))" \
  "swap size of $device in KiB (the area minus its header page)"

step "the listen socket serves the same export beside the kernel device"
assert_eq "$(nbdinfo --size "nbd+unix:///?socket=/run/vramswap/$INSTANCE.sock")" "$(size_bytes "$SWAP_SIZE")" \
  "export size seen through the listen socket"

step "SIGTERM: swapoff first, then disconnect, then exit 0"
kill -TERM "$daemon"
wait_for 60 "vramswapd to exit" sh -c "! kill -0 $daemon 2>/dev/null"
status=0
wait "$daemon" || status=$?
assert_eq "$status" 0 "vramswapd exit status"
[ -z "$(awk -v d="$device" '$1 == d' /proc/swaps)" ] || fail "$device is still swap after the daemon exited"
wait_for 10 "$device to be removed after the disconnect" sh -c "[ ! -e /sys/block/$nbd ]"
[ ! -e "/run/vramswap/$INSTANCE.sock" ] || fail "the listen socket was left behind"
