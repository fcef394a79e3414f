# Shell helpers for system-test scenarios (sourced inside the test VM; the
# scenario's `run` script can use them directly). Lines starting "VSTEST:" on
# the serial console are read by the host runner; the verdict itself is the
# file out/result on the payload disk.
#
# The scenario runs under `set -Eeuo pipefail` with an ERR trap that fails the
# test, so every command here that may fail on purpose says `|| true`.

VSTEST_PAYLOAD=/payload
VSTEST_FILES=$VSTEST_PAYLOAD/files # what the host put there (vmtest run --add)
VSTEST_OUT=$VSTEST_PAYLOAD/out     # copied back to the host after the run
VSTEST_STATE=$VSTEST_PAYLOAD/state # stage and boot counters
# A file, not a variable: the stage watchdog runs outside the scenario's shell.
VSTEST_WATCHED_UNITS=/run/vstest-watched-units

# vs_log MESSAGE...: a timestamped progress line (seconds since guest boot).
vs_log() {
  local up
  up=$(cut -d' ' -f1 /proc/uptime 2>/dev/null) || up=?
  echo "[vstest +${up}s] $*"
}

# vs_marker TEXT: a line for the host runner.
vs_marker() {
  echo "VSTEST: $*"
}

_vs_record_result() {
  [ -e "$VSTEST_OUT/result" ] && return 1
  printf '%s\n' "$1" >"$VSTEST_OUT/result.tmp" && mv "$VSTEST_OUT/result.tmp" "$VSTEST_OUT/result"
  sync
}

# vs_pass [MESSAGE]: the scenario passed; power off after this stage.
vs_pass() {
  if _vs_record_result "PASS${1:+: $1}"; then
    vs_marker "PASS${1:+: $1}"
  else
    vs_log "vs_pass ignored: a verdict exists already: $(head -n 1 "$VSTEST_OUT/result" || true)"
  fi
  exit 0
}

# vs_fail MESSAGE: the scenario failed. Prints the failed units and jobs, dumps
# the watched units (vs_watch_unit), saves the whole journal (all boots) to
# out/journal.txt, and powers off after this stage.
vs_fail() {
  trap - ERR
  set +e
  if ! _vs_record_result "FAIL: $1"; then
    vs_log "vs_fail ($1) after an earlier verdict: $(head -n 1 "$VSTEST_OUT/result")"
    exit 1
  fi
  vs_log "FAILED: $1"
  echo "--- systemctl --failed"
  systemctl --failed --no-pager
  echo "--- systemctl list-jobs"
  systemctl list-jobs --no-pager
  _vs_dump_watched_units
  journalctl --no-pager -o short-monotonic >"$VSTEST_OUT/journal.txt" 2>&1
  sync
  vs_marker "FAIL: $1"
  exit 1
}

# Called by the stage runner's watchdog: the stage has run too long. Shows
# what is blocked, records the failure and powers off.
_vs_stage_stuck() {
  vs_marker "STUCK: stage $VSTEST_STAGE still running after $1 s; dumping state"
  echo "--- processes"
  ps -eo pid,stat,wchan:32,etime,args || true
  echo "--- systemctl list-jobs"
  systemctl list-jobs --no-pager || true
  echo w >/proc/sysrq-trigger || true # blocked tasks, to the kernel log
  _vs_dump_watched_units
  if _vs_record_result "FAIL: stage $VSTEST_STAGE did not end within $1 s (vmtest run --stage-timeout)"; then
    journalctl --no-pager -o short-monotonic >"$VSTEST_OUT/journal.txt" 2>&1 || true
    sync
    vs_marker "FAIL: stage $VSTEST_STAGE did not end within $1 s"
  fi
  systemctl --no-block poweroff || true
}

# vs_reboot: end this stage with `systemctl reboot`; the next boot runs stage
# N+1 ($VSTEST_STAGE).
vs_reboot() {
  local next=$((VSTEST_STAGE + 1))
  echo "$next" >"$VSTEST_STATE/stage"
  echo reboot >"$VSTEST_STATE/next"
  sync
  vs_marker "REBOOT into stage $next"
  exit 0
}

