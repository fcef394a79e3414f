# shellcheck shell=dash
# The rig's own proof, with no vramswap code in it: a userspace NBD server
# (nbdkit's memory plugin) attached to the kernel's nbd driver by nbd-client
# over generic netlink with two connections, the path vramswapd's
# `attach = yes` takes. Swap on it at a priority; a process held by a cgroup
# v2 memory.max to a quarter of its size must push the rest through nbd and
# get every word back.
# Needs in the initramfs: nbdkit and its memory plugin, nbd-client,
# util-linux swapon/mkswap/swapoff, memhog; module nbd.

: "${SWAP_SIZE:=512M}" "${HOG_SIZE:=128M}" "${HOG_LIMIT:=32M}" "${HOG_PASSES:=1}"
: "${PRIORITY:=100}" "${CONNECTIONS:=2}" "${PAGE_CLUSTER:=5}"
nbd=nbd0
device=/dev/$nbd

step "load nbd, start nbdkit memory $SWAP_SIZE, attach $device with $CONNECTIONS connections"
load_module nbd nbds_max=4
nbdkit --foreground --unix /run/nbdkit.sock memory "$SWAP_SIZE" &
server=$!
wait_for_file /run/nbdkit.sock 30
nbd-client -unix /run/nbdkit.sock "$device" -connections "$CONNECTIONS" -block-size 4096
wait_for 30 "$device to connect" nbd_connected "$nbd"
assert_eq "$(($(cat /sys/block/$nbd/size) * 512))" "$(size_bytes "$SWAP_SIZE")" "$device size in bytes"
assert_eq "$(nbd_connections "$nbd")" "$CONNECTIONS" "$device connections (hardware queues)"

step "swap on $device at priority $PRIORITY"
swap_readahead "$PAGE_CLUSTER"
mkswap "$device" >/dev/null
swapon -p "$PRIORITY" "$device"
assert_eq "$(swap_priority "$device")" "$PRIORITY" "swap priority of $device in /proc/swaps"

step "memhog $HOG_SIZE in a cgroup with memory.max $HOG_LIMIT, $HOG_PASSES re-touch pass(es)"
cgroup_create hog "$HOG_LIMIT" max
vmstat_save before
hog_start=$(uptime_s)
cgroup_exec hog memhog --size "$HOG_SIZE" --passes "$HOG_PASSES" ||
  fail "memhog found wrong data or was killed (exit status $?)"
vt_log "memhog ran $(elapsed_since "$hog_start") s guest time"
vmstat_report before
cgroup_report hog
excess_pages=$((($(size_bytes "$HOG_SIZE") - $(size_bytes "$HOG_LIMIT")) / 4096))
assert_ge "$(vmstat_delta before pswpout)" "$excess_pages" "pages swapped out (pswpout) vs the hog's excess over its limit"
assert_ge "$(vmstat_delta before pswpin)" "$excess_pages" "pages swapped in (pswpin) vs the hog's excess"

step "swapoff and detach"
swapoff "$device"
nbd-client -d "$device"
wait_for 30 "$device to disconnect" nbd_disconnected "$nbd"
kill "$server"
nbd_report_timeouts
