# shellcheck shell=dash
# Guest-side helpers for the VM scenarios (busybox ash). Scenarios run with
# `set -e`; a failed helper ends the scenario with a "vmtest: FAIL:" line.

vt_log() { echo "vmtest: $*"; }

# Debian's busybox shell runs its own applet for a command name before
# searching PATH, so `swapon -p` would reach busybox's swapon (no -p) even
# with util-linux's at /usr/sbin/swapon. A shell function wins over an
# applet: every real program installed under that name gets one.
applets=" $(/bin/busybox --list | tr '\n' ' ') "
for program in /usr/local/sbin/* /usr/local/bin/* /usr/sbin/* /usr/bin/* /sbin/*; do
  if [ -f "$program" ] && [ ! -L "$program" ]; then
    case $applets in
      *" ${program##*/} "*) eval "${program##*/}() { $program \"\$@\"; }" ;;
    esac
  fi
done
unset program applets

# real_program NAME: NAME's path if a real program of that name is installed,
# so that `exec` in a fresh shell runs it and not busybox's applet.
real_program() {
  local dir
  case $1 in */*) echo "$1"; return ;; esac
  for dir in /usr/local/sbin /usr/local/bin /usr/sbin /usr/bin /sbin; do
    [ -f "$dir/$1" ] && [ ! -L "$dir/$1" ] && echo "$dir/$1" && return
  done
  echo "$1"
}

fail() {
  echo "vmtest: FAIL: $*"
  exit 1
}

# Guest uptime in seconds, with hundredths: for timings in the log.
uptime_s() { cut -d' ' -f1 /proc/uptime; }
elapsed_since() { awk -v start="$1" '{printf "%.1f", $1 - start}' /proc/uptime; }

# step NAME: marks the start of a phase, so a log shows where time went.
step() { vt_log "== $* (at $(uptime_s) s)"; }

# assert COMMAND...: the command must succeed.
assert() {
  "$@" || fail "assertion failed: $*"
}

# assert_ge VALUE MINIMUM WHAT
assert_ge() {
  [ "$1" -ge "$2" ] || fail "$3: $1, expected at least $2"
  vt_log "ok: $3: $1 >= $2"
}

# assert_eq VALUE EXPECTED WHAT
assert_eq() {
  [ "$1" = "$2" ] || fail "$3: '$1', expected '$2'"
  vt_log "ok: $3: '$1'"
}

# wait_for SECONDS WHAT COMMAND...: polls COMMAND until it succeeds.
wait_for() {
  local seconds=$1 what=$2 deadline
  shift 2
  deadline=$(($(cut -d. -f1 /proc/uptime) + seconds))
  until "$@" >/dev/null 2>&1; do
    [ "$(cut -d. -f1 /proc/uptime)" -lt "$deadline" ] ||
      fail "timed out after $seconds s waiting for $what"
    sleep 0.2
  done
}

# wait_for_file PATH SECONDS
wait_for_file() { wait_for "$2" "$1 to appear" test -e "$1"; }

# wait_for_exit PID SECONDS: waits for a process (not necessarily our child) to end.
wait_for_exit() { wait_for "$2" "process $1 to exit" sh -c "! kill -0 $1"; }

# load_module NAME [PARAM=VALUE...]
load_module() {
  modprobe "$@" || fail "modprobe $* failed"
}

# vmstat_value KEY: one counter of /proc/vmstat.
vmstat_value() { awk -v key="$1" '$1 == key { print $2 }' /proc/vmstat; }

# vmstat_save NAME, then vmstat_delta NAME KEY: how much KEY grew since.
vmstat_save() { cp /proc/vmstat "/tmp/vmstat.$1"; }
vmstat_delta() {
  local before
  before=$(awk -v key="$2" '$1 == key { print $2 }' "/tmp/vmstat.$1")
  echo $(($(vmstat_value "$2") - before))
}

# vmstat_report NAME: prints the swap-related counters' growth since NAME.
vmstat_report() {
  local key
  for key in pswpout pswpin pgmajfault oom_kill; do
    vt_log "vmstat since $1: $key +$(vmstat_delta "$1" "$key")"
  done
}

# cgroup_create NAME LIMIT [max|high]: a cgroup v2 group with memory.max
# (default: a hard limit, so everything above it must go to swap) or
# memory.high (a throttle, for swap too slow to keep up with reclaim).
cgroup_create() {
  local name=$1 limit=$2 knob=${3:-max}
  grep -q memory /sys/fs/cgroup/cgroup.subtree_control ||
    echo +memory >/sys/fs/cgroup/cgroup.subtree_control
  mkdir -p "/sys/fs/cgroup/$name"
  echo "$limit" >"/sys/fs/cgroup/$name/memory.$knob"
  vt_log "cgroup $name: memory.$knob = $(cat "/sys/fs/cgroup/$name/memory.$knob")"
}

# cgroup_exec NAME COMMAND...: runs COMMAND inside the cgroup.
cgroup_exec() {
  local name=$1 program
  program=$(real_program "$2")
  shift 2
  sh -c 'echo $$ >"$0" && exec "$@"' "/sys/fs/cgroup/$name/cgroup.procs" "$program" "$@"
}

# cgroup_report NAME: what the group's memory controller saw.
cgroup_report() {
  local dir=/sys/fs/cgroup/$1
  vt_log "cgroup $1: memory.events: $(tr '\n' ' ' <"$dir/memory.events")"
  vt_log "cgroup $1: memory.swap.current $(cat "$dir/memory.swap.current"), memory.peak $(cat "$dir/memory.peak" 2>/dev/null || echo n/a)"
}

# swap_readahead CLUSTER: swap-in reads 2^CLUSTER pages per fault. Under TCG
# every synchronous round trip to the NBD server is costly (a wake-up across
# emulated CPUs), so the scenarios read 32 pages at a time instead of the
# default 8: the same I/O path, about a quarter of the waits.
swap_readahead() {
  echo "$1" >/proc/sys/vm/page-cluster
  vt_log "vm.page-cluster = $1 ($((1 << $1)) pages per swap-in)"
}

# swap_priority DEVICE: the priority /proc/swaps lists for DEVICE.
swap_priority() { awk -v dev="$1" '$1 == dev { print $5 }' /proc/swaps; }

# size_bytes 256M: bytes of a size with a K, M or G suffix.
size_bytes() {
  case $1 in
    *K) echo $((${1%K} * 1024)) ;;
    *M) echo $((${1%M} * 1024 * 1024)) ;;
    *G) echo $((${1%G} * 1024 * 1024 * 1024)) ;;
    *) echo "$1" ;;
  esac
}

# nbd_for_backend ID: the /dev/nbdX whose backend identifier is ID (vramswapd
# sets "vramswap/NAME"); fails if there is none yet.
nbd_for_backend() {
  local backend
  for backend in /sys/block/nbd*/backend; do
    [ "$(cat "$backend" 2>/dev/null)" = "$1" ] || continue
    backend=${backend%/backend}
    echo "/dev/${backend##*/}"
    return 0
  done
  return 1
}

# nbd_connected nbdX: the device has a size, i.e. a server is attached.
nbd_connected() { [ "$(cat "/sys/block/$1/size")" -gt 0 ]; }
nbd_disconnected() { [ "$(cat "/sys/block/$1/size")" -eq 0 ]; }

# nbd_connections nbdX: how many sockets the kernel uses for the device (the
# nbd driver makes one hardware queue per connection).
nbd_connections() { find "/sys/block/$1/mq" -mindepth 1 -maxdepth 1 | wc -l; }

# nbd_report_timeouts: a request the server left unanswered for the nbd
# timeout (30 s by default) shows as "Connection timed out" and is retried on
# another connection. Seen with Debian's 6.1 kernel under TCG right after a
# multi-connection attach, whatever the server: the nbd recv work items then
# sit behind each other in the workqueue rescuer (see tests/vm/README.md).
# Prints how many there were; a scenario decides whether that fails it.
nbd_report_timeouts() {
  local count
  count=$(dmesg | grep -c 'block nbd[0-9]*: Connection timed out' || true)
  if [ "$count" -gt 0 ]; then
    vt_log "WARNING: $count nbd request timeout(s) in the kernel log:"
    dmesg | grep 'block nbd[0-9]*: Connection timed out'
  fi
  echo "$count" >/tmp/nbd_timeouts
}
