#pragma once

#include <cstdint>

namespace vramswap {

// The daemon's I/O counters: one list for everyone who handles them. The
// workers count them (engine::WorkerStats), the daemon publishes them in the
// status file under these names (status::InstanceStatus), and `vramswap
// status --json` prints them under "io".
//   reads, writes, bytes_read, bytes_written: requests served, and their bytes
//   zeroes, trims, flushes: NBD_CMD_WRITE_ZEROES, NBD_CMD_TRIM, NBD_CMD_FLUSH
//   io_errors: requests answered EIO because a copy failed
//   failed_copy_calls: driver calls that failed to queue or run copies
//   protocol_errors: requests refused by the protocol (EINVAL, ENOSPC...)
//   dropped_connections: connections dropped for protocol violations
#define VRAMSWAP_IO_COUNTERS(X)                                                       \
  X(reads)                                                                            \
  X(writes) X(bytes_read) X(bytes_written) X(zeroes) X(trims) X(flushes) X(io_errors) \
      X(failed_copy_calls) X(protocol_errors) X(dropped_connections)

struct IoCounters {
#define VRAMSWAP_IO_COUNTER(name) uint64_t name = 0;
  VRAMSWAP_IO_COUNTERS(VRAMSWAP_IO_COUNTER)
#undef VRAMSWAP_IO_COUNTER
};

}  // namespace vramswap