# vs_poweroff: end this stage with a real power-off (systemctl poweroff); the
# host powers the VM on again, from the same disk, for stage N+1. Use it to
# check what a power-off did, in the next stage's `journalctl -b -1`.
vs_poweroff() {
  local next=$((VSTEST_STAGE + 1))
  echo "$next" >"$VSTEST_STATE/stage"
  echo poweroff >"$VSTEST_STATE/next"
  sync
  vs_marker "POWEROFF into stage $next"
  exit 0
}

# vs_assert MESSAGE COMMAND [ARGS...]: fail with MESSAGE unless COMMAND succeeds.
vs_assert() {
  local message=$1
  shift
  "$@" || vs_fail "$message (failed: $*)"
}

# vs_assert_eq EXPECTED ACTUAL MESSAGE
vs_assert_eq() {
  [ "$1" = "$2" ] || vs_fail "$3: expected '$1', got '$2'"
}

# vs_wait_until SECONDS WHAT COMMAND [ARGS...]: poll COMMAND (quietly, every
# half second) until it succeeds; fail naming WHAT, with its last output,
# after SECONDS.
vs_wait_until() {
  local timeout=$1 what=$2 output
  shift 2
  local deadline=$((SECONDS + timeout))
  until output=$("$@" 2>&1); do
    if ((SECONDS >= deadline)); then
      printf '%s\n' "$output"
      vs_fail "timed out after ${timeout}s waiting until $what (last try: $*)"
    fi
    sleep 0.5
  done
}

# vs_wait_booted [SECONDS]: wait until systemd has finished booting (the job
# queue is empty); fail unless the state is running or degraded. Sets
# VSTEST_SYSTEM_STATE; when degraded, lists the failed units.
vs_wait_booted() {
  local timeout=${1:-300} state
  state=$(timeout "$timeout" systemctl is-system-running --wait 2>&1) || true
  VSTEST_SYSTEM_STATE=$state
  local analyze
  analyze=$(systemd-analyze time 2>&1 | head -n 1) || true
  vs_marker "BOOTED state=$state; $analyze"
  case $state in
    running) ;;
    degraded)
      vs_log "system is degraded; failed units:"
      systemctl --failed --no-pager || true
      ;;
    *)
      systemctl list-jobs --no-pager || true
      vs_fail "systemd did not finish booting within ${timeout}s (state: '$state')"
      ;;
  esac
}

# vs_watch_unit UNIT...: on failure, dump these units' status and journal.
vs_watch_unit() {
  printf '%s\n' "$@" >>"$VSTEST_WATCHED_UNITS"
}

_vs_dump_watched_units() {
  local unit
  [ -e "$VSTEST_WATCHED_UNITS" ] || return 0
  sort -u "$VSTEST_WATCHED_UNITS" | while read -r unit; do
    vs_dump_unit "$unit"
  done
}

# vs_dump_unit UNIT: its status and this boot's journal, on the console and in
# out/unit-UNIT.txt.
vs_dump_unit() {
  {
    echo "--- systemctl status $1"
    systemctl status "$1" --no-pager -l --lines=0
    echo "--- journalctl -b -u $1"
    journalctl -b -u "$1" --no-pager -o short-monotonic
  } 2>&1 | tee "$VSTEST_OUT/unit-$1.txt" || true
}

# vs_save NAME COMMAND [ARGS...]: COMMAND's output into out/NAME (for the
# host to collect); returns COMMAND's status.
vs_save() {
  local name=$1
  shift
  "$@" >"$VSTEST_OUT/$name" 2>&1
}

# vs_file NAME: the path of a file the host added (vmtest run --add); fails
# the test if it is not there.
vs_file() {
  [ -e "$VSTEST_FILES/$1" ] || vs_fail "payload file '$1' is missing (add it with: vmtest run --add PATH:$1)"
  echo "$VSTEST_FILES/$1"
}
