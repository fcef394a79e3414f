# shellcheck shell=dash
# Elastic VRAM on a real kernel: vramswapd on the fake CUDA driver, attached
# to the kernel's nbd driver, is real swap for a process in a small memory
# cgroup, and its blocks move to the spill area and back while the kernel
# swaps through it:
#  - the spill area is on a real filesystem (an ext4 on a loop device mounted
#    at /var/lib/vramswap; the initramfs root is a RAM filesystem, on which
#    spill = auto is refused), spill = auto makes its file there;
#  - memhog writes HOG_SIZE in a memory.max of HOG_LIMIT and re-touches it
#    HOG_PASSES times (swap-out and swap-in all along) while the scenario
#    releases everything to the spill area and restores it, cycle after cycle
#    until the passes are done (vramswap release 0 all / vramswap restore 0),
#    each answer checked;
#  - with memhog's pages out, everything is released again: the status file
#    must show the data in the spill area and none in VRAM; memhog then
#    reads every word back (from the spill area), a restore comes in the
#    middle of it, and every word must be right;
#  - swapoff, and the daemon exits 0.
# Needs in the initramfs: vramswapd, vramswap, memhog, the fake libcuda.so.1
# at $FAKE_LIBCUDA, util-linux swapon/mkswap/swapoff/losetup, mke2fs; modules
# nbd loop ext4 crc32c_generic.

: "${INSTANCE:=0}" "${SWAP_SIZE:=128M}" "${HOG_LIMIT:=32M}" "${HOG_SIZE:=96M}" "${HOG_PASSES:=2}"
: "${CYCLES:=3}" "${MAX_CYCLES:=30}" "${PAGE_CLUSTER:=5}" "${CONNECTIONS:=2}" "${SPILL_FS_SIZE:=192M}"
: "${FAKE_LIBCUDA:=/opt/vramswap/libcuda.so.1}"
: "${VRAMSWAP_FAKE_MEMORY:=192M}" "${VRAMSWAP_FAKE_RESERVED:=16M}"
export VRAMSWAP_LIBCUDA="$FAKE_LIBCUDA" VRAMSWAP_FAKE_MEMORY VRAMSWAP_FAKE_RESERVED
status_file=/run/vramswap/$INSTANCE.json

# json_number KEY: a number of the daemon's status file.
json_number() {
  sed -n "s/.*\"$1\": *\([0-9][0-9]*\).*/\1/p" "$status_file" | head -n 1
}

# The status file is refreshed every few seconds: wait until it shows the
# moves' result (or fail with what it shows).
status_shows() {
  [ "$(json_number vram_bytes)" = "$1" ] && [ "$(json_number spill_bytes)" -ge "$2" ]
}
wait_for_status() {
  local deadline=$(($(cut -d. -f1 /proc/uptime) + 30))
  until status_shows "$1" "$2" 2>/dev/null; do
    if [ "$(cut -d. -f1 /proc/uptime)" -ge "$deadline" ]; then
      cat "$status_file"
      fail "the status file does not show vram_bytes $1 and spill_bytes >= $2 within 30 s"
    fi
    sleep 0.5
  done
}

# ask release|restore: the CLI's answer must be a success that says what moved.
ask() {
  local answer status=0
  if [ "$1" = release ]; then
    answer=$(vramswap release "$INSTANCE" all 2>&1) || status=$?
  else
    answer=$(vramswap restore "$INSTANCE" 2>&1) || status=$?
  fi
  vt_log "vramswap $1: $answer"
  [ "$status" -eq 0 ] || fail "vramswap $1 $INSTANCE exited $status: $answer"
  case $answer in
    *"${1}d "*) ;;
    *) fail "vramswap $1 $INSTANCE did not say what moved: $answer" ;;
  esac
}

step "ext4 on a loop device at /var/lib/vramswap (the spill area's filesystem)"
load_module crc32c_generic
load_module loop
load_module ext4
load_module nbd
# A RAM-backed image: what matters is that the daemon writes through a real
# filesystem (O_DIRECT, no tmpfs), not the medium under it.
truncate -s "$SPILL_FS_SIZE" /tmp/spill.img
loop=$(losetup --find --show /tmp/spill.img) || fail "losetup failed"
mke2fs -q -t ext4 -F "$loop" || fail "mke2fs -t ext4 $loop failed"
mkdir -p /var/lib/vramswap
mount -t ext4 "$loop" /var/lib/vramswap || fail "mount -t ext4 $loop /var/lib/vramswap failed"
vt_log "$(grep /var/lib/vramswap /proc/mounts)"

