# shellcheck shell=dash
# The host-swap rig (tests/integration/host-swap/host-swap-test) on a
# cgroup v2 kernel, as on the GPU machine: the development and CI hosts are
# cgroup v1, so this is where its memory.high path runs. nbdkit's memory
# plugin behind nbdfuse + loop, swap at a priority, memhog in a cgroup.
# Needs in the initramfs: host-swap-test and what it runs (bash, timeout,
# setsid, nbdfuse, fusermount3, losetup, mkswap, swapon, swapoff, nbdkit and
# its memory plugin), memhog; modules fuse, loop.

: "${HOG_SIZE:=128M}" "${HOG_LIMIT:=32M}" "${PAGE_CLUSTER:=5}"

step "host-swap-test on cgroup v2: memhog $HOG_SIZE held to memory.high $HOG_LIMIT"
load_module fuse
load_module loop
swap_readahead "$PAGE_CLUSTER"
host-swap-test --memhog /usr/local/bin/memhog --cgroup v2 --hog-size "$HOG_SIZE" --limit "$HOG_LIMIT" \
  --server 'exec nbdkit --foreground --unix {socket} memory 512M' 'nbd+unix:///?socket={socket}'

step "nothing left behind"
assert_eq "$(awk 'NR > 1' /proc/swaps)" "" "swap devices after the rig"
assert_eq "$(losetup -a)" "" "loop devices after the rig"
assert_eq "$(grep -c fuse /proc/mounts || true)" "0" "FUSE mounts after the rig"
assert_eq "$(find /sys/fs/cgroup -maxdepth 1 -name 'vramswap-host-swap.*' | wc -l)" "0" "rig cgroups after the rig"
