#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/unique_fd.hpp"

namespace vramswap::test {

// A deliberately plain, blocking NBD client written from the spec, separate
// from the daemon's codec, so the two check each other. It can also send raw
// and malformed bytes.
class NbdTestClient {
 public:
  // Connects to a Unix socket; does not negotiate yet.
  explicit NbdTestClient(const std::string& socket_path);
  // Takes a socket already in transmission (the kernel's side of a
  // connection: no handshake), e.g. one end of a socketpair.
  explicit NbdTestClient(UniqueFd transmission_socket);

  // Fixed-newstyle handshake with NBD_OPT_GO for `export_name`. Returns the
  // option reply type that ended it (1 = ACK on success).
  uint32_t negotiate(const std::string& export_name = "");

  // Transmission.
  void send_request(uint16_t type, uint16_t flags, uint64_t cookie, uint64_t offset,
                    uint32_t length);
  struct Reply {
    uint32_t error = 0;
    uint64_t cookie = 0;
  };
  Reply read_reply();
  uint32_t write(uint64_t offset, const std::vector<uint8_t>& data, uint16_t flags = 0);
  uint32_t read(uint64_t offset, uint32_t length, std::vector<uint8_t>& data);
  uint32_t simple(uint16_t type, uint64_t offset, uint32_t length, uint16_t flags = 0);
  void disconnect();

  // Raw access.
  void send_raw(const void* data, size_t size);
  void read_exact(void* data, size_t size);
  // True if the server closed the connection (EOF) within the timeout.
  bool closed_by_server(int timeout_ms = 5000);

  uint64_t export_size() const { return size_; }
  uint16_t transmission_flags() const { return flags_; }
  int fd() const { return fd_.get(); }

  static constexpr uint16_t kRead = 0, kWrite = 1, kDisc = 2, kFlush = 3, kTrim = 4,
                            kWriteZeroes = 6;
  static constexpr uint16_t kFlagFua = 1, kFlagNoHole = 2;

 private:
  void set_timeouts();

  UniqueFd fd_;
  uint64_t size_ = 0;
  uint16_t flags_ = 0;
  uint64_t next_cookie_ = 1;
};

std::vector<uint8_t> random_bytes(size_t size, uint64_t seed);

}  // namespace vramswap::test
