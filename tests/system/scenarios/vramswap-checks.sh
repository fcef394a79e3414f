# Checks of an installed vramswap, shared by the install scenarios (sourced
# inside the test VM after guest/vstest.sh; bash).

# human_size BYTES: as vramswapd prints sizes (format_byte_size: one decimal,
# binary units).
human_size() {
  awk -v b="$1" 'BEGIN {
    if (b < 1024) { printf "%d B\n", b; exit }
    split("KiB MiB GiB TiB PiB", unit, " "); v = b / 1024; u = 1
    while (v >= 1024 && u < 5) { v /= 1024; u++ }
    printf "%.1f %s\n", v, unit[u] }'
}

# swap_field DEVICE COLUMN: a column of DEVICE's line in /proc/swaps
# (1 name, 2 type, 3 size KiB, 4 used KiB, 5 priority); nothing when DEVICE
# is not swap.
swap_field() {
  awk -v dev="$1" -v col="$2" 'NR > 1 && $1 == dev { print $col }' /proc/swaps
}

# swap_on_link NAME: /dev/vramswap/NAME exists and the device behind it is
# active swap.
swap_on_link() {
  local device
  device=$(readlink -f "/dev/vramswap/$1") || return 1
  [ -b "$device" ] && [ -n "$(swap_field "$device" 1)" ]
}

# nbd_swaps: the nbd devices in /proc/swaps.
nbd_swaps() {
  awk 'NR > 1 && $1 ~ /^\/dev\/nbd/ { print $1 }' /proc/swaps
}

# vramswap_backends: "nbdX vramswap/NAME" for every nbd device connected by
# vramswapd (the backend identifier it sets).
vramswap_backends() {
  local f
  for f in /sys/block/nbd*/backend; do
    [ -r "$f" ] || continue
    case $(cat "$f" 2>/dev/null) in
      vramswap/*) echo "$(basename "$(dirname "$f")") $(cat "$f")" ;;
    esac
  done
}

# vramswap_units: every unit systemd has loaded, and every unit file it
# knows, whose name mentions vramswap (the service, mkswap, swap and device
# units). Left out: the slices systemd makes by itself for the instances of
# a template (system-vramswap.slice, system-vramswap\x2dmkswap.slice), which
# it keeps, empty, until the next boot, as for any template unit; listed
# separately by vramswap_slices.
vramswap_units() {
  # Both exit 1 when nothing matches.
  systemctl list-units --all --no-legend --plain '*vramswap*' | grep -v '^system-vramswap.*\.slice ' || true
  systemctl list-unit-files --no-legend --plain '*vramswap*' || true
}

# vramswap_slices: those slices, with how many tasks they hold.
vramswap_slices() {
  local slice
  for slice in $(systemctl list-units --all --no-legend --plain 'system-vramswap*.slice' | cut -d' ' -f1); do
    echo "$slice $(systemctl show -P TasksCurrent "$slice")"
  done
}

# assert_no_failed_units WHEN
assert_no_failed_units() {
  local failed
  failed=$(systemctl --failed --no-legend --plain)
  vs_assert_eq "" "$failed" "systemctl --failed $1"
}

# show UNIT PROPERTY: one property's value.
show() {
  systemctl show -P "$2" "$1"
}
