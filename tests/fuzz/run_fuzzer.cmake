# Runs one libFuzzer binary for a bounded time: the ctest test "fuzz: NAME".
#   cmake -DNAME= -DFUZZER= -DSEEDS= -DDICT= -DWORK= -DSECONDS= -DMAX_LEN= -P run_fuzzer.cmake
# New inputs go to WORK/corpus (kept between runs, so fuzzing resumes where it
# stopped), crashes to WORK/artifacts. Prints libFuzzer's progress summary and
# a one-line result with executions and coverage; fails on any crash, leak,
# timeout or sanitizer report.
foreach(v NAME FUZZER SEEDS DICT WORK SECONDS MAX_LEN)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "run_fuzzer.cmake: -D${v}= is missing")
  endif()
endforeach()

file(MAKE_DIRECTORY ${WORK}/corpus ${WORK}/artifacts)
file(REMOVE ${WORK}/last-run.txt)  # written again only by a run that passes
set(log ${WORK}/last-run.log)
# UBSan findings are fatal by compile option already; these add stacks.
if(NOT DEFINED ENV{UBSAN_OPTIONS})
  set(ENV{UBSAN_OPTIONS} "print_stacktrace=1:halt_on_error=1")
endif()

execute_process(
  COMMAND ${FUZZER}
    -max_total_time=${SECONDS}
    -max_len=${MAX_LEN}
    -timeout=30
    -rss_limit_mb=2048
    -dict=${DICT}
    -print_final_stats=1
    -artifact_prefix=${WORK}/artifacts/
    ${WORK}/corpus ${SEEDS}
  RESULT_VARIABLE status
  OUTPUT_FILE ${log}
  ERROR_FILE ${log})

# Only the summary lines: others may hold ';' or '[' and break list handling.
file(STRINGS ${log} lines REGEX "^(#[0-9]+[ \t]+(INITED|DONE)|stat::|INFO: Seed: )")
set(done "")
set(seed "")
set(runs "")
set(new_units "")
foreach(line IN LISTS lines)
  if(line MATCHES "INFO: Seed: ([0-9]+)")
    set(seed ${CMAKE_MATCH_1})
  elseif(line MATCHES "^#[0-9]+[ \t]+(INITED|DONE)")
    message("${line}")
    if(line MATCHES "DONE")
      set(done "${line}")
    endif()
  elseif(line MATCHES "^stat::number_of_executed_units: +([0-9]+)")
    set(runs ${CMAKE_MATCH_1})
  elseif(line MATCHES "^stat::new_units_added: +([0-9]+)")
    set(new_units ${CMAKE_MATCH_1})
  endif()
endforeach()

if(NOT status EQUAL 0)
  # The report of the sanitizer or of the failed invariant is at the end.
  execute_process(COMMAND tail -n 80 ${log})
  file(GLOB artifacts ${WORK}/artifacts/*)
  message(FATAL_ERROR
    "fuzz ${NAME}: FAILED (exit ${status}, seed ${seed}); input kept in: ${artifacts}\n"
    "reproduce: ${FUZZER} <input>; minimise: ${FUZZER} -minimize_crash=1 -runs=100000 <input>;"
    " full log: ${log}")
endif()

set(coverage "?")
set(features "?")
set(corpus "?")
if(done MATCHES "cov: ([0-9]+)")
  set(coverage ${CMAKE_MATCH_1})
endif()
if(done MATCHES "ft: ([0-9]+)")
  set(features ${CMAKE_MATCH_1})
endif()
if(done MATCHES "corp: ([0-9]+/[0-9]+[a-zA-Z]*)")
  set(corpus ${CMAKE_MATCH_1})
endif()
message("fuzz ${NAME}: ${runs} executions in ${SECONDS} s, coverage ${coverage} edges, "
        "${features} features, corpus ${corpus} (${new_units} new), seed ${seed}: no crash")
file(WRITE ${WORK}/last-run.txt
  "${NAME} ${runs} executions ${SECONDS} s cov ${coverage} ft ${features} corpus ${corpus}\n")