step "start vramswapd --instance $INSTANCE: size $SWAP_SIZE, attach, spill = auto"
cat >/etc/vramswap.conf <<EOF
[device.$INSTANCE]
size = $SWAP_SIZE
min_size = 64M
# The fake GPU is smaller than the default 1 GiB reserve.
reserve = 8M
attach = yes
connections = $CONNECTIONS
swap = no
spill = auto
EOF
cat /etc/vramswap.conf
vramswapd --config /etc/vramswap.conf --instance "$INSTANCE" &
daemon=$!
attached() {
  kill -0 "$daemon" 2>/dev/null || fail "vramswapd exited before attaching a device"
  nbd_for_backend "vramswap/$INSTANCE"
}
wait_for 120 "an nbd device with backend vramswap/$INSTANCE" attached
device=$(nbd_for_backend "vramswap/$INSTANCE")
nbd=${device#/dev/}
wait_for 30 "$device to connect" nbd_connected "$nbd"
spill_file=/var/lib/vramswap/$INSTANCE.spill
[ -f "$spill_file" ] || fail "no spill file $spill_file (spill = auto on ext4)"
vt_log "spill file: $(ls -l "$spill_file")"
wait_for_file "$status_file" 30
swap_bytes=$(size_bytes "$SWAP_SIZE")

step "swap on $device; memhog $HOG_SIZE in memory.max $HOG_LIMIT, $HOG_PASSES passes, while VRAM moves"
swap_readahead "$PAGE_CLUSTER"
mkswap "$device" >/dev/null
swapon "$device"
cgroup_create hog "$HOG_LIMIT" max
vmstat_save before
cgroup_exec hog memhog --size "$HOG_SIZE" --passes "$HOG_PASSES" \
  --ready-file /run/memhog.ready --wait-file /run/memhog.go &
hog=$!
hog_alive() {
  kill -0 "$hog" 2>/dev/null && return 0
  status=0
  wait "$hog" || status=$?
  fail "memhog ended before its data was in place (exit status $status)"
}
# Let the kernel start swapping before the first release.
wait_for 120 "swap to be in use" sh -c "[ \$(awk '\$1 == \"$device\" { print \$4 }' /proc/swaps) -gt 0 ]"
# Cycles go on while memhog writes and re-touches its pages (at least
# CYCLES, then until its passes are done; at most MAX_CYCLES).
cycle=0
while [ "$cycle" -lt "$CYCLES" ] || { [ ! -e /run/memhog.ready ] && [ "$cycle" -lt "$MAX_CYCLES" ]; }; do
  cycle=$((cycle + 1))
  hog_alive
  vt_log "cycle $cycle: swap used $(awk -v dev="$device" '$1 == dev { print $4 }' /proc/swaps) KiB, pswpout +$(vmstat_delta before pswpout), pswpin +$(vmstat_delta before pswpin)"
  ask release
  sleep 2
  ask restore
  sleep 1
done
vt_log "$cycle release/restore cycles while memhog swapped"
wait_for 600 "memhog to finish its passes" sh -c "[ -e /run/memhog.ready ] || ! kill -0 $hog"
hog_alive
vmstat_report before
excess_pages=$((($(size_bytes "$HOG_SIZE") - $(size_bytes "$HOG_LIMIT")) / 4096))
assert_ge "$(vmstat_delta before pswpout)" "$excess_pages" "pages swapped out (pswpout) vs the hog's excess over its limit"
assert_ge "$(vmstat_delta before pswpin)" "$excess_pages" "pages swapped in (pswpin) during the passes"

step "release everything with memhog's pages out: the data must be in the spill area"
ask release
# At least the hog's excess is live swap data; the rest may be unused.
wait_for_status 0 "$((excess_pages * 4096))"
vt_log "status: vram_bytes $(json_number vram_bytes), spill_bytes $(json_number spill_bytes), none_bytes $(json_number none_bytes)"
vt_log "vramswap status: $(vramswap status 2>&1 | grep -i spill | head -n 3)"

step "memhog checks every word, from the spill area; a restore comes in the middle"
vmstat_save released
touch /run/memhog.go
sleep 3
ask restore
status=0
wait "$hog" || status=$?
[ "$status" -eq 0 ] || fail "memhog found wrong data or was killed (exit status $status)"
vmstat_report released
cgroup_report hog
wait_for_status "$swap_bytes" 0

step "SIGTERM, swapoff: vramswapd disconnects and exits 0"
kill -TERM "$daemon"
swapoff "$device"
wait_for 60 "vramswapd to exit after swapoff" sh -c "! kill -0 $daemon 2>/dev/null"
status=0
wait "$daemon" || status=$?
assert_eq "$status" 0 "vramswapd exit status"
umount /var/lib/vramswap
losetup -d "$loop"
nbd_report_timeouts
